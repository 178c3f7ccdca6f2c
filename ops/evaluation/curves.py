"""Training curves from run folders: parse ``log.txt``, draw loss, lr and accuracy per epoch.

``log.txt`` (written by ``ops.common.runlog.RunLog`` for ``ops.engine.trainer``) is the
stable interface; the lines read are, after the time stamp,

    epoch 3: loss 1.2345 lr 0.01000 57.1 clips/s train top-1 45.00
    epoch 4 val: top1 50.00 top5 90.00 (best top1 50.00)        (or ``mAP 61.20``)

Fields are found by name, so fields added to a line later are skipped. Other lines
(warnings, ``epoch 3: 2 unreadable samples ...``) are ignored. A resumed run logs an
epoch again after an interruption: the last line of an epoch wins.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from ops.common.errors import UserError
from ops.common.fileio import write_figure

NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
TRAIN_LINE = re.compile(r"\bepoch (\d+): (.*\bloss .*)$")
VAL_LINE = re.compile(r"\bepoch (\d+) val: (.*)$")
TRAIN_FIELDS = {"loss": re.compile(r"\bloss " + NUMBER), "lr": re.compile(r"\blr " + NUMBER),
                "train_top1": re.compile(r"\btrain top-1 " + NUMBER)}
VAL_FIELD = re.compile(r"\b(top1|top5|mAP) " + NUMBER)
# panel title -> the series drawn in it
PANELS = (("train loss", ("loss",)), ("learning rate", ("lr",)), ("train top-1 (%)", ("train_top1",)),
          ("val accuracy (%)", ("val_top1", "val_top5", "val_mAP")))


@dataclass
class RunCurves:
    """Per-epoch series of one run: name -> {epoch: value} (loss, lr, train_top1, val_top1, val_top5, val_mAP)."""

    name: str
    series: Dict[str, Dict[int, float]] = field(default_factory=dict)

    def points(self, key: str) -> Tuple[List[int], List[float]]:
        """(epochs, values) of one series, by epoch; empty lists when the run has none."""
        values = self.series.get(key, {})
        epochs = sorted(values)
        return epochs, [values[e] for e in epochs]


def parse_log(lines: Sequence[str], name: str = "run") -> RunCurves:
    """The curves in the lines of a ``log.txt``."""
    curves = RunCurves(name)
    for line in lines:
        train, val = TRAIN_LINE.search(line), VAL_LINE.search(line)
        if train:
            epoch, rest = int(train.group(1)), train.group(2)
            for key, pattern in TRAIN_FIELDS.items():
                found = pattern.search(rest)
                if found:
                    curves.series.setdefault(key, {})[epoch] = float(found.group(1))
        elif val:
            epoch, rest = int(val.group(1)), val.group(2).split("(best")[0]
            for metric, value in VAL_FIELD.findall(rest):
                curves.series.setdefault(f"val_{metric}", {})[epoch] = float(value)
    return curves


def read_run(run_dir: Path, name: str = "") -> RunCurves:
    """The curves of a run folder; :class:`UserError` when it has no log.txt or no epoch in it."""
    run_dir = Path(run_dir)
    log = run_dir / "log.txt"
    if not log.is_file():
        what = "no such folder" if not run_dir.exists() else "no log.txt in it"
        raise UserError(f"{run_dir}: {what}; give the run folder of `videorec train` (its -o/--output-dir)")
    curves = parse_log(log.read_text(errors="replace").splitlines(), name or run_dir.name)
    if not curves.series:
        raise UserError(f"{log}: no finished epoch logged yet (no 'epoch N: loss ...' line)")
    return curves


def run_names(run_dirs: Sequence[Path]) -> List[str]:
    """Legend names: the folder names, or parent/name where two runs share a name."""
    names = [Path(d).resolve().name for d in run_dirs]
    return [f"{Path(d).resolve().parent.name}/{n}" if names.count(n) > 1 else n for d, n in zip(run_dirs, names)]


def plot_curves(runs: Sequence[RunCurves], out_path: Path) -> Path:
    """Draw every run into one PNG (2 x 2 panels: loss, lr, train top-1, val accuracy), written atomically
    (the Agg renderer, no display needed)."""
    import matplotlib
    from matplotlib.figure import Figure  # a Figure without pyplot: no global backend or state
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 7.5))
    axes = fig.subplots(2, 2)
    styles = {"val_top1": "-", "val_top5": "--", "val_mAP": "-."}
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (title, keys) in zip(axes.flat, PANELS):
        drawn = False
        for i, run in enumerate(runs):
            for key in keys:
                epochs, values = run.points(key)
                if epochs:
                    label = run.name if len(keys) == 1 else f"{run.name} {key[4:]}"
                    ax.plot(epochs, values, styles.get(key, "-"), marker="o", markersize=3,
                            color=colors[i % len(colors)], label=label)
                    drawn = True
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="grey")
        if keys == ("lr",) and drawn and all(v > 0 for run in runs for v in run.points("lr")[1]):
            ax.set_yscale("log")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.08, top=0.95, hspace=0.35, wspace=0.2)
    out_path = Path(out_path)
    write_figure(fig, out_path)
    return out_path
