"""Released weights into a local cache: resumable, hash-checked, written atomically.

The cache is ``$VIDEOREC_HOME/weights`` (default ``$XDG_CACHE_HOME/videorec`` or
``~/.cache/videorec``). A download goes to ``FILE.part`` and resumes from it with an
HTTP Range request after a cut; the finished file is checked against the published
sha256 (else the hash recorded at the first download, in ``sha256.json`` beside the
files) and only then renamed to its cached name, so a cached file is always whole
and verified. A cached file whose hash no longer matches is refused and moved
aside, and the next run fetches it afresh.
"""
from __future__ import annotations

import fcntl
import hashlib
import http.client
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Mapping, Optional, Tuple, Union
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from archs.weights import UnknownWeightsError, WeightsEntry, get_weights
from ops.common.errors import UserError
from ops.common.fileio import check_output_dir, write_text_atomic

HASHES_FILE = "sha256.json"
CHUNK = 1 << 20


def videorec_home(environ: Mapping[str, str] = os.environ) -> Path:
    """``$VIDEOREC_HOME``, else ``$XDG_CACHE_HOME/videorec``, else ``~/.cache/videorec``."""
    if environ.get("VIDEOREC_HOME"):
        return Path(environ["VIDEOREC_HOME"]).expanduser()
    cache = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "videorec"


def weights_dir(home: Optional[Path] = None) -> Path:
    return (home or videorec_home()) / "weights"


