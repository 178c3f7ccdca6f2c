"""Preemption: stop signals to the whole process group (with workers, with 2 ranks), resumed
epochs that log what straight ones do, deferred signals during a save, --sync-bn refusals."""
import os
import signal
import struct
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from ops.common.errors import UserError
from ops.engine.checkpoints import save_checkpoint
from ops.engine.distributed import exit_code
from ops.engine.trainer import StopRequest
from tests.test_train import TINY, _env, cli, free_port, train, weights


def start(dataset, out, *extra, **popen):
    """``videorec train`` in a child process of its own process group, output on a pipe; one compute
    thread, as in this process (conftest), so its numbers match runs made here bit for bit."""
    cmd = [sys.executable, "-m", "videorec_cli.main", "train", str(dataset), *TINY, "-o", str(out), *map(str, extra)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**_env(), "OMP_NUM_THREADS": "1"}, start_new_session=True, **popen)


def wait_for(proc, text: str) -> None:
    """Read the child's output until a line holding ``text`` (the child is then past that point)."""
    for line in proc.stdout:
        if text in line:
            return
    raise AssertionError(f"the run ended before printing {text!r}")


def scalars(run: Path) -> dict:
    """The tensorboard scalars of a run folder: {tag: {step: value}} (later files win)."""
    from tensorboardX.proto.event_pb2 import Event

    out: dict = {}
    for path in sorted((run / "tb").glob("events.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):  # TFRecord: length (8), crc (4), payload, crc (4)
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 16 + n
            for value in event.summary.value:
                out.setdefault(value.tag, {})[event.step] = value.simple_value
    return out


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_group_signal_with_workers_saves_and_resumes(tiny_dataset, tmp_path, signum):
    """SLURM/Kubernetes/systemd (SIGTERM) and a terminal's Ctrl-C (SIGINT) signal the whole group:
    the workers ignore it, the main process saves and exits 128 + signal."""
    out = tmp_path / "run"
    proc = start(tiny_dataset, out, "--workers", 2, "--epochs", 200, "--eval-freq", 1000)
    wait_for(proc, "epoch 0:")
    os.killpg(proc.pid, signum)
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, text
    assert "Traceback" not in text and "DataLoader worker" not in text
    state = torch.load(out / "last.pth", weights_only=True)
    log = (out / "log.txt").read_text()
    assert f"interrupted by signal {int(signum)} at epoch {state['epoch']} step {state['step']}" in log
    assert not list(out.glob(".*.tmp-*"))
    resumed = train(tiny_dataset, out, "--epochs", state["epoch"] + 1, "--resume", "auto")
    assert f"at epoch {state['epoch']} step {state['step']}" in resumed.output


def test_a_resumed_epoch_logs_what_a_straight_one_logs(tiny_dataset, tmp_path):
    """SIGTERM pending from the start (blocked in the child until training installs its handler)
    stops the run after exactly one step; the resumed epoch's loss and top-1 average all 4 steps."""
    out = tmp_path / "split"
    proc = start(tiny_dataset, out, "--epochs", 1,
                 preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}))
    proc.send_signal(signal.SIGTERM)
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, text
    state = torch.load(out / "last.pth", weights_only=True)
    assert (state["epoch"], state["step"], state["epoch_sums"]["seen"]) == (0, 1, 4)
    assert "interrupted by signal 15 at epoch 0 step 1" in (out / "log.txt").read_text()
    resumed = train(tiny_dataset, out, "--epochs", 1, "--resume", "auto")
    assert f"resumed from {out / 'last.pth'} at epoch 0 step 1" in resumed.output
    train(tiny_dataset, tmp_path / "straight", "--epochs", 1)
    split, straight = scalars(out), scalars(tmp_path / "straight")
    for tag in ("loss/train", "acc/train_top1", "acc/test_top1"):
        assert split[tag][0] == pytest.approx(straight[tag][0], abs=1e-6), tag
    a, b = weights(out / "last.pth"), weights(tmp_path / "straight" / "last.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_ranks_group_sigterm_exits_143_with_a_loadable_checkpoint(tiny_dataset, tmp_path):
    out = tmp_path / "ddp"
    proc = start(tiny_dataset, out, "--workers", 1, "--epochs", 200, "--eval-freq", 1000, "--nproc-per-node", 2,
                 "--master-port", free_port())
    wait_for(proc, "epoch 0:")
    os.killpg(proc.pid, signal.SIGTERM)  # the launcher's group; it forwards the signal to the ranks
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, text[-3000:]
    assert "distributed run failed" not in text
    state = torch.load(out / "last.pth", weights_only=True)
    assert state["epoch"] >= 1 and "interrupted by signal 15" in (out / "log.txt").read_text()


class SignalWhenPickled:
    """Sends ``signum`` to this process while torch.save pickles it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def __reduce__(self):
        os.kill(os.getpid(), self.signum)
        return OrderedDict, ([("signum", int(self.signum))],)


def test_a_signal_during_a_save_is_deferred(tmp_path):
    with StopRequest() as stop:
        save_checkpoint(tmp_path / "last.pth", {"step": 3, "payload": SignalWhenPickled(signal.SIGINT)})
    assert stop.signum == signal.SIGINT  # recorded, not raised as KeyboardInterrupt inside torch.save
    assert torch.load(tmp_path / "last.pth", weights_only=True) == {"step": 3, "payload": {"signum": signal.SIGINT}}


def test_launcher_exit_code_is_the_ranks():
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    def failed(code: int) -> ChildFailedError:
        return ChildFailedError("videorec", {1: ProcessFailure(1, 4242, code, "<N/A>")})

    assert exit_code(SignalException("got SIGINT", sigval=signal.SIGINT)) == 130
    assert exit_code(failed(143)) == 143 and exit_code(failed(-signal.SIGKILL)) == 137 and exit_code(failed(2)) == 2


@pytest.mark.parametrize("extra", [(), ("--nproc-per-node", "2", "--device", "cpu")])
def test_sync_bn_is_refused_off_cuda_or_in_one_process(tiny_dataset, tmp_path, extra):
    with pytest.raises(UserError, match="--sync-bn needs 2\\+ processes on CUDA"):
        cli("train", tiny_dataset, *TINY, "-o", tmp_path / "run", "--epochs", 1, "--sync-bn", *extra)
    assert not (tmp_path / "run").exists()
