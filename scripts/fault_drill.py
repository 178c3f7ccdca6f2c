"""The operator's fault drill: kill a small training run at random moments, resume it each
time with ``--resume auto``, and compare the result with a straight run, bit for bit.

    python scripts/fault_drill.py [--kills 8] [--seed 0] [--arch tsn_r18] [--epochs 3] [--threads 1] [--workdir DIR]

It makes its own dataset (``videorec make-synthetic`` + ``extract-frames`` + ``make-annotations``:
4 classes of 32x32 videos), trains it straight once, then runs the same training again and kills
it ``--kills`` times, the way a cluster does: SIGTERM to the whole process group (preemption),
SIGINT to the group (Ctrl-C), SIGKILL to the group (out of memory, node loss) and SIGKILL while
``last.pth`` is being written. The kinds take turns in a seeded random order, each after a seeded
random delay. After every kill it checks the exit code (143, 130, or killed), that ``last.pth``
(if any) loads, and measures the temporary files left behind; then it resumes.

Printed at the end:
- kills survived: kills after which the exit code was the expected one and ``last.pth`` loaded;
- resumes exact: the resumed run's final state_dict equals the straight run's bit for bit (every
  resume feeds the next, so one inexact resume would show here), and so do the logged per-epoch
  training loss / top-1 and validation metrics;
- bytes left behind: temporary files in the run folder after a kill (removed by the next start)
  and after the run finished (must be 0).
Exit code 0 when everything held, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import torch

KINDS = ("sigterm-group", "sigint-group", "sigkill-group", "sigkill-mid-save")
EXPECTED = {"sigterm-group": 128 + signal.SIGTERM, "sigint-group": 128 + signal.SIGINT,
            "sigkill-group": -signal.SIGKILL, "sigkill-mid-save": -signal.SIGKILL}
READY = "process(es) on"  # the run log's first line: the run has started


def videorec(*args: object) -> List[str]:
    return [sys.executable, "-m", "videorec_cli.main", *map(str, args)]


def make_dataset(root: Path, seed: int) -> Path:
    """4 classes x 10 videos of 16 frames at 32x32 (30 train / 10 val); returns the dataset .json."""
    classes = "grow,shrink,move_left,move_right"
    for cmd in (videorec("make-synthetic", root, "--num-videos", 40, "--frames", 16, "--size", 32, "--seed", seed,
                         "--classes", classes),
                videorec("extract-frames", root / "videos", root / "frames", "--short-side", 0),
                videorec("make-annotations", "-f", "folder", "--media-dir", root / "frames", "--root", root,
                         "--val-fraction", 0.25, "--seed", seed)):
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    config = root / "drill.json"
    config.write_text(json.dumps({"name": "drill", "num_classes": 4, "root": str(root)}))
    return config


def temporaries(folder: Path) -> int:
    """Bytes in the temporary files of interrupted writes (``.NAME.tmp-PID``) in ``folder``."""
    return sum(p.stat().st_size for p in folder.glob(".*.tmp-*")) if folder.is_dir() else 0


def epoch_lines(run: Path) -> Dict[str, str]:
    """The logged metrics of each epoch ("epoch E:" and "epoch E val:" lines, the clip rate left out);
    the last one wins (an epoch re-run after a kill logs again)."""
    lines: Dict[str, str] = {}
    for line in (run / "log.txt").read_text().splitlines():
        match = re.search(r"(epoch \d+(?: val)?): (loss|top1|mAP) (.*)", line)
        if match:
            lines[match.group(1)] = re.sub(r"[\d.]+ clips/s ", "", f"{match.group(2)} {match.group(3)}")
    return lines


def load_state(path: Path) -> Optional[dict]:
    return torch.load(path, weights_only=True, map_location="cpu") if path.is_file() else None


@dataclass
class Kill:
    kind: str
    code: Optional[int]   # None: the run finished before the kill
    position: str         # where last.pth stands after the kill
    loadable: bool
    left_bytes: int       # temporary files right after the kill

    @property
    def survived(self) -> bool:
        return self.code == EXPECTED[self.kind] and self.loadable


class Drill:
    def __init__(self, data: Path, work: Path, args: argparse.Namespace) -> None:
        self.data, self.work, self.args = data, work, args
        self.rng = random.Random(args.seed)
        self.env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}

    def train_cmd(self, out: Path) -> List[str]:
        a = self.args
        return videorec("train", self.data, "--arch", a.arch, "--crop-size", 32, "--scale-size", 32,
                        "--num-segments", 4, "-b", 4, "--workers", 2, "--lr", 0.01, "--epochs", a.epochs,
                        "--eval-freq", 1, "--seed", a.seed, "--device", "cpu", "-o", out, "--resume", "auto",
                        *(["--npb"] if a.arch.startswith("tsm") else []))

    def start(self, out: Path) -> subprocess.Popen:
        proc = subprocess.Popen(self.train_cmd(out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, env=self.env)
        for line in proc.stdout:
            if READY in line:
                break
        return proc

    def straight(self) -> float:
        """Train straight through; returns the seconds of training after start-up."""
        proc = self.start(self.work / "straight")
        tic = time.time()
        text, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"the straight run failed:\n{text[-2000:]}")
        return time.time() - tic

    def kill_once(self, out: Path, kind: str, window: float) -> Kill:
        proc = self.start(out)
        time.sleep(self.rng.uniform(0, window))
        if kind == "sigkill-mid-save":  # wait until last.pth is being written (part of it is on disk)
            tmp = out / f".last.pth.tmp-{proc.pid}"
            while proc.poll() is None and not (tmp.exists() and tmp.stat().st_size > 0):
                time.sleep(0.0005)
        sig = {"sigterm-group": signal.SIGTERM, "sigint-group": signal.SIGINT}.get(kind, signal.SIGKILL)
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        finished = proc.poll() == 0
        proc.communicate()
        try:
            state = load_state(out / "last.pth")
            loadable = True
        except Exception:  # a torn or half-written checkpoint: the drill failed
            state, loadable = None, False
        position = f"epoch {state['epoch']} step {state['step']}" if state else "none yet"
        return Kill(kind, None if finished else proc.returncode, position, loadable, temporaries(out))

    def run(self) -> bool:
        a = self.args
        train_time = self.straight()
        print(f"  straight run: {train_time:.0f} s of training", flush=True)
        out = self.work / "drilled"
        kinds = [KINDS[i % len(KINDS)] for i in range(a.kills)]
        self.rng.shuffle(kinds)
        kills: List[Kill] = []
        for kind in kinds:
            kill = self.kill_once(out, kind, window=1.5 * train_time / max(a.kills, 1))  # spread over the run
            print(f"  {kind:17s} exit {kill.code} -> last.pth {kill.position}"
                  f"{'' if kill.loadable else ' NOT LOADABLE'}, {kill.left_bytes} temporary bytes", flush=True)
            kills.append(kill)
            if kill.code is None:
                print("  the run finished before this kill; no more kills", flush=True)
                break
        final = subprocess.run(self.train_cmd(out), capture_output=True, text=True, env=self.env)
        if final.returncode:
            print(final.stdout[-2000:] + final.stderr[-2000:])
        a_state, b_state = load_state(self.work / "straight" / "last.pth"), load_state(out / "last.pth")
        same = (final.returncode == 0 and b_state is not None and a_state["model"].keys() == b_state["model"].keys()
                and all(torch.equal(a_state["model"][k], b_state["model"][k]) for k in a_state["model"]))
        same_opt = same and all(torch.equal(x["momentum_buffer"], y["momentum_buffer"]) for x, y in zip(
            a_state["optimizer"]["state"].values(), b_state["optimizer"]["state"].values()))
        metrics_same = epoch_lines(self.work / "straight") == epoch_lines(out)
        done = [k for k in kills if k.code is not None]
        survived = sum(k.survived for k in done)
        per_kind = ", ".join(f"{kind} {sum(k.kind == kind for k in done)}" for kind in KINDS)
        left_after_kills = max((k.left_bytes for k in done), default=0)
        left_at_end = temporaries(out)
        exact = same and same_opt and metrics_same
        print(f"kills survived: {survived}/{len(done)} ({per_kind})")
        print(f"resumes exact: {len(done) if exact else 0}/{len(done)} (final state_dict "
              f"{'equal' if same else 'DIFFERENT'} bit for bit, momentum {'equal' if same_opt else 'DIFFERENT'}, "
              f"logged epoch metrics {'equal' if metrics_same else 'DIFFERENT'})")
        print(f"bytes left behind: {left_at_end} after the run; at most {left_after_kills} right after a kill "
              "(removed by the next start)")
        return survived == len(done) and exact and left_at_end == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arch", default="tsn_r18", help="tsn_r18 (90 MB checkpoints: long saves) or tsm_mbv2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="compute threads per process (main and 2 workers)")
    parser.add_argument("--workdir", type=Path, help="where the dataset and runs go (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fault_drill_") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = make_dataset(work / "data", args.seed)
        print(f"fault drill: {args.arch}, {args.epochs} epochs, {args.kills} kills, seed {args.seed}, in {work}", flush=True)
        ok = Drill(data, work, args).run()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
