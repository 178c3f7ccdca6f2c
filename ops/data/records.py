"""List files: one video per line, as the seed repositories write them.

Accepted line forms (labels 0-based):

* ``path num_frames label``  (frame folders; TSM/TDN/MMA)
* ``path label``             (video files; TDN Kinetics, MMA VideoDataset)
* ``path,num_frames,label[,label2,...]`` (AdaFocus ActivityNet/FCVID, multi-label)

Paths may contain spaces (the numeric fields are read from the right).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from ops.common.errors import UserError


@dataclass(frozen=True)
class VideoRecord:
    """One line of a list file: ``path`` relative to the dataset root (or absolute); ``source`` is the
    list file and ``line`` its 1-based line number (for messages)."""

    path: str
    num_frames: Optional[int]
    labels: Tuple[int, ...]
    line: int = 0
    source: str = ""

    @property
    def label(self) -> int:
        return self.labels[0]


def _ints(fields: List[str]) -> Optional[List[int]]:
    try:
        return [int(f) for f in fields]
    except ValueError:
        return None


def parse_line(text: str, source: str, line: int) -> VideoRecord:
    """Parse one non-empty list-file line; a malformed one raises UserError naming file and line."""
    if "," in text:
        fields = [f.strip() for f in text.split(",")]
        nums = _ints(fields[1:])
        if len(fields) < 3 or nums is None or nums[0] < 0:
            raise UserError(f"{source}:{line}: expected 'path,num_frames,label[,label...]', got {text!r}")
        return VideoRecord(fields[0], nums[0], tuple(nums[1:]), line, source)
    parts = text.split()
    if len(parts) >= 3 and _ints(parts[-2:]) is not None:
        frames, label = _ints(parts[-2:])
        if frames < 0 or label < 0:
            raise UserError(f"{source}:{line}: negative frame count or label in {text!r}")
        return VideoRecord(" ".join(parts[:-2]), frames, (label,), line, source)
    if len(parts) >= 2 and _ints(parts[-1:]) is not None and int(parts[-1]) >= 0:
        return VideoRecord(" ".join(parts[:-1]), None, (int(parts[-1]),), line, source)
    raise UserError(f"{source}:{line}: expected 'path num_frames label' or 'path label', got {text!r}")


def read_list_file(path: Path, num_classes: Optional[int] = None) -> List[VideoRecord]:
    """All records of a list file; labels are checked against ``num_classes``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: list file not found (make one with `videorec make-annotations`, or pass --train-list/--val-list)")
    records = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise UserError(f"{path}:{number}: not UTF-8 text (is this a list file?)") from None
            if not text or text.startswith("#"):
                continue
            record = parse_line(text, str(path), number)
            if records and (record.num_frames is None) != (records[0].num_frames is None):
                form = "'path label'" if records[0].num_frames is None else "'path num_frames label'"
                raise UserError(f"{path}:{number}: expected {form} like line {records[0].line}, got {text!r}")
            if num_classes is not None and any(lab >= num_classes for lab in record.labels):
                raise UserError(f"{path}:{number}: label {max(record.labels)} is out of range for {num_classes} classes")
            records.append(record)
    if not records:
        raise UserError(f"{path}: list file has no entries")
    return records
