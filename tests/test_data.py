"""Loader batches: uint8 clips as one tensor, labels and rows as numpy, through worker processes."""
import numpy as np
import torch

from ops.data.loader import batch_targets, collate_items, make_loader, model_input
from ops.data.dataset import SamplingSettings, VideoDataset
from ops.data.records import VideoRecord
from ops.data.transforms import ClipTransform
from tests.conftest import write_grey_frames


def dataset(tmp_path, multi_label: bool) -> VideoDataset:
    for i in range(3):
        write_grey_frames(tmp_path / f"v{i}", 4, size=(40, 32))
    records = [VideoRecord(f"v{i}", 4, (i, 3) if multi_label else (i,)) for i in range(3)]
    (tmp_path / "missing").mkdir()  # a frame folder without frames: unreadable when read
    records.append(VideoRecord("missing", 4, (1,)))
    transform = ClipTransform("val", 16, 16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    return VideoDataset(records, root=str(tmp_path), template="img_{:05d}.jpg", sampling=SamplingSettings("val", 2),
                        transform=transform, num_classes=4, multi_label=multi_label)


def test_batches_through_workers(tmp_path):
    data = dataset(tmp_path, multi_label=False)
    batches = list(make_loader(data, batch_size=3, workers=2))
    assert [type(b["target"]) for b in batches] == [np.ndarray, np.ndarray]
    assert batches[0]["clip"].shape == (3, 1, 3, 2, 16, 16) and batches[0]["clip"].dtype == torch.uint8
    assert batches[0]["clip"].permute(0, 1, 3, 4, 5, 2).is_contiguous()  # as the items lie: channels last
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in batches]), [0, 1, 2, -4])  # row 3 is flagged
    np.testing.assert_array_equal(np.concatenate([b["target"] for b in batches]), [0, 1, 2, 1])
    assert "missing" in batches[1]["bad"][0] and batches[0]["bad"] == ["", "", ""]
    y = batch_targets(batches[0], torch.device("cpu"))
    assert y.dtype == torch.int64 and y.tolist() == [0, 1, 2]
    x = model_input(batches[0], data, torch.device("cpu"))  # val picks frames 1 and 3: grey 20, 60
    assert x.dtype == torch.float32
    torch.testing.assert_close(x[:, 0, :, 1].mean(), torch.tensor((60 / 255 - 0.5) / 0.25), atol=0.05, rtol=0)


def test_multi_label_targets_are_multi_hot(tmp_path):
    data = dataset(tmp_path, multi_label=True)
    batch = collate_items([data[0], data[2]])
    y = batch_targets(batch, torch.device("cpu"))
    assert y.dtype == torch.float32 and y.tolist() == [[1, 0, 0, 1], [0, 0, 1, 1]]
