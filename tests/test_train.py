"""The engine end to end on a tiny dataset: train, resume, interrupt, DDP, test, fuse."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from archs.checkpoint import CheckpointError
from ops.common.errors import UserError
from ops.evaluation.scores import read_scores
from videorec_cli.main import app

TINY = ["--arch", "tsm_mbv2", "-m", "width_mult=0.25", "--crop-size", "32", "--scale-size", "32",
        "--num-segments", "4", "-b", "4", "--workers", "0", "--npb", "--lr", "0.05", "--eval-freq", "1"]


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def train(dataset, out, *extra):
    result = cli("train", dataset, *TINY, "-o", out, *extra)
    assert result.exit_code == 0, result.output
    return result


def weights(path):
    return torch.load(path, weights_only=True)["model"]


def test_resume_gives_the_same_weights(tiny_dataset, tmp_path):
    train(tiny_dataset, tmp_path / "straight", "--epochs", 2)
    train(tiny_dataset, tmp_path / "split", "--epochs", 1)
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()  # its PID names no process now
    stale, live = tmp_path / "split" / f".last.pth.tmp-{dead.pid}", tmp_path / "split" / f".notes.txt.tmp-{os.getpid()}"
    stale.write_bytes(b"half a checkpoint")
    live.write_bytes(b"being written")
    out = train(tiny_dataset, tmp_path / "split", "--epochs", 2, "--resume", "auto")
    assert "resumed from" in out.output
    assert f"removed {stale.name}" in out.output and not stale.exists() and live.exists()
    a, b = weights(tmp_path / "straight" / "last.pth"), weights(tmp_path / "split" / "last.pth")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    settings = json.loads((tmp_path / "straight" / "settings.json").read_text())
    assert settings["arch"] == "tsm_mbv2" and settings["input_spec"]["num_segments"] == 4
    assert (tmp_path / "straight" / "log.txt").is_file() and any((tmp_path / "straight" / "tb").iterdir())


def test_test_writes_one_score_file_per_clip_and_fuses(tiny_dataset, tmp_path):
    train(tiny_dataset, tmp_path / "run", "--epochs", 1)
    out = cli("test", tiny_dataset, "--weights", tmp_path / "run" / "last.pth", "--test-crops", 3,
              "--clip-index", "all", "--num-clips", 2, "--workers", 0, "-o", tmp_path / "scores", "--exits")
    assert out.exit_code == 0, out.output
    files = sorted((tmp_path / "scores").glob("*.pkl"))
    assert [f.name for f in files] == ["scores_clip0of2.pkl", "scores_clip1of2.pkl"]
    s0 = read_scores(files[0])
    assert s0.logits.shape == (8, 3, 4) and s0.exit_logits.shape == (8, 4, 4)
    assert s0.video_ids[0] == "frames/grow/grow_4" and s0.settings["test_crops"] == 3
    assert s0.settings["input_spec"]["crop_size"] == 32  # the trained input spec, not the model's default 224
    # clip 0 and clip 1 sample different frames, so their scores differ
    s1 = read_scores(files[1])
    assert (s0.clip_index, s1.clip_index, s1.num_clips) == (0, 1, 2) and not np.array_equal(s0.logits, s1.logits)
    fused = cli("ensemble-pkl", tmp_path / "scores", "-o", tmp_path / "report")
    assert fused.exit_code == 0 and "2 files, 6 views, 8 videos" in fused.output
    assert (tmp_path / "report" / "confusion_matrix.csv").is_file()
    pred = cli("predict", Path(tiny_dataset).parent / "frames" / "grow" / "grow_4", "--weights", tmp_path / "run" / "last.pth")
    lines = pred.output.strip().splitlines()
    assert pred.exit_code == 0 and len(lines) == 4  # top-5 of 4 classes
    assert {line.split()[-1] for line in lines} == {"grow", "move_left", "move_right", "shrink"}
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth: not a readable PyTorch checkpoint"):
        cli("test", tiny_dataset, "--weights", junk, "--workers", 0)


def test_checkpoint_for_another_class_count(tiny_dataset, tmp_path):
    train(tiny_dataset, tmp_path / "run", "--epochs", 1)
    five = tmp_path / "five.json"
    config = json.loads(Path(tiny_dataset).read_text())
    config.update(num_classes=5, root=str(Path(tiny_dataset).parent))
    five.write_text(json.dumps(config))
    (Path(tiny_dataset).parent / "classes.txt")  # the 4-name classes.txt would win: use a root without one
    shutil.copytree(Path(tiny_dataset).parent / "frames", tmp_path / "five" / "frames")
    for name in ("train.txt", "val.txt"):
        shutil.copy(Path(tiny_dataset).parent / name, tmp_path / "five" / name)
    config["root"] = str(tmp_path / "five")
    five.write_text(json.dumps(config))
    with pytest.raises(UserError, match="checkpoint has 4 classes but dataset tiny has 5; test it on the dataset it "
                                        "was trained on") as failure:
        cli("test", five, "--weights", tmp_path / "run" / "last.pth", "--workers", 0, "-o", tmp_path / "s")
    assert "--tune-from" not in str(failure.value)  # a flag `test` does not have
    out = train(five, tmp_path / "tuned", "--epochs", 1, "--tune-from", tmp_path / "run" / "last.pth")
    assert "classifier of" in out.output and "dropped" in out.output


def test_bad_samples_are_replaced_in_training_and_skipped_in_test(tiny_dataset, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(Path(tiny_dataset).parent, root)
    for folder in (root / "frames" / "grow" / "grow_0", root / "frames" / "shrink" / "shrink_5"):  # train, val
        for frame in folder.iterdir():  # the folder stays (a missing one is left out at start): unreadable
            frame.unlink()
    out = train(root / "tiny.json", tmp_path / "run", "--epochs", 1)
    assert "skipped unreadable sample" in out.output + (out.stderr if out.stderr_bytes else "")
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "grow_0" in log and "unreadable train samples replaced by others" in log
    assert "epoch 0: 1 unreadable val samples left out" in log  # the last epoch's validation skips too
    test = cli("test", root / "tiny.json", "--weights", tmp_path / "run" / "last.pth", "--workers", 0, "-o", tmp_path / "s")
    assert "1 unreadable skipped" in test.output
    assert "frames/shrink/shrink_5" not in read_scores(tmp_path / "s" / "scores_clip0of1.pkl").video_ids
    with pytest.raises(UserError, match=r"train\.txt:\d+: .*grow_0"):  # --strict-data: the first one, by list:line
        cli("train", root / "tiny.json", *TINY, "-o", tmp_path / "strict", "--epochs", 1, "--strict-data")


def _env():
    env = dict(os.environ)
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def test_sigterm_saves_a_checkpoint_that_resumes(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "videorec_cli.main", "train", str(tiny_dataset), *TINY, "-o", str(out),
           "--epochs", "200", "--eval-freq", "1000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    for line in proc.stdout:  # blocks until the run reports its first epoch: the signal handler is in place
        if "epoch 0:" in line:
            break
    proc.send_signal(signal.SIGTERM)
    err, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "checkpoint saved" in err and "Traceback" not in err
    state = torch.load(out / "last.pth", weights_only=True)
    assert state["epoch"] >= 1
    resumed = train(tiny_dataset, out, "--epochs", state["epoch"] + 1, "--resume", "auto")
    assert f"at epoch {state['epoch']} step {state['step']}" in resumed.output


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def flawed_dataset(tiny_dataset, tmp_path) -> Path:
    """The tiny dataset with unreadable samples: train rows 0 and 9 (frame folders emptied; rank 1
    and rank 0 of 2 read them in epoch 0), row 14 (frames 3-8 of 8 gone) and a val row (folder
    emptied). A folder that is gone would be left out when the lists are read, not skipped."""
    root = tmp_path / "data"
    shutil.copytree(Path(tiny_dataset).parent, root)
    for folder in ("grow/grow_0", "move_right/move_right_1", "move_left/move_left_5"):
        for frame in (root / "frames" / folder).iterdir():
            frame.unlink()
    for i in range(3, 9):
        (root / "frames" / "shrink" / "shrink_2" / f"img_{i:05d}.jpg").unlink()
    return root / "tiny.json"


def test_two_process_gloo_ddp_train_ledger_and_sharded_test(flawed_dataset, tmp_path):
    cmd = [sys.executable, "-m", "videorec_cli.main", "train", str(flawed_dataset), *TINY, "-o", str(tmp_path / "ddp"),
           "--epochs", "1", "--nproc-per-node", "2", "--master-port", str(free_port())]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    settings = json.loads((tmp_path / "ddp" / "settings.json").read_text())
    assert settings["world_size"] == 2 and (tmp_path / "ddp" / "last.pth").is_file()
    assert done.stdout.count("val:") == 1  # only rank 0 logs
    # the skip ledger sums both ranks: the same as one process reading every row of the epoch
    train(flawed_dataset, tmp_path / "one_process", "--epochs", 1)
    ddp, one = (json.loads((tmp_path / run / "skipped.json").read_text()) for run in ("ddp", "one_process"))
    assert ddp == one
    assert [(e["split"], e["epoch"]) for e in ddp["epochs"]] == [("train", 0), ("val", 0)]
    assert sorted(Path(p).name for p in ddp["files"]) == ["grow_0", "move_left_5", "move_right_1", "shrink_2"]
    assert sorted(Path(p).name for p in ddp["epochs"][0]["files"]) == ["grow_0", "move_right_1", "shrink_2"]
    assert ddp["epochs"][0]["count"] >= 3 and ddp["epochs"][1] == {
        "epoch": 0, "split": "val", "count": 1, "files": {str(Path(flawed_dataset).parent / "frames/move_left/move_left_5"): 1}}
    assert "4 distinct unreadable files were skipped during the run (train 3, val 1)" in done.stdout
    ckpt = tmp_path / "ddp" / "last.pth"
    test = [sys.executable, "-m", "videorec_cli.main", "test", str(flawed_dataset), "--weights", str(ckpt), "--workers", "0",
            "--device", "cpu"]
    one = subprocess.run(test + ["-o", str(tmp_path / "one")], capture_output=True, text=True, env=_env(), timeout=300)
    two = subprocess.run(test + ["-o", str(tmp_path / "two"), "--nproc-per-node", "2", "--master-port", str(free_port())],
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    a, b = read_scores(tmp_path / "one" / "scores_clip0of1.pkl"), read_scores(tmp_path / "two" / "scores_clip0of1.pkl")
    assert a.video_ids == b.video_ids and len(a.video_ids) == 7  # every readable video once, list order
    assert np.allclose(a.logits, b.logits, atol=1e-5)


def test_resume_from_a_signal_at_the_last_step_of_an_epoch(tiny_dataset, tmp_path):
    """A stop signal on an epoch's last step saves step == steps per epoch; resuming finishes that epoch."""
    train(tiny_dataset, tmp_path / "run", "--epochs", 1)
    state = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    state.update(epoch=0, step=4)  # 16 train videos / batch 4: the interrupt came after the last step
    torch.save(state, tmp_path / "run" / "last.pth")
    out = train(tiny_dataset, tmp_path / "run", "--epochs", 1, "--resume", "auto")
    assert "at epoch 0 step 4" in out.output and "epoch 0 val:" in out.output


def test_missing_list_entries_are_reported_in_the_run_and_score_folders(tiny_dataset, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset.parent, root)
    for split in ("train", "val"):
        with open(root / f"{split}.txt", "a") as fh:
            fh.write(f"frames/gone/{split}_video 8 0\n")
    config = root / tiny_dataset.name
    run = train(config, tmp_path / "run", "--epochs", 1, "--max-iters-per-epoch", 1)
    assert "list entries name media that do not exist" in run.output
    lines = (tmp_path / "run" / "missing_train.txt").read_text().splitlines()
    assert lines == [f"{root / 'train.txt'}:17 {root / 'frames/gone/train_video'}"]
    assert (tmp_path / "run" / "missing_val.txt").read_text().count("val_video") == 1
    out = cli("test", config, "--weights", tmp_path / "run" / "last.pth", "--test-list", "val.txt", "-o", tmp_path / "s",
              "--workers", 0)
    assert out.exit_code == 0, out.output
    assert "frames/gone/val_video" in (tmp_path / "s" / "missing_test.txt").read_text()
    assert len(read_scores(tmp_path / "s" / "scores_clip0of1.pkl").video_ids) == 8
