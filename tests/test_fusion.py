"""Score files and fusion: hand-made files against hand-computed metrics."""
import os
import pickle
import resource

import numpy as np
import pytest
from typer.testing import CliRunner

from ops.common.errors import UserError
from ops.evaluation.fusion import fuse, report, write_report_files
from ops.evaluation.metrics import mean_average_precision, topk_accuracy
from ops.evaluation.scores import ScoreFile, read_scores, write_scores
from videorec_cli.main import app

IDS = ["a", "b", "c", "d"]
LABELS = np.array([0, 1, 2, 2])


def write(path, logits, ids=IDS, labels=LABELS, clip=0):
    write_scores(path, ScoreFile(list(ids), np.asarray(labels), np.asarray(logits, np.float32), clip, 2))
    return path


def test_softmax_mean_of_two_clips_by_hand(tmp_path):
    # clip 0 and clip 1, one crop each, 3 classes; chosen so each clip alone is wrong somewhere
    c0 = np.log(np.array([[[0.7, 0.2, 0.1]], [[0.1, 0.3, 0.6]], [[0.2, 0.2, 0.6]], [[0.5, 0.1, 0.4]]]))
    c1 = np.log(np.array([[[0.6, 0.3, 0.1]], [[0.1, 0.8, 0.1]], [[0.1, 0.1, 0.8]], [[0.3, 0.1, 0.6]]]))
    fused = fuse([write(tmp_path / "0.pkl", c0), write(tmp_path / "1.pkl", c1, clip=1)])
    expected = (np.exp(c0[:, 0]) + np.exp(c1[:, 0])) / 2
    assert np.allclose(fused.scores, expected, atol=1e-6)
    metrics = report(fused)
    # predictions: a->0 ok, b->1 (0.55 vs 0.35) ok, c->2 ok, d->2 (0.5 vs 0.4) ok
    assert metrics["top1"] == 100.0
    single = report(fuse([tmp_path / "0.pkl"]))
    # clip 0 alone: b -> 2 (wrong), d -> 0 (wrong): 50%; mean class acc = (1 + 0 + 0.5) / 3
    assert single["top1"] == 50.0
    assert single["mean_class_acc"] == pytest.approx(100 * (1 + 0 + 0.5) / 3)


def test_logit_mean_and_weights(tmp_path):
    a = np.array([[[2.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]], [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]]])
    b = np.array([[[0.0, 0.0, 0.0]], [[0.0, 0.0, 3.0]], [[0.0, 0.0, 1.0]], [[0.0, 0.0, 4.0]]])
    pa, pb = write(tmp_path / "a.pkl", a), write(tmp_path / "b.pkl", b)
    fused = fuse([pa, pb], "logit-mean", [3.0, 1.0])
    assert np.allclose(fused.scores, (3 * a[:, 0] + b[:, 0]) / 4)


def test_top5_and_crops(tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 3, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 50)
    ids = [f"v{i}" for i in range(50)]
    fused = fuse([write(tmp_path / "x.pkl", logits, ids, labels)])
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p = (p / p.sum(-1, keepdims=True)).mean(1)
    ranks = (p > p[np.arange(50), labels][:, None]).sum(1)
    assert report(fused)["top5"] == pytest.approx(100 * np.mean(ranks < 5))
    assert topk_accuracy(p, labels, (1,))[1] == pytest.approx(100 * np.mean(ranks == 0))


def test_mismatched_files_refused_with_first_difference(tmp_path):
    base = np.zeros((4, 1, 3))
    a = write(tmp_path / "a.pkl", base)
    with pytest.raises(UserError, match=r"video 1 is 'x'.*'b'"):
        fuse([a, write(tmp_path / "b.pkl", base, ids=["a", "x", "c", "d"])])
    with pytest.raises(UserError, match="label of video 3"):
        fuse([a, write(tmp_path / "c.pkl", base, labels=[0, 1, 2, 1])])
    with pytest.raises(UserError, match="3 videos"):
        fuse([a, write(tmp_path / "d.pkl", base[:3], ids=IDS[:3], labels=LABELS[:3])])


