"""Annotation parsers (official dataset formats) and list-file writers.

Parsers turn an official annotation format into :class:`Annotations`: the class
names and, per split, items (candidate names of the video or frame folder, and a
0-based label). :func:`write_annotations` finds each item under the media folder
and writes the list files in the seeds' formats:

* frames: ``<path> <num_frames> <label>`` (frames counted by the template);
* videos: ``<path> <label>``;

with paths relative to the chosen root, plus ``classes.txt`` (one name per line,
line ``i`` is label ``i``). Items whose video or frame folder is missing or empty,
and videos ffmpeg cannot decode (probed once each, ffmpeg's messages captured),
are left out and listed in ``missing_<split>.txt``.
"""
from __future__ import annotations

import csv
import io
import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ops.common.errors import UserError
from ops.common.fileio import write_report, write_text_atomic
from ops.prep.media import DEFAULT_TEMPLATE, FrameTemplate, count_frames, find_videos, probe_video
from ops.prep.workers import ChildProcesses, run_jobs

SPLITS = ("train", "val", "test")
MEDIA_KINDS = ("frames", "videos")


@dataclass(frozen=True)
class Item:
    """One annotated video: where it may be (names relative to the media folder, no extension) and its label."""

    names: Tuple[str, ...]
    label: int


@dataclass
class Annotations:
    classes: List[str]
    splits: Dict[str, List[Item]] = field(default_factory=dict)


@dataclass
class AnnotationInputs:
    """The official files of one dataset (which ones are needed depends on the format)."""

    media_dir: Path
    media: str = "frames"
    labels: Optional[Path] = None
    train: Optional[Path] = None
    val: Optional[Path] = None
    test: Optional[Path] = None
    split_dir: Optional[Path] = None
    split: int = 1
    val_fraction: float = 0.0
    seed: int = 0

    def require(self, fmt: str, name: str, what: str) -> Path:
        path = getattr(self, name)
        if path is None:
            raise UserError(f"--format {fmt} needs --{name.replace('_', '-')} ({what})")
        path = Path(path)
        if not path.exists():
            raise UserError(f"{path}: no such file or folder (--{name.replace('_', '-')})")
        return path

    def optional(self, name: str) -> Optional[Path]:
        path = getattr(self, name)
        if path is not None and not Path(path).exists():
            raise UserError(f"{path}: no such file or folder (--{name.replace('_', '-')})")
        return None if path is None else Path(path)


def _read_text(path: Path) -> str:
    """A UTF-8 text file; anything else is a one-line error naming the file."""
    try:
        return Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); is it the right file?") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None


def _lines(path: Path) -> Iterator[Tuple[int, str]]:
    """(1-based line number, stripped line) for the non-empty lines of a text file."""
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        line = line.strip()
        if line:
            yield number, line


def _index(classes: Sequence[str], source: str) -> Dict[str, int]:
    index: Dict[str, int] = {}
    for i, name in enumerate(classes):
        if name in index:
            raise UserError(f"{source}: class {name!r} appears twice")
        index[name] = i
    return index


def _label_of(index: Dict[str, int], name: str, where: str) -> int:
    if name not in index:
        raise UserError(f"{where}: unknown class {name!r}")
    return index[name]


# ---------------------------------------------------------------- folder


