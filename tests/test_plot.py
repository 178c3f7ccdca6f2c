"""`videorec plot`: the curves parsed from log.txt equal the logged numbers; the PNG is a real image."""
import pytest
from typer.testing import CliRunner

from ops.common.errors import UserError
from ops.common.runlog import RunLog
from ops.evaluation.curves import parse_log, read_run
from videorec_cli.main import app

RUN_A = {"train": [(0, 2.3456, 0.01, 12.5), (1, 1.8765, 0.01, 30.25), (2, 1.2345, 0.001, 45.0)],
         "val": [(1, 40.0, 80.5), (2, 50.0, 90.0)]}
RUN_B = {"train": [(0, 3.0, 0.02, 5.0), (1, 2.5, 0.002, 10.0)], "val": [(1, 20.0, 60.0)]}


def write_run(folder, run, interrupted_epoch=None):
    """A run folder whose log.txt is written by RunLog with the trainer's line formats."""
    log = RunLog(folder, enabled=True, tensorboard=False)
    log.info("tsm_r18 on synthetic: 8 train / 4 val videos, 10 classes, 1 process(es) on cpu")
    best = 0.0
    for epoch, loss, lr, top1 in run["train"]:
        if epoch == interrupted_epoch:  # logged before an interruption, then again after --resume
            log.info(f"epoch {epoch}: loss 9.9999 lr {lr:.5f} 10.0 clips/s train top-1 1.00")
            log.warn("something odd")
        log.info(f"epoch {epoch}: 2 unreadable samples were replaced (1 distinct files so far)")
        log.info(f"epoch {epoch}: loss {loss:.4f} lr {lr:.5f} 57.1 clips/s train top-1 {top1:.2f}")
        for v_epoch, v1, v5 in run["val"]:
            if v_epoch == epoch:
                best = max(best, v1)
                log.info(f"epoch {epoch} val: top1 {v1:.2f} top5 {v5:.2f} (best top1 {best:.2f})")
    log.close()
    return folder


def test_parsed_series_equal_the_logged_numbers(tmp_path):
    run = read_run(write_run(tmp_path / "a", RUN_A, interrupted_epoch=1))
    assert run.points("loss") == ([0, 1, 2], [2.3456, 1.8765, 1.2345])
    assert run.points("lr") == ([0, 1, 2], [0.01, 0.01, 0.001])
    assert run.points("train_top1") == ([0, 1, 2], [12.5, 30.25, 45.0])
    assert run.points("val_top1") == ([1, 2], [40.0, 50.0]) and run.points("val_top5") == ([1, 2], [80.5, 90.0])
    multi = parse_log(["2026-01-01 00:00:00 epoch 0: loss 0.5 lr 1e-4 3.0 clips/s",
                       "2026-01-01 00:00:01 epoch 0 val: mAP 61.20 (best mAP 61.20)"])
    assert multi.points("lr") == ([0], [1e-4]) and multi.points("val_mAP") == ([0], [61.2])
    assert multi.points("train_top1") == ([], [])


def test_plot_two_runs_into_one_png(tmp_path):
    a, b = write_run(tmp_path / "a", RUN_A), write_run(tmp_path / "b", RUN_B)
    out = tmp_path / "plots" / "curves.png"
    result = CliRunner().invoke(app, ["plot", str(a), str(b), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "a: 3 epochs, best top1 50.00" in result.output and "b: 2 epochs, best top1 20.00" in result.output
    import matplotlib.image

    image = matplotlib.image.imread(out)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 500
    assert image[..., :3].std() > 0.05  # something drawn, not a blank canvas
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]  # no temporary file left


def test_run_without_log_is_one_error_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no log.txt in it"):
        read_run(tmp_path / "empty")
    (tmp_path / "started").mkdir()
    (tmp_path / "started" / "log.txt").write_text("2026-01-01 00:00:00 tsm_r18 on synthetic\n")
    with pytest.raises(UserError, match="no finished epoch logged yet"):
        read_run(tmp_path / "started")
    # through the command: the UserError that main() prints as one `videorec: error:` line
    result = CliRunner().invoke(app, ["plot", str(tmp_path / "empty"), "-o", str(tmp_path / "x.png")])
    assert result.exit_code != 0 and isinstance(result.exception, UserError)
    assert "no log.txt in it" in str(result.exception) and "\n" not in str(result.exception)
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(UserError, match="ending in .png"):
        CliRunner().invoke(app, ["plot", str(tmp_path / "empty"), "-o", str(tmp_path / "x.jpg")],
                           catch_exceptions=False)
