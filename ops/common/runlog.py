"""Run logging: console, a plain-text log and tensorboardX scalars, on rank 0 only."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Dict, Optional

from ops.common.fileio import WRITE_ERRNOS, write_error


class RunLog:
    """Writes ``log.txt`` and tensorboard scalars into the run folder (rank 0); other ranks stay quiet."""

    def __init__(self, output_dir: Path, enabled: bool, tensorboard: bool = True, prefix: str = "") -> None:
        self.enabled = enabled
        self.prefix = f"[{prefix}] " if prefix else ""
        self.file = None
        self.writer = None
        if enabled:
            try:
                output_dir.mkdir(parents=True, exist_ok=True)
                self.file = open(output_dir / "log.txt", "a", buffering=1)
            except OSError as exc:
                if exc.errno not in WRITE_ERRNOS:
                    raise
                raise write_error(output_dir / "log.txt", exc, (output_dir / "log.txt").exists()) from None
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


class BadSamples:
    """Counts unreadable samples reported by the dataset; warns once per file."""

    def __init__(self, log: RunLog) -> None:
        self.log = log
        self.seen: Dict[str, str] = {}
        self.epoch_count = 0

    def add(self, reports) -> None:
        for report in reports:
            for line in filter(None, report.split("\n")):
                path, _, reason = line.partition("\t")
                self.epoch_count += 1
                if path not in self.seen:
                    self.seen[path] = reason
                    self.log.warn(f"skipped unreadable sample {path}: {reason}")

    def end_epoch(self, epoch: int) -> None:
        if self.epoch_count:
            self.log.info(f"epoch {epoch}: {self.epoch_count} unreadable samples were replaced "
                          f"({len(self.seen)} distinct files so far)")
        self.epoch_count = 0