def cached_file(entry: WeightsEntry, home: Optional[Path] = None) -> Path:
    """Where ``entry``'s file lives in the cache (and where to put it by hand)."""
    return weights_dir(home) / entry.file_name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_record(folder: Path) -> dict:
    path = folder / HASHES_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        return {str(name): {"sha256": str(item["sha256"]), "url": str(item.get("url", ""))}
                for name, item in data.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: unreadable hash record ({exc}); delete it to record the hashes afresh") from None


def recorded_hashes(folder: Path) -> Dict[str, str]:
    """File name -> sha256 recorded at first download (for entries without a published hash)."""
    return {name: item["sha256"] for name, item in _load_record(folder).items()}


def record_hash(folder: Path, entry: WeightsEntry, sha256: str) -> None:
    data = _load_record(folder)
    data[entry.file_name] = {"sha256": sha256, "url": entry.url}
    write_text_atomic(folder / HASHES_FILE, json.dumps(data, indent=1, sort_keys=True) + "\n")


def expected_hash(entry: WeightsEntry, folder: Path) -> Tuple[Optional[str], str]:
    """(sha256 or None, where it comes from)."""
    if entry.sha256:
        return entry.sha256, "the published sha256"
    recorded = recorded_hashes(folder).get(entry.file_name)
    return recorded, f"the sha256 recorded at its first download ({folder / HASHES_FILE})"


class _Cut(Exception):
    """The connection ended before the whole file arrived."""


class _Unreachable(Exception):
    """No connection to the server (no network, refused, timed out)."""


def _fetch_into(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Append the rest of ``url`` to ``part`` (Range from its size); raise :class:`_Cut` on a short read.

    No connection raises :class:`_Unreachable`; an HTTP error status propagates as HTTPError."""
    from tqdm import tqdm

    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "videorec", **({"Range": f"bytes={have}-"} if have else {})}
    try:
        response = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as exc:
        if exc.code == 416 and have:  # nothing after what we have: the part is whole
            return
        raise
    except (URLError, OSError) as exc:
        raise _Unreachable(getattr(exc, "reason", None) or exc) from None
    with response:
        if have and response.status != 206:  # the server ignored the range: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=part.name[:-5],
                   leave=False, disable=not (progress and sys.stderr.isatty()))
        with bar, open(part, "ab" if have else "wb") as fh:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Cut(str(exc) or type(exc).__name__) from None
                if not chunk:
                    break
                fh.write(chunk)
                bar.update(len(chunk))
    if total is not None and part.stat().st_size < total:
        raise _Cut(f"{part.stat().st_size} of {total} bytes")


def download(url: str, dest: Path, sha256: Optional[str] = None, *, timeout: float = 30.0, retries: int = 2,
             progress: bool = True) -> str:
    """Download ``url`` to ``dest`` through ``dest.part``; return the file's sha256.

    A cut connection is resumed (HTTP Range) up to ``retries`` times; after that the
    part stays for the next call to resume. With ``sha256`` the finished file must
    match it, else it is deleted and :class:`UserError` says so. No network: one
    :class:`UserError` line naming the URL and ``dest``.
    """
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch_into(url, part, timeout, progress)
            break
        except _Cut as cut:
            if attempt == retries:
                raise UserError(f"download of {url} was cut ({cut}) {retries + 1} times; run the command again to "
                                f"resume from {part}") from None
        except HTTPError as exc:
            raise UserError(f"cannot download {url} (HTTP {exc.code} {exc.reason}); fetch it by hand and put it at "
                            f"{dest}") from None
        except _Unreachable as exc:
            raise UserError(f"cannot reach {url} ({exc}); without network, download it elsewhere and put it at "
                            f"{dest}") from None
        except OSError as exc:  # writing the part file
            raise UserError(f"cannot write {part} ({exc.strerror or exc}); free space or set VIDEOREC_HOME to "
                            "another folder") from None
    actual = sha256_of(part)
    if sha256 and actual != sha256:
        part.unlink()
        raise UserError(f"{url}: the downloaded file's sha256 {actual} is not the expected {sha256}; refused and "
                        "deleted (changed upstream or tampered with)")
    os.replace(part, dest)
    return actual


def verify_cached(entry: WeightsEntry, path: Path) -> None:
    """Check a cached (or hand-placed) file against the known hash; record one if none is known.

    A mismatch moves the file to ``NAME.rejected`` and raises :class:`UserError`."""
    expected, source = expected_hash(entry, path.parent)
    actual = sha256_of(path)
    if expected is None:
        record_hash(path.parent, entry, actual)
    elif actual != expected:
        rejected = path.with_name(path.name + ".rejected")
        os.replace(path, rejected)
        again = f"fetch it again from {entry.url} and put it at {path}" if entry.manual else \
            "run the command again to download it afresh"
        raise UserError(f"{path}: sha256 {actual} does not match {source} ({expected}); moved it to {rejected}; "
                        f"{again}")


def fetch_weights(entry: WeightsEntry, home: Optional[Path] = None, *, progress: bool = True,
                  timeout: float = 30.0, retries: int = 2) -> Path:
    """The cached file of ``entry``, downloaded (and its hash recorded) the first time."""
    dest = cached_file(entry, home)
    if dest.is_file():
        verify_cached(entry, dest)
        return dest
    if entry.manual:
        raise UserError(f"weights {entry.name} have no direct download link: fetch {entry.file_name} from "
                        f"{entry.url} and save it as {dest}")
    check_output_dir(dest.parent, "weights cache folder (set VIDEOREC_HOME to move it)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(dest.parent):
        if dest.is_file():  # another process (a DDP rank) downloaded it while this one waited
            verify_cached(entry, dest)
            return dest
        expected, _ = expected_hash(entry, dest.parent)
        actual = download(entry.url, dest, expected, timeout=timeout, retries=retries, progress=progress)
        if expected is None:
            record_hash(dest.parent, entry, actual)
    return dest


@contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock (``flock``) on the cache ``folder`` itself (no lock file left
    behind): processes that fetch into it (the ranks of a distributed run) take turns, so a
    file is downloaded once."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def find_entry(name_or_path: str) -> Optional[WeightsEntry]:
    """The catalog entry ``name_or_path`` names, or None when it is a file path.

    A path is anything that exists or has a ``/`` or ``.`` in it (catalog names have
    neither); another name that is not in the catalog raises :class:`UserError`
    naming close matches."""
    if Path(name_or_path).expanduser().exists() or "/" in name_or_path or "." in name_or_path:
        return None
    try:
        return get_weights(name_or_path)
    except UnknownWeightsError as exc:
        raise UserError(f"{exc} (or give a checkpoint file path)") from None


def resolve_weights(name_or_path: Union[str, Path], home: Optional[Path] = None, *, progress: bool = True) -> Path:
    """A checkpoint path as is, or a catalog name's cached file (downloaded if needed)."""
    entry = find_entry(str(name_or_path))
    if entry is None:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise UserError(f"{path}: no such checkpoint file")
        return path
    return fetch_weights(entry, home, progress=progress)


def resolve_checkpoint_arg(value: Optional[str], keep: Tuple[str, ...] = ("none", "imagenet")) -> Optional[str]:
    """``--tune-from`` / ``--pretrained``: a catalog name becomes its cached file (downloaded if
    needed), a path is checked; None and the words in ``keep`` pass through."""
    if value is None or value in keep:
        return value
    return str(resolve_weights(value))
