"""Frame-folder source: indices (repeats included) map to the right decoded frames."""
import pytest

from ops.data.sources import FrameFolderSource, SourceError
from tests.conftest import write_grey_frames


def test_reads_requested_frames_in_order_with_repeats(tmp_path):
    source = FrameFolderSource(write_grey_frames(tmp_path / "v", 6), "img_{:05d}.jpg")
    assert source.num_frames == 6
    clip = source.read([0, 0, 2, 5, 5, 1])
    assert clip.shape == (6, 12, 20, 3) and clip.dtype.is_floating_point is False
    levels = clip.float().mean(dim=(1, 2, 3)).round().tolist()
    assert levels == pytest.approx([0, 0, 40, 100, 100, 20], abs=2)


def test_other_template_is_found_and_missing_frames_named(tmp_path):
    folder = write_grey_frames(tmp_path / "v", 3, template="{:05d}.jpg")
    source = FrameFolderSource(folder, "img_{:05d}.jpg")
    assert source.template == "{:05d}.jpg" and source.num_frames == 3
    with pytest.raises(SourceError, match="00005.jpg"):
        source.read([4])
    with pytest.raises(SourceError, match="not found"):
        FrameFolderSource(tmp_path / "missing", "img_{:05d}.jpg")
