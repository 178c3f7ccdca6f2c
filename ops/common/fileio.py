"""Small file helpers shared by the data-preparation commands."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it to ``path`` on success.

    A reader never sees a half-written file, and an interrupted or failed write
    leaves the previous version in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, mode) as fh:
            yield fh
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_report(path: Path, lines: list[str]) -> None:
    """Write a report (one item per line) atomically, or remove a stale one when there is nothing to report."""
    path = Path(path)
    if lines:
        write_text_atomic(path, "".join(f"{line}\n" for line in lines))
    else:
        path.unlink(missing_ok=True)