def read_folder(inputs: AnnotationInputs) -> Annotations:
    """A class-per-subfolder tree (sorted class names) of videos or frame folders.

    With ``val_fraction`` > 0 each class is split at random (seeded per class, so
    adding a class does not change the others) into train and val.
    """
    root = Path(inputs.media_dir)
    if not 0 <= inputs.val_fraction < 1:
        raise UserError(f"--val-fraction {inputs.val_fraction}: must be in [0, 1)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError(f"{root}: no class folders (expected <class>/<video or frame folder>)")
    train: List[Item] = []
    val: List[Item] = []
    for label, name in enumerate(classes):
        class_dir = root / name
        if inputs.media == "videos":
            members = [v.relative_to(class_dir).with_suffix("").as_posix() for v in find_videos(class_dir)]
        else:
            members = sorted(p.name for p in class_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        shuffled = sorted(members)
        random.Random(f"{inputs.seed}/{name}").shuffle(shuffled)
        held_out = set(shuffled[: int(len(members) * inputs.val_fraction + 0.5)])
        for member in sorted(members):
            (val if member in held_out else train).append(Item((f"{name}/{member}",), label))
    splits = {"train": train, "val": val} if inputs.val_fraction > 0 else {"train": train}
    return Annotations(classes, splits)


# ---------------------------------------------------------------- Something-Something


def read_sthv1(inputs: AnnotationInputs) -> Annotations:
    """SSv1: labels CSV (one name per line, sorted for the index); split CSVs with rows ``id;label text``."""
    labels = inputs.require("sthv1", "labels", "something-something-v1-labels.csv")
    classes = sorted({line for _, line in _lines(labels)})
    index = _index(classes, str(labels))
    out = Annotations(classes)
    for split, what in (("train", "-train.csv"), ("val", "-validation.csv")):
        path = inputs.require("sthv1", split, f"something-something-v1{what}")
        items = []
        for number, line in _lines(path):
            video_id, sep, text = line.partition(";")
            if not sep or not video_id.strip():
                raise UserError(f"{path}:{number}: expected 'id;label text', got {line!r}")
            items.append(Item((video_id.strip(),), _label_of(index, text.strip(), f"{path}:{number}")))
        out.splits[split] = items
    return out


def _load_json(path: Path):
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None


def read_sthv2(inputs: AnnotationInputs) -> Annotations:
    """SSv2: labels JSON ``{template: "idx"}``; split JSON lists of ``{id, template, ...}`` (test: ``{id}``, label 0).

    The label is ``labels[template without '[' and ']']``; classes.txt follows the
    JSON's indices (alphabetical in the official file).
    """
    labels_path = inputs.require("sthv2", "labels", "something-something-v2-labels.json")
    mapping = _load_json(labels_path)
    try:
        by_index = {int(idx): name for name, idx in mapping.items()}
    except (AttributeError, TypeError, ValueError):
        raise UserError(f"{labels_path}: expected {{template: \"index\"}}") from None
    if sorted(by_index) != list(range(len(mapping))):
        raise UserError(f"{labels_path}: indices must be 0..{len(mapping) - 1}, each once")
    classes = [by_index[i] for i in range(len(by_index))]
    index = _index(classes, str(labels_path))
    out = Annotations(classes)
    for split, what in (("train", "-train.json"), ("val", "-validation.json"), ("test", "-test.json")):
        path = inputs.require("sthv2", split, f"something-something-v2{what}") if split != "test" else inputs.optional("test")
        if path is None:
            continue
        rows = _load_json(path)
        if not isinstance(rows, list):
            raise UserError(f"{path}: expected a JSON list of {{id, template, ...}}")
        items = []
        for number, row in enumerate(rows, 1):
            where = f"{path}: entry {number}"
            if not isinstance(row, dict) or "id" not in row or (split != "test" and "template" not in row):
                raise UserError(f"{where}: expected {{'id': ..., 'template': ...}}, got {str(row)[:80]}")
            label = 0 if split == "test" else _label_of(index, re.sub(r"[\[\]]", "", row["template"]), where)
            items.append(Item((str(row["id"]),), label))
        out.splits[split] = items
    return out


# ---------------------------------------------------------------- Kinetics


def kinetics_class_name(name: str) -> str:
    """The community label-map spelling: spaces -> '_', no quotes or parentheses."""
    return re.sub(r"[\"()']", "", name.strip()).replace(" ", "_")


def kinetics_video_name(youtube_id: str, start: int, end: int) -> str:
    """The standard downloader's name, e.g. ``-abc123def45_000417_000427``."""
    return f"{youtube_id}_{start:06d}_{end:06d}"


def _kinetics_rows(path: Path) -> Iterator[Tuple[str, Optional[str], str]]:
    """(location, class name or None, video name) for each row of a Kinetics CSV."""
    with io.StringIO(_read_text(path), newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        needed = ("youtube_id", "time_start", "time_end")
        if not all(h in header for h in needed):
            raise UserError(f"{path}:1: expected a header with label,youtube_id,time_start,time_end,split, got {header}")
        col = {h: i for i, h in enumerate(header)}
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if not row or not "".join(row).strip():
                continue
            if len(row) != len(header):
                raise UserError(f"{where}: expected {len(header)} columns ({','.join(header)}), got {len(row)}")
            try:
                start, end = (int(float(row[col[h]])) for h in needed[1:])
            except ValueError:
                raise UserError(f"{where}: time_start/time_end must be numbers, got {row}") from None
            label = kinetics_class_name(row[col["label"]]) if "label" in col else None
            yield where, label, kinetics_video_name(row[col["youtube_id"]].strip(), start, end)


def read_kinetics(inputs: AnnotationInputs) -> Annotations:
    """Kinetics CSVs (``label,youtube_id,time_start,time_end,split[,is_cc]``).

    Classes: ``--labels`` (a label map, one name per line) when given, else the
    sorted normalised names of the labelled CSVs. Videos are looked up as
    ``<class>/<name>`` then ``<name>``; rows without a label column get label 0.
    """
    files = {"train": inputs.require("kinetics", "train", "the train CSV"),
             "val": inputs.require("kinetics", "val", "the validate CSV"),
             "test": inputs.optional("test")}
    rows = {split: list(_kinetics_rows(path)) for split, path in files.items() if path is not None}
    label_map = inputs.optional("labels")
    if label_map is not None:
        classes = [kinetics_class_name(line) for _, line in _lines(label_map)]
    else:
        classes = sorted({label for split_rows in rows.values() for _, label, _ in split_rows if label is not None})
    index = _index(classes, str(label_map or files["train"]))
    out = Annotations(classes)
    for split, split_rows in rows.items():
        out.splits[split] = [
            Item((f"{label}/{name}", name) if label is not None else (name,),
                 0 if label is None else _label_of(index, label, where))
            for where, label, name in split_rows
        ]
    return out


# ---------------------------------------------------------------- UCF101 and HMDB51


def _check_split(fmt: str, split: int) -> None:
    if split not in (1, 2, 3):
        raise UserError(f"--format {fmt}: --split must be 1, 2 or 3 (got {split})")


def read_ucf101(inputs: AnnotationInputs) -> Annotations:
    """UCF101 ``ucfTrainTestlist``: classInd.txt (``1 Name``), trainlist0k.txt (``Class/v_X.avi k``), testlist0k.txt."""
    _check_split("ucf101", inputs.split)
    split_dir = inputs.require("ucf101", "split_dir", "the ucfTrainTestlist folder")
    class_file = split_dir / "classInd.txt"
    if not class_file.is_file():
        raise UserError(f"{class_file}: not found (expected in --split-dir)")
    classes = []
    for number, line in _lines(class_file):
        parts = line.split()
        if len(parts) != 2 or parts[0] != str(len(classes) + 1):
            raise UserError(f"{class_file}:{number}: expected '{len(classes) + 1} ClassName', got {line!r}")
        classes.append(parts[1])
    index = _index(classes, str(class_file))
    out = Annotations(classes)
    for split, stem in (("train", "trainlist"), ("val", "testlist")):
        path = split_dir / f"{stem}{inputs.split:02d}.txt"
        if not path.is_file():
            raise UserError(f"{path}: not found (expected in --split-dir)")
        items = []
        for number, line in _lines(path):
            parts = line.split()
            where = f"{path}:{number}"
            if len(parts) not in (1, 2) or "/" not in parts[0]:
                raise UserError(f"{where}: expected 'Class/v_X.avi [label]', got {line!r}")
            video = Path(parts[0])
            label = _label_of(index, video.parent.as_posix(), where)
            if len(parts) == 2 and parts[1] != str(label + 1):
                raise UserError(f"{where}: label {parts[1]} disagrees with classInd ({video.parent} is {label + 1})")
            items.append(Item((video.with_suffix("").as_posix(), video.stem), label))
        out.splits[split] = items
    return out


def read_hmdb51(inputs: AnnotationInputs) -> Annotations:
    """HMDB51 ``testTrainMulti_7030_splits``: ``<class>_test_split{k}.txt`` rows ``video.avi 0|1|2`` (1 train, 2 test)."""
    _check_split("hmdb51", inputs.split)
    split_dir = inputs.require("hmdb51", "split_dir", "the testTrainMulti_7030_splits folder")
    suffix = f"_test_split{inputs.split}.txt"
    files = sorted(p for p in split_dir.iterdir() if p.name.endswith(suffix))
    if not files:
        raise UserError(f"{split_dir}: no *{suffix} files")
    classes = [p.name[: -len(suffix)] for p in files]
    out = Annotations(classes, {"train": [], "val": []})
    for label, (name, path) in enumerate(zip(classes, files)):
        for number, line in _lines(path):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise UserError(f"{path}:{number}: expected 'video.avi 0|1|2', got {line!r}")
            if parts[1] != "0":
                stem = Path(parts[0]).stem
                out.splits["train" if parts[1] == "1" else "val"].append(Item((f"{name}/{stem}", stem), label))
    return out


READERS: Dict[str, Callable[[AnnotationInputs], Annotations]] = {
    "folder": read_folder,
    "sthv1": read_sthv1,
    "sthv2": read_sthv2,
    "kinetics": read_kinetics,
    "ucf101": read_ucf101,
    "hmdb51": read_hmdb51,
}


# The inputs each format reads; giving another one is an error, not a silently ignored flag.
FORMAT_INPUTS: Dict[str, Tuple[str, ...]] = {
    "folder": ("val_fraction", "seed"),
    "sthv1": ("labels", "train", "val"),
    "sthv2": ("labels", "train", "val", "test"),
    "kinetics": ("labels", "train", "val", "test"),
    "ucf101": ("split_dir", "split"),
    "hmdb51": ("split_dir", "split"),
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_inputs(fmt: str, inputs: AnnotationInputs) -> None:
    """Refuse inputs the format does not read, naming the ones it does."""
    defaults = AnnotationInputs(media_dir=inputs.media_dir)
    for name in sorted({n for names in FORMAT_INPUTS.values() for n in names} - set(FORMAT_INPUTS[fmt])):
        if getattr(inputs, name) != getattr(defaults, name):
            raise UserError(f"{_flag(name)} does not apply to --format {fmt} (it reads "
                            f"{' '.join(_flag(n) for n in FORMAT_INPUTS[fmt])})")
    if fmt == "folder" and inputs.seed != defaults.seed and inputs.val_fraction == 0:
        raise UserError("--seed picks the val videos: it needs --val-fraction > 0")


def read_annotations(fmt: str, inputs: AnnotationInputs) -> Annotations:
    if fmt not in READERS:
        raise UserError(f"--format {fmt!r}: expected one of {', '.join(READERS)}")
    check_inputs(fmt, inputs)
    if inputs.media not in MEDIA_KINDS:
        raise UserError(f"--media {inputs.media!r}: expected frames or videos")
    if not Path(inputs.media_dir).is_dir():
        raise UserError(f"{inputs.media_dir}: no such folder (--media-dir)")
    return READERS[fmt](inputs)


# ---------------------------------------------------------------- lookup and writing


class MediaLookup:
    """Finds an item's frame folder (counting its frames) or video file under the media folder;
    videos are probed with ffmpeg on ``workers`` threads (see :meth:`undecodable`)."""

    def __init__(self, media_dir: Path, media: str, template: str = DEFAULT_TEMPLATE, workers: int = 1):
        if media == "videos" and template != DEFAULT_TEMPLATE:
            raise UserError("--frame-template names the frames of --media frames; videos have none: leave it out")
        self.media_dir = Path(media_dir)
        self.media = media
        self.workers = workers
        self._probed: Dict[Path, Optional[str]] = {}
        self.template = FrameTemplate.parse(template)
        self._template_text = template
        # Videos: one scan, then look-ups by relative name without extension (the first in sorted
        # order wins) or, for a bare name, by a file name that is unique anywhere under media_dir
        # (e.g. Kinetics under train/<class>/ and val/<class>/).
        self._videos: Dict[str, Path] = {}
        self._by_stem: Dict[str, Optional[Path]] = {}
        for video in find_videos(self.media_dir) if media == "videos" else []:
            self._videos.setdefault(video.relative_to(self.media_dir).with_suffix("").as_posix(), video)
            self._by_stem[video.stem] = None if video.stem in self._by_stem else video

    def find(self, item: Item) -> Tuple[Optional[Path], int, str]:
        """(path, number of frames (0 for videos), '') when found, else (None, 0, reason)."""
        for name in item.names:
            if self.media == "videos":
                video = self._videos.get(name) or self._by_stem.get(name)
                if video is not None:
                    return (video, 0, "") if video.stat().st_size > 0 else (None, 0, f"empty video file {video}")
            else:
                folder = self.media_dir / name
                if folder.is_dir():
                    frames = count_frames(folder, self.template)
                    if frames:
                        return folder, frames, ""
                    return None, 0, f"no frames named like {self._template_text} in {folder}"
        kind = "video" if self.media == "videos" else "frame folder"
        return None, 0, f"no {kind} " + " or ".join(item.names)

    def undecodable(self, videos: Sequence[Path]) -> Dict[Path, str]:
        """The videos ffmpeg cannot decode a first frame of, with the reason (each video probed once)."""
        todo = sorted(set(videos) - set(self._probed))
        if todo:
            children = ChildProcesses()
            for video, future in run_jobs(lambda v: probe_video(v, children), todo, workers=self.workers,
                                          children=children, desc="probe videos", unit="video"):
                self._probed[video] = future.result()
        return {v: self._probed[v] for v in videos if self._probed[v] is not None}


@dataclass
class SplitResult:
    """One split's list file: rows written, items left out (``undecodable`` of them are videos ffmpeg cannot
    decode) and the report that lists them."""

    split: str
    list_file: Path
    written: int
    missing: int
    missing_file: Optional[Path]
    undecodable: int = 0


def write_annotations(annotations: Annotations, lookup: MediaLookup, *, root: Path, out: Path) -> Tuple[Path, List[SplitResult]]:
    """Write ``classes.txt`` and one list file per split into ``out``; paths are relative to ``root``.

    Returns the classes file and, per split, the rows written and the items left
    out (listed in ``missing_<split>.txt``, removed when none are missing).
    """
    root, out = Path(root), Path(out)
    classes_file = out / "classes.txt"
    write_text_atomic(classes_file, "".join(f"{name}\n" for name in annotations.classes))
    results = []
    for split in (s for s in SPLITS if s in annotations.splits):
        found = [(item, *lookup.find(item)) for item in annotations.splits[split]]
        videos = [path for _, path, _, _ in found if path is not None] if lookup.media == "videos" else []
        broken = lookup.undecodable(videos)
        rows, missing = [], []
        for item, path, frames, reason in found:
            if path is None or path in broken:
                missing.append(f"{item.names[0]}\t{reason or f'{path}: {broken[path]}'}")
                continue
            rel = Path(os.path.relpath(path, root)).as_posix()
            rows.append(f"{rel} {frames} {item.label}" if lookup.media == "frames" else f"{rel} {item.label}")
        list_file = out / f"{split}.txt"
        write_text_atomic(list_file, "".join(f"{row}\n" for row in rows))
        missing_file = out / f"missing_{split}.txt"
        write_report(missing_file, missing)
        undecodable = sum(1 for _, path, _, _ in found if path in broken)
        results.append(SplitResult(split, list_file, len(rows), len(missing), missing_file if missing else None,
                                   undecodable))
    return classes_file, results