def test_legacy_msn_tdn_files(tmp_path):
    rows0 = [[np.array([[2.0, 0.0, 0.0]], np.float32), np.int64(0)], [[np.array([[0.0, 0.0, 1.0]], np.float32)][0], np.int64(1)]]
    rows1 = [[np.array([[1.0, 0.0, 0.0]], np.float32), np.int64(0)], [np.array([[0.0, 3.0, 0.0]], np.float32), np.int64(1)]]
    for name, rows in (("0_crop0.pkl", rows0), ("1_crop0.pkl", rows1)):
        with open(tmp_path / name, "wb") as fh:
            pickle.dump(rows, fh, protocol=pickle.HIGHEST_PROTOCOL)
    scores = read_scores(tmp_path / "1_crop0.pkl")
    assert scores.logits.shape == (2, 1, 3) and scores.clip_index == 1 and scores.labels.tolist() == [0, 1]
    result = CliRunner().invoke(app, ["ensemble-pkl", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "top1 100.00" in result.output and "2 files, 2 views, 2 videos" in result.output


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/videorec_pwned",))


def test_crafted_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"format": "videorec-scores", "payload": _Evil()}, fh)
    with pytest.raises(UserError, match="refused to load"):
        read_scores(path)
    result = CliRunner().invoke(app, ["ensemble-pkl", str(path)])
    assert result.exit_code != 0 and not os.path.exists("/tmp/videorec_pwned")


def test_report_files_and_map(tmp_path):
    c0 = np.log(np.array([[[0.7, 0.2, 0.1]], [[0.1, 0.3, 0.6]], [[0.2, 0.2, 0.6]], [[0.5, 0.1, 0.4]]]))
    fused = fuse([write(tmp_path / "0.pkl", c0)])
    per_class, cm = write_report_files(fused, tmp_path / "out", ["x", "y", "z"])
    assert per_class.read_text().splitlines()[1:] == ["0,x,1,1,100.00", "1,y,1,0,0.00", "2,z,2,1,50.00"]
    assert cm.read_text().splitlines()[2] == "y,0,0,1"
    # mAP by hand: class 0 positives {0}: AP 1; class 1 positives {1,2}: ranks by score .3,.2,.2,.1 -> (1/1 + 2/2) / 2
    targets = np.array([[1, 0], [0, 1], [0, 1], [0, 0]])
    scores = np.array([[0.9, 0.1], [0.2, 0.3], [0.1, 0.2], [0.3, 0.1]])
    assert mean_average_precision(scores, targets) == pytest.approx(100.0)
    scores[3, 1] = 0.25  # a negative ranked second for class 1: AP = (1/1 + 2/3) / 2
    assert mean_average_precision(scores, targets) == pytest.approx(100 * (1 + (1 + 2 / 3) / 2) / 2)


class _Crafted:
    """Pickles as whatever ``reduce`` says: here numpy's own array rebuilders with forged arguments."""

    def __init__(self, reduce):
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


def reconstructed(shape, dtype, data=b""):
    """An array as protocols 2-4 write it (``_reconstruct`` then ``__setstate__``), with a forged state."""
    rebuild, args, _ = np.zeros(1).__reduce__()
    return _Crafted((rebuild, args, (1, shape, np.dtype(dtype), False, data)))


def from_buffer(shape, dtype, data=b""):
    """An array as protocol 5 writes it (``_frombuffer``), with a forged shape."""
    return _Crafted((np.zeros(1).__reduce_ex__(5)[0], (data, np.dtype(dtype), shape, "C")))


def crafted_file(path, **arrays):
    content = {"format": "videorec-scores", "version": 1, "video_ids": ["a"], "labels": np.zeros(1, np.int64),
               "logits": np.zeros((1, 1, 3), np.float32), **arrays}
    path.write_bytes(pickle.dumps(content, protocol=pickle.HIGHEST_PROTOCOL))
    return path


