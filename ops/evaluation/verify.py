"""`videorec verify NAME --root DATA`: a model-zoo row's number, reproduced on the user's data.

:func:`verify` runs the catalog row's whole test protocol (every clip and crop) through
the tester, fuses the score files (softmax mean, ``ops.evaluation.fusion``), compares
top-1/top-5 (or mAP) with the published numbers and writes a reproduction card into
the output folder: ``card.json`` and ``card.md`` (the weights' sha256, the protocol with
where each value came from, the list file's sha256, counts of missing and unreadable
videos, ours vs published, time taken), each written atomically.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from ops.common.download import find_entry, resolve_weights, sha256_of
from ops.common.errors import UserError
from ops.common.fileio import check_output_dir, write_text_atomic
from ops.common.options import GivenOptions
from ops.engine.config import DataSettings

METRICS = ("top1", "top5", "mAP")
INPUT_KEYS = ("num_segments", "frames_per_segment", "sampling", "dense_stride", "crop_size", "scale_size",
              "channel_order")


@dataclass
class VerifySettings:
    """A verify run: catalog ``name``; ``dataset`` (default: the row's) and where its copy is
    (``root``, ``test_list``, ``frame_template``); engine settings as ``videorec test``'s."""

    name: str
    output_dir: str
    dataset: Optional[str] = None
    root: Optional[str] = None
    test_list: Optional[str] = None
    frame_template: Optional[str] = None
    batch_size: int = 4
    workers: int = 2
    amp: bool = False
    device: str = "auto"


def compare(ours: Dict[str, float], published) -> Dict[str, Dict[str, Optional[float]]]:
    """Per published metric (``archs.weights.Published``): ours, published and ours - published."""
    rows = {}
    for key in METRICS:
        theirs = getattr(published, key)
        if theirs is None:
            continue
        mine = ours.get(key)
        rows[key] = {"ours": mine, "published": theirs, "difference": None if mine is None else mine - theirs}
    return rows


def comparison_lines(rows: Dict[str, Dict[str, Optional[float]]]) -> List[str]:
    """'top1: ours 75.12, published 76.0, difference -0.88' per metric."""
    def num(value: Optional[float], sign: str = "") -> str:
        return "-" if value is None else f"{value:{sign}.2f}"

    return [f"{key}: ours {num(r['ours'])}, published {r['published']:g}, difference {num(r['difference'], '+')}"
            for key, r in rows.items()]


def card_markdown(card: dict) -> str:
    """The reproduction card as Markdown (the JSON's content, for a README or an issue)."""
    lines = [f"# Reproduction card: {card['weights']}", "",
             f"- model: `{card['arch']}` on `{card['dataset']}` ({card['videos']} videos tested)",
             f"- weights: `{card['weights_file']}` sha256 `{card['weights_sha256']}`",
             f"- test list: `{card['list_file']}` sha256 `{card['list_sha256']}`",
             f"- missing videos (left out): {card['missing']}; unreadable views skipped: {card['skipped']}",
             f"- protocol: {card['protocol_line']}",
             "- input: " + ", ".join(f"{k}={card['input_spec'][k]}" for k in INPUT_KEYS),
             f"- time: {card['seconds']:.1f} s", "",
             "| metric | ours | published | difference |", "|---|---|---|---|"]
    for key, r in card["comparison"].items():
        ours = "-" if r["ours"] is None else f"{r['ours']:.2f}"
        diff = "-" if r["difference"] is None else f"{r['difference']:+.2f}"
        lines.append(f"| {key} | {ours} | {r['published']:g} | {diff} |")
    lines += ["", f"Published numbers: {card['source']}.", "",
              "| protocol setting | value | from |", "|---|---|---|"]
    lines += [f"| {k} | {card['protocol']['values'][k]} | {v} |" for k, v in card["protocol"]["origin"].items()]
    return "\n".join(lines) + "\n"


def verify(s: VerifySettings, say: Callable[[str], None] = print) -> Optional[dict]:
    """Run the row's protocol, print ours vs published, write ``card.json`` and ``card.md``.
    Returns the card (None on the other processes of a distributed run)."""
    from ops.data.loader import dataset_config
    from ops.engine.distributed import init_distributed
    from ops.engine.tester import TestSettings, protocol_settings, run_test
    from ops.evaluation.fusion import fuse, report
    from ops.evaluation.protocols import weights_protocol
    from ops.evaluation.scores import read_scores

    entry = find_entry(s.name)
    if entry is None:
        raise UserError(f"{s.name}: verify takes a name of `videorec weights`, not a file")
    out_dir = check_output_dir(Path(s.output_dir), "verify output folder")
    started = time.monotonic()
    weights_file = resolve_weights(s.name)
    data = DataSettings(dataset=s.dataset or entry.dataset, root=s.root, test_list=s.test_list,
                        frame_template=s.frame_template, workers=s.workers)
    list_file = dataset_config(data).list_path("test")
    merged = weights_protocol(entry)
    settings = TestSettings(weights=s.name, batch_size=s.batch_size, output_dir=str(out_dir), amp=s.amp,
                            device=s.device, **protocol_settings(data, merged, GivenOptions()))
    run_test(settings, say=say)
    if not init_distributed(s.device).is_main:
        return None
    paths = [out_dir / f"scores_clip{i}of{settings.num_clips}.pkl" for i in settings.clip_indices]
    fused = fuse(paths)
    rows = compare(report(fused), entry.published)
    recorded = [read_scores(p).settings for p in paths]
    card = {"weights": entry.name, "arch": recorded[0]["arch"], "model_options": recorded[0]["model_options"],
            "dataset": data.dataset, "weights_file": str(weights_file), "weights_sha256": sha256_of(weights_file),
            "list_file": str(list_file), "list_sha256": sha256_of(list_file), "videos": len(fused.video_ids),
            "views_per_video": fused.num_views, "missing": len(recorded[0]["missing"]),
            "skipped": len({line for r in recorded for line in r["skipped"]}),
            "protocol": merged.as_record(), "protocol_line": merged.describe(), "input_spec": recorded[0]["input_spec"],
            "comparison": rows, "source": entry.published.source, "score_files": [str(p) for p in paths],
            "seconds": time.monotonic() - started}
    say(f"{entry.name} on {fused.num_views} views x {len(fused.video_ids)} videos:")
    for line in comparison_lines(rows):
        say(f"  {line}")
    write_text_atomic(out_dir / "card.json", json.dumps(card, indent=1) + "\n")
    write_text_atomic(out_dir / "card.md", card_markdown(card))
    say(f"reproduction card: {out_dir / 'card.json'}, {out_dir / 'card.md'}")
    return card
