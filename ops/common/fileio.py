"""Small file helpers shared by every stage: atomic writes and output-location checks."""
from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import IO, Iterator

from ops.common.errors import UserError

# Errors of the place a file is written to (not of our code): reported as one line naming the file.
WRITE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG})


def write_error(path: Path, exc: OSError, previous: bool) -> UserError:
    """The one-line error for a failed write of ``path`` (``previous``: an older version exists and is intact)."""
    cause = f"{exc.strerror or exc} (errno {exc.errno})"
    state = "the previous file is intact" if previous else "nothing was written"
    return UserError(f"cannot write {path}: {cause}; {state}")


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it to ``path`` on success.

    A reader never sees a half-written file, and an interrupted or failed write
    leaves the previous version in place. A full disk, a read-only or unwritable
    location or an exceeded quota raises :class:`UserError` naming ``path`` and the
    cause; the temporary file is removed.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, mode) as fh:
            yield fh
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        raise write_error(path, exc, path.exists()) from None
    finally:
        with contextlib.suppress(OSError):
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
        return
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        raise UserError(f"cannot remove the stale report {path}: {exc.strerror} (errno {exc.errno})") from None


def check_output_dir(path: Path, what: str = "output folder",
                     fix: str = "choose another with -o/--output-dir or fix its permissions") -> Path:
    """Check, before any work, that ``path`` is a folder we can write in, or can be created.

    Nothing is created: the nearest existing ancestor must be a writable folder. Raises
    :class:`UserError` with one line naming the path, the cause and ``fix`` (advice that
    names the command's own flag or argument).
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
        raise UserError(f"{what} {path} is not writable{where}: {fix}")
    return path


def write_figure(fig, path: Path, dpi: int = 100) -> None:
    """Save a matplotlib ``Figure`` as a PNG at ``path``, atomically (a bare Figure renders
    with Agg: no display and no global backend needed)."""
    with atomic_open(Path(path), "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi)
