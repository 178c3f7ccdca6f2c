"""Small file helpers shared by every stage: atomic writes and output-location checks."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Iterator

from ops.common.errors import UserError


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


def check_output_dir(path: Path, what: str = "output folder") -> Path:
    """Check, before any work, that ``path`` is a folder we can write in, or can be created.

    Nothing is created: the nearest existing ancestor must be a writable folder. Raises
    :class:`UserError` with one line naming the path and the cause.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} exists and is not a folder")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{what} {path}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" ({existing} is not writable)"
        raise UserError(f"{what} {path} is not writable{where}: choose another with -o/--output-dir or fix its "
                        "permissions")
    return path
