"""Run logging: console, a plain-text log, tensorboardX scalars and the ledger of skipped samples (rank 0 writes)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from ops.common.fileio import write_text_atomic


class RunLog:
    """Writes ``log.txt`` and tensorboard scalars into the run folder (rank 0); other ranks stay quiet."""

    def __init__(self, output_dir: Path, enabled: bool, tensorboard: bool = True, prefix: str = "") -> None:
        self.enabled = enabled
        self.prefix = f"[{prefix}] " if prefix else ""
        self.file = None
        self.writer = None
        if enabled:
            output_dir.mkdir(parents=True, exist_ok=True)
            self.file = open(output_dir / "log.txt", "a", buffering=1)
            if tensorboard:
                from tensorboardX import SummaryWriter

                self.writer = SummaryWriter(str(output_dir / "tb"))

    def info(self, message: str) -> None:
        if not self.enabled:
            return
        print(self.prefix + message, flush=True)
        self.file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def warn(self, message: str) -> None:
        if self.enabled:
            print(f"{self.prefix}warning: {message}", file=sys.stderr, flush=True)
            self.file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} warning: {message}\n")

    def scalars(self, values: Dict[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.file is not None:
            self.file.close()


def progress(iterable, total: Optional[int], desc: str, enabled: bool):
    """A tqdm bar on a terminal (rank 0); plain iteration in logs and other ranks."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not (enabled and sys.stderr.isatty()), leave=False,
                dynamic_ncols=True)


class SkipLedger:
    """The unreadable samples of a run: per split and epoch, summed over processes.

    Each process :meth:`add` s the reports its loader gives (``path<TAB>reason`` lines, several
    per item when replacements failed too). At the end of a split's epoch, :meth:`close` takes
    the reports of every process (gathered by the caller), warns once per new file, logs one
    line and rewrites ``skipped.json`` atomically (when given a path: rank 0)::

        {"epochs": [{"epoch": 0, "split": "train", "count": 5, "files": {"PATH": 2, ...}}, ...],
         "files": {"PATH": "REASON", ...}}   # every distinct file of the run, with its first reason

    Training replaces an unreadable sample by another; validation leaves it out.
    """

    def __init__(self, log: RunLog, path: Optional[Path] = None) -> None:
        self.log = log
        self.path = path
        self.pending: List[str] = []  # this process's reports of the running epoch
        self.epochs: List[dict] = []
        self.files: Dict[str, str] = {}

    def add(self, reports: Iterable[str]) -> None:
        self.pending.extend(line for report in reports for line in report.split("\n") if line)

    def take(self) -> List[str]:
        """This process's reports of the running epoch (and forget them)."""
        taken, self.pending = self.pending, []
        return taken

    def close(self, epoch: int, split: str, lines: Sequence[str]) -> None:
        """Record ``lines``, all processes' reports of ``split`` in ``epoch``."""
        counts: Dict[str, int] = {}
        for line in lines:
            path, _, reason = line.partition("\t")
            counts[path] = counts.get(path, 0) + 1
            if path not in self.files:
                self.files[path] = reason
                self.log.warn(f"skipped unreadable sample {reason if reason.startswith(path) else f'{path}: {reason}'}")
        if not counts:
            return
        total = sum(counts.values())
        self.epochs.append({"epoch": epoch, "split": split, "count": total, "files": counts})
        what = "replaced by others" if split == "train" else "left out"
        self.log.info(f"epoch {epoch}: {total} unreadable {split} samples {what} ({len(counts)} file(s); "
                      f"{len(self.files)} distinct in the run so far)")
        if self.path is not None:
            write_text_atomic(self.path, json.dumps({"epochs": self.epochs, "files": self.files}, indent=1) + "\n")

    def summary(self) -> Optional[str]:
        """One line for the end of the run: distinct files, per split (None when there were none)."""
        if not self.files:
            return None
        splits = {split: len({p for e in self.epochs if e["split"] == split for p in e["files"]})
                  for split in dict.fromkeys(e["split"] for e in self.epochs)}
        per_split = ", ".join(f"{split} {n}" for split, n in splits.items())
        where = f"; see {self.path}" if self.path is not None else ""
        return f"{len(self.files)} distinct unreadable files were skipped during the run ({per_split}){where}"

    def state_dict(self, pending: Sequence[str]) -> dict:
        """What a checkpoint keeps: the history and ``pending``, the running epoch's reports of
        every process."""
        return {"pending": list(pending), "epochs": self.epochs, "files": self.files}

    def load_state_dict(self, state: dict) -> None:
        self.pending = list(state["pending"])
        self.epochs = list(state["epochs"])
        self.files = dict(state["files"])
