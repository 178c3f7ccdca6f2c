"""The dataset registry: name -> classes, list files, frame template, flip map.

Known datasets are below; a custom dataset comes from a small JSON file
(``--dataset-config my.json`` or a path given as the dataset name) whose keys are
the fields of :class:`DatasetConfig`. Paths in a config file are relative to the file.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

# Something-Something left/right class pairs, valid for the alphabetically sorted
# 174 category names (what `make-annotations` writes, and SSv2's official order):
# 86/87 pulling left-to-right / right-to-left, 93/94 pushing, 166/167 turning the camera.
SOMETHING_FLIP_PAIRS: Tuple[Tuple[int, int], ...] = ((86, 87), (93, 94), (166, 167))


@dataclass(frozen=True)
class DatasetConfig:
    """Everything the pipeline needs to know about one dataset.

    flip: ``"plain"`` (flip frames, keep the label), ``"swap"`` (flip and swap the
    labels of ``flip_pairs``) or ``"none"`` (never flip, e.g. Jester gestures).
    root: folder the list-file paths are relative to; lists are relative to ``root``
    unless absolute. ``video_ext`` is appended to paths without an extension when
    the list holds videos.
    """

    name: str
    num_classes: int
    root: str = ""
    train_list: str = "train.txt"
    val_list: str = "val.txt"
    test_list: str = ""
    classes_file: str = "classes.txt"
    frame_template: str = "img_{:05d}.jpg"
    flip: str = "plain"
    flip_pairs: Tuple[Tuple[int, int], ...] = ()
    multi_label: bool = False
    video_ext: str = ""
    description: str = ""

    def list_path(self, split: str) -> Path:
        """Path of the list file of ``split`` (train, val or test; test falls back to val)."""
        name = {"train": self.train_list, "val": self.val_list, "test": self.test_list or self.val_list}[split]
        path = Path(name)
        return path if path.is_absolute() or not self.root else Path(self.root) / path

    def flip_map(self) -> Dict[int, int]:
        """Label swap applied by a horizontal flip (both directions)."""
        out: Dict[int, int] = {}
        for a, b in self.flip_pairs:
            out[a], out[b] = b, a
        return out

    def with_overrides(self, **changes) -> "DatasetConfig":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)


_KNOWN: Dict[str, DatasetConfig] = {
    c.name: c
    for c in [
        DatasetConfig("something", 174, root="data/something/v1", frame_template="{:05d}.jpg", flip="swap",
                      flip_pairs=SOMETHING_FLIP_PAIRS, description="Something-Something V1 (official 00001.jpg frames)"),
        DatasetConfig("somethingv2", 174, root="data/something/v2", frame_template="{:06d}.jpg", flip="swap",
                      flip_pairs=SOMETHING_FLIP_PAIRS, description="Something-Something V2 (frames extracted as 000001.jpg)"),
        DatasetConfig("kinetics", 400, root="data/kinetics", description="Kinetics-400"),
        DatasetConfig("kinetics600", 600, root="data/kinetics600", description="Kinetics-600 (MoViNet's released weights)"),
        DatasetConfig("minik", 200, root="data/minik", train_list="mini_train_videofolder.txt",
                      val_list="mini_val_videofolder.txt", classes_file="minik_classInd.txt",
                      description="Mini-Kinetics (200 Kinetics classes, AdaFocus lists)"),
        DatasetConfig("ucf101", 101, root="data/ucf101", description="UCF101 split 1"),
        DatasetConfig("hmdb51", 51, root="data/hmdb51", description="HMDB51 split 1"),
        DatasetConfig("actnet", 200, root="data/actnet", train_list="actnet_train_split.txt",
                      val_list="actnet_val_split.txt", classes_file="classInd.txt", frame_template="image_{:05d}.jpg",
                      multi_label=True, description="ActivityNet v1.3 (multi-label, mAP)"),
        DatasetConfig("fcvid", 239, root="data/fcvid", train_list="fcvid_train_split.txt",
                      val_list="fcvid_val_split.txt", classes_file="classInd.txt", frame_template="image_{:05d}.jpg",
                      multi_label=True, description="FCVID (multi-label, mAP)"),
        DatasetConfig("jester", 27, root="data/jester", frame_template="{:05d}.jpg", flip="none",
                      description="Jester gestures (no flip: left/right gestures)"),
        DatasetConfig("synthetic", 10, root="data/synthetic", flip="none",
                      description="videorec's procedurally rendered motion dataset (make-synthetic)"),
    ]
}


class DatasetConfigError(ValueError):
    """A dataset name or config file that cannot be used; the message says why."""


def list_datasets() -> List[DatasetConfig]:
    return [_KNOWN[k] for k in sorted(_KNOWN)]


def load_config_file(path: Path) -> DatasetConfig:
    """A custom dataset from a JSON file; relative paths are taken from the file's folder."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetConfigError(f"{path}: cannot read dataset config ({exc})") from None
    allowed = {f.name for f in fields(DatasetConfig)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise DatasetConfigError(f"{path}: unknown keys {unknown}; allowed: {sorted(allowed)}")
    if "num_classes" not in data:
        raise DatasetConfigError(f"{path}: 'num_classes' is required")
    data.setdefault("name", path.stem)
    if "flip_pairs" in data:
        data["flip_pairs"] = tuple(tuple(p) for p in data["flip_pairs"])
    root = Path(data.get("root", "."))
    data["root"] = str(root if root.is_absolute() else path.parent / root)
    return DatasetConfig(**data)


def get_dataset(name: str, root: Optional[str] = None) -> DatasetConfig:
    """A known dataset by name, or a custom one from a JSON config file path.

    For a known dataset whose root holds a ``classes.txt``, the class count is read
    from it (so the synthetic or a subset dataset needs no edits here).
    """
    path = Path(name)
    if name.endswith(".json") or path.is_file():
        cfg = load_config_file(path)
    elif name in _KNOWN:
        cfg = _KNOWN[name]
    else:
        raise DatasetConfigError(f"unknown dataset {name!r}; known: {', '.join(sorted(_KNOWN))} (or a .json config)")
    if root:
        cfg = replace(cfg, root=root)
    classes = Path(cfg.root) / cfg.classes_file if cfg.root else None
    if classes is not None and classes.is_file():
        names = read_class_names(classes)
        if names and len(names) != cfg.num_classes:
            cfg = replace(cfg, num_classes=len(names))
    return cfg


def read_class_names(path: Path) -> List[str]:
    """Class names, one per line; ``1 Name`` (UCF classInd style) keeps the name."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetConfigError(f"{path}: cannot read the class names ({getattr(exc, 'strerror', None) or exc})") from None
    names = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        head, _, rest = line.partition(" ")
        names.append(rest.strip() if head.isdigit() and rest else line)
    return names
