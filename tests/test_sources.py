"""Frame-folder source: indices (repeats included) map to the right decoded frames; every bad
frame is a one-line SourceError; a bad sample is skipped and counted through the DataLoader."""
import numpy as np
import pytest
from PIL import Image

from archs.registry import IMAGENET_MEAN, IMAGENET_STD
from ops.data.dataset import SamplingSettings, VideoDataset
from ops.data.loader import make_loader
from ops.data.records import VideoRecord
from ops.data.sources import FrameFolderSource, SourceError, open_source
from ops.data.transforms import ClipTransform
from tests.conftest import write_frame_folder, write_grey_frames


def test_reads_requested_frames_in_order_with_repeats(tmp_path):
    source = FrameFolderSource(write_grey_frames(tmp_path / "v", 6), "img_{:05d}.jpg")
    assert source.num_frames == 6
    clip = source.read([0, 0, 2, 5, 5, 1])
    assert clip.shape == (6, 12, 20, 3) and clip.dtype.is_floating_point is False
    levels = clip.float().mean(dim=(1, 2, 3)).round().tolist()
    assert levels == pytest.approx([0, 0, 40, 100, 100, 20], abs=2)


def test_decodes_as_libjpeg_does(tmp_path):
    """simplejpeg (libjpeg-turbo, accurate DCT and upsampling) gives PIL's pixels exactly."""
    frames = np.random.default_rng(0).integers(0, 256, (3, 24, 40, 3), dtype=np.uint8)
    folder = tmp_path / "v"
    write_frame_folder(folder, frames)
    clip = open_source(folder, "img_{:05d}.jpg").read([2, 0])
    expected = np.stack([np.asarray(Image.open(folder / f"img_{i:05d}.jpg").convert("RGB")) for i in (3, 1)])
    assert np.array_equal(clip.numpy(), expected)


def test_other_template_is_found_and_missing_frames_named(tmp_path):
    folder = write_grey_frames(tmp_path / "v", 3, template="{:05d}.jpg")
    source = FrameFolderSource(folder, "img_{:05d}.jpg")
    assert source.template == "{:05d}.jpg" and source.num_frames == 3
    with pytest.raises(SourceError, match="00005.jpg"):
        source.read([4])
    with pytest.raises(SourceError, match="not found"):
        FrameFolderSource(tmp_path / "missing", "img_{:05d}.jpg")


def _damage(frame, kind):
    if kind == "zero_byte":
        frame.write_bytes(b"")
    elif kind == "truncated":
        frame.write_bytes(frame.read_bytes()[: frame.stat().st_size // 2])
    elif kind == "not_a_jpeg":
        frame.write_bytes(b"<html>not found</html>")
    elif kind == "missing_in_the_middle":
        frame.unlink()
    elif kind == "other_size":
        write_grey_frames(frame.parent / "big", 1, size=(40, 30))
        frame.write_bytes((frame.parent / "big" / "img_00001.jpg").read_bytes())


@pytest.mark.parametrize("kind", ["zero_byte", "truncated", "not_a_jpeg", "missing_in_the_middle", "other_size"])
def test_bad_frames_are_one_line_source_errors(tmp_path, kind, capfd):
    frames = np.random.default_rng(1).integers(0, 256, (5, 24, 32, 3), dtype=np.uint8)
    folder = tmp_path / "v"
    write_frame_folder(folder, frames)
    _damage(folder / "img_00003.jpg", kind)
    source = FrameFolderSource(folder, "img_{:05d}.jpg", num_frames=5)
    assert source.read([0, 1, 3, 4]).shape == (4, 24, 32, 3)  # the good frames still read
    with pytest.raises(SourceError) as err:
        source.read([0, 2, 4])
    assert str(err.value).startswith(str(folder / "img_00003.jpg")) and "\n" not in str(err.value)
    assert capfd.readouterr().err == ""


def test_zero_byte_jpeg_is_skipped_and_counted_through_the_loader(tmp_path):
    """Training: the sample with a zero-byte frame is replaced by another one and reported in
    ``bad``; no exception reaches the training loop."""
    records = []
    for i in range(4):
        write_grey_frames(tmp_path / f"v{i}", 6, size=(20, 20))
        records.append(VideoRecord(f"v{i}", 6, (i % 2,)))
    (tmp_path / "v2" / "img_00004.jpg").write_bytes(b"")
    dataset = VideoDataset(records, root=str(tmp_path), template="img_{:05d}.jpg",
                           sampling=SamplingSettings("train", num_segments=6),
                           transform=ClipTransform("train", 16, 18, IMAGENET_MEAN, IMAGENET_STD), num_classes=2)
    batches = list(make_loader(dataset, batch_size=2, workers=1, indices=[0, 1, 2, 3]))
    assert [b["clip"].shape[0] for b in batches] == [2, 2]
    bad = [line for b in batches for text in b["bad"] for line in text.splitlines()]
    assert len(bad) == 1 and bad[0].startswith(f"{tmp_path / 'v2'}\t") and "img_00004.jpg: empty JPEG" in bad[0]
    indices = [int(i) for b in batches for i in b["index"]]
    assert 2 not in indices and len(indices) == 4 and all(i >= 0 for i in indices)
