"""Output locations that cannot be written: one line naming the path, before any work; nothing half-written."""
from __future__ import annotations

import ctypes
import errno
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from ops.common.errors import UserError
from ops.common.fileio import atomic_open, write_report, write_text_atomic

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def shared_dir():
    """A folder every user can read (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="videorec-edges-"))
    path.chmod(0o755)
    yield path
    for sub in path.rglob("*"):
        if sub.is_dir():
            sub.chmod(0o755)
    shutil.rmtree(path)


def _drop_root_powers() -> None:
    """In the child, before exec: make permission bits count for root.

    Root keeps its uid (the interpreter may live in a folder only root can enter) but
    loses the capabilities that override file permissions (CAP_DAC_OVERRIDE = 1,
    CAP_DAC_READ_SEARCH = 2, dropped from the bounding set so exec does not restore
    them); where that is not allowed, it becomes uid 65534 instead.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if any(libc.prctl(24, cap, 0, 0, 0) != 0 for cap in (1, 2)):  # 24: PR_CAPBSET_DROP
        os.setuid(65534)


# Runs `videorec` (its real entry point) once per argument list given as JSON, in one process to pay
# the start-up once; prints one JSON line per run: exit code and what went to stderr.
CHILD = """
import contextlib, io, json, sys
from videorec_cli.main import main
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    sys.argv = ["videorec", *args]
    with contextlib.redirect_stderr(err):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code
    print(json.dumps([code, err.getvalue()]))
"""


def run_unprivileged(*runs) -> list:
    """(exit code, stderr) of ``videorec ARGS`` for each run, in a subprocess for which permission bits count
    even when the tests run as root."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps([[str(a) for a in run] for run in runs])],
                          env=env, cwd=REPO, preexec_fn=_drop_root_powers if os.geteuid() == 0 else None,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def assert_one_error_line(result: list, path: Path) -> str:
    code, stderr = result
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("videorec: error:"), stderr
    assert str(path) in lines[0] and "not writable" in lines[0] and "Traceback" not in stderr
    return lines[0]


def test_unwritable_outputs_fail_first_with_one_line(shared_dir):
    videos = shared_dir / "videos" / "a"
    videos.mkdir(parents=True)
    (videos / "clip.mp4").write_bytes(b"not a video")  # never read: the check comes first
    (videos / "clip.mp4").chmod(0o644)
    scores = shared_dir / "scores.pkl"
    scores.write_bytes(pickle.dumps({"format": "videorec-scores", "version": 1, "video_ids": ["a"],
                                     "labels": np.zeros(1, np.int64), "logits": np.zeros((1, 1, 3), np.float32)}))
    scores.chmod(0o644)
    locked = shared_dir / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    frames, lists = locked / "frames", locked / "lists"
    extract, annotate, ensemble, train, test = run_unprivileged(
        ("extract-frames", shared_dir / "videos", frames),
        ("make-annotations", "--format", "folder", "--media", "videos", "--media-dir", shared_dir / "videos",
         "-o", lists),
        ("ensemble-pkl", scores, "-o", locked),
        ("train", "ucf101", "--arch", "tsn_r18", "-o", locked / "run"),  # checked before the dataset is read
        ("test", "ucf101", "--weights", shared_dir / "missing.pth", "-o", locked / "scores"))
    assert "choose another DST" in assert_one_error_line(extract, frames)
    assert "-o/--output-dir" in assert_one_error_line(annotate, lists)
    assert_one_error_line(ensemble, locked)
    assert_one_error_line(train, locked / "run")
    assert_one_error_line(test, locked / "scores")
    assert list(locked.iterdir()) == []


def disk_full(*_):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_during_a_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "run" / "last.pth"
    path.parent.mkdir()
    path.write_text("previous")
    with pytest.raises(UserError) as info:
        with atomic_open(path, "w") as fh:
            fh.write("half of the new")
            disk_full()
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "No space left on device (errno 28); the previous file is intact" in message
    assert path.read_text() == "previous" and os.listdir(path.parent) == ["last.pth"]

    with pytest.raises(UserError, match=r"cannot write .*new.txt: .*errno 28\); nothing was written"):
        with atomic_open(tmp_path / "new.txt", "wb") as fh:
            disk_full()
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_read_only_place_is_one_line(tmp_path, monkeypatch):
    """A write error raised by the rename (read-only file system) is reported the same way."""
    monkeypatch.setattr(os, "replace", lambda *_: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system")))
    with pytest.raises(UserError, match=r"cannot write .*x.txt: Read-only file system \(errno 30\)"):
        write_text_atomic(tmp_path / "x.txt", "text")
    assert os.listdir(tmp_path) == []


def test_other_errors_are_not_disguised(tmp_path):
    """Only errors of the place written to become user errors; a bug still raises."""
    with pytest.raises(OSError, match="bad file descriptor"):
        with atomic_open(tmp_path / "x.txt") as fh:
            fh.write("x")
            raise OSError(errno.EBADF, "bad file descriptor")
    assert os.listdir(tmp_path) == []
    write_report(tmp_path / "r.txt", ["a", "b"])
    assert (tmp_path / "r.txt").read_text() == "a\nb\n"
    write_report(tmp_path / "r.txt", [])
    assert not (tmp_path / "r.txt").exists()


def test_run_log_in_a_read_only_place_is_one_line(tmp_path, monkeypatch):
    from ops.common.runlog import RunLog

    def read_only(*_args, **_kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("builtins.open", read_only)
    with pytest.raises(UserError, match=r"cannot write .*log.txt: Read-only file system \(errno 30\); nothing was"):
        RunLog(tmp_path / "run", enabled=True, tensorboard=False)