@pytest.mark.parametrize("arrays,reason", [
    ({"labels": reconstructed((10 ** 12,), "V0")}, "dtype |V0"),
    ({"logits": from_buffer((10 ** 6, 10 ** 3, 10 ** 3), "V0")}, "dtype |V0"),
    ({"logits": reconstructed((10 ** 6, 10 ** 3, 10 ** 3), "float32")}, "does not match its 0 bytes"),
    ({"logits": from_buffer((10 ** 12,), "float32", b"\0" * 8)}, "does not match its 8 bytes"),
    ({"labels": reconstructed((2,), "O", b"\0" * 16)}, "dtype object"),
])
def test_forged_arrays_refused_before_allocating(tmp_path, arrays, reason):
    path = crafted_file(tmp_path / "forged.pkl", **arrays)
    assert path.stat().st_size < 2000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(UserError) as info:
        read_scores(path)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    message = str(info.value)
    assert message.startswith(f"{path}: refused score file:") and reason in message and "\n" not in message
    assert grown_kib < 50 * 1024  # refused before anything was allocated


def test_shared_data_cannot_multiply_memory(tmp_path):
    """One 256 KiB buffer referenced by 300 arrays would rebuild 75 MiB from a 260 KiB file: over the budget."""
    data = bytes(1 << 18)
    path = crafted_file(tmp_path / "shared.pkl", settings={"copies": [reconstructed((1 << 16,), "float32", data)
                                                                      for _ in range(300)]})
    assert path.stat().st_size < 300_000
    with pytest.raises(UserError, match="refused score file: its arrays would take more memory"):
        read_scores(path)
    path = crafted_file(tmp_path / "few.pkl", settings={"copies": [reconstructed((1 << 16,), "float32", data)] * 3})
    assert read_scores(path).settings["copies"][0].shape == (1 << 16,)


def test_lists_instead_of_arrays_refused(tmp_path):
    path = crafted_file(tmp_path / "list.pkl", logits=[[[0.0, 1.0]]])
    with pytest.raises(UserError, match=r"'logits' is a list, not an array"):
        read_scores(path)


def test_ensemble_flags_that_cannot_apply_are_errors(tmp_path):
    from dataset_configs import DatasetConfigError

    c0 = np.zeros((4, 1, 3))
    path = write(tmp_path / "0.pkl", c0)
    with pytest.raises(UserError, match="weights must be >= 0 with a positive sum"):
        fuse([path, path], weights=[1.0, -1.0])
    with pytest.raises(UserError, match="weights must be >= 0 with a positive sum"):
        fuse([path], weights=[0.0])

    def ensemble(*args):
        return CliRunner().invoke(app, ["ensemble-pkl", str(path), *map(str, args)])

    (tmp_path / "two.txt").write_text("x\ny\n")
    result = ensemble("--classes", tmp_path / "two.txt")
    assert isinstance(result.exception, UserError) and "add -o/--output-dir" in str(result.exception)
    result = ensemble("--classes", tmp_path / "two.txt", "-o", tmp_path / "out")
    assert isinstance(result.exception, UserError) and "2 class names for scores of 3 classes" in str(result.exception)
    result = ensemble("--classes", tmp_path / "nope.txt", "-o", tmp_path / "out")
    assert isinstance(result.exception, DatasetConfigError) and "nope.txt: cannot read" in str(result.exception)
    assert not (tmp_path / "out").exists()

    multi = write(tmp_path / "multi.pkl", c0, labels=np.eye(4, 3, dtype=np.uint8))
    result = CliRunner().invoke(app, ["ensemble-pkl", str(multi), "-o", str(tmp_path / "out")])
    assert isinstance(result.exception, UserError) and "multi-label (mAP): leave out -o" in str(result.exception)
    result = CliRunner().invoke(app, ["ensemble-pkl", str(multi)])
    assert result.exit_code == 0 and "mAP" in result.output
