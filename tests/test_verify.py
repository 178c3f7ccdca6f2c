"""`videorec verify`: a catalog row's protocol on the tiny dataset, served from a loopback server."""
from __future__ import annotations

import hashlib
import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from archs.weights import Published, unregister_weights
from ops.common.download import cached_file
from ops.evaluation.scores import read_scores
from ops.evaluation.verify import compare, comparison_lines
from tests.test_zoo_cli import TRAIN, catalog_entry, invoke


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def served(tmp_path):
    """A loopback HTTP server (port 0) over tmp_path/www; yields its base URL."""
    www = tmp_path / "www"
    www.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_verify_end_to_end(served, tiny_dataset, tmp_path, monkeypatch):
    www, base = served
    monkeypatch.setenv("VIDEOREC_HOME", str(tmp_path / "home"))
    invoke("train", tiny_dataset, *TRAIN, "-o", tmp_path / "run")
    (www / "tiny.pth").write_bytes((tmp_path / "run" / "last.pth").read_bytes())
    test_list = tmp_path / "test.txt"  # the val list and one video that is not there
    test_list.write_text((tiny_dataset.parent / "val.txt").read_text() + "frames/grow/gone 8 0\n")
    entry = catalog_entry("tiny_verify", www / "tiny.pth", f"{base}/tiny.pth", str(tiny_dataset))
    try:
        out = invoke("verify", "tiny_verify", "--test-list", test_list, "--workers", 0, "-o", tmp_path / "v")
    finally:
        unregister_weights("tiny_verify")
    card = json.loads((tmp_path / "v" / "card.json").read_text())
    assert cached_file(entry).is_file()  # downloaded into the cache
    assert card["weights_sha256"] == hashlib.sha256((www / "tiny.pth").read_bytes()).hexdigest()
    assert card["list_sha256"] == hashlib.sha256(test_list.read_bytes()).hexdigest()
    assert (card["videos"], card["views_per_video"], card["missing"], card["skipped"]) == (8, 6, 1, 0)
    assert card["protocol"]["origin"]["num_clips"] == "weights tiny_verify" and card["seconds"] > 0
    # ours: softmax of every view of both clips, averaged, top-1 against the labels
    files = [read_scores(tmp_path / "v" / f"scores_clip{i}of2.pkl") for i in range(2)]
    logits = np.concatenate([f.logits for f in files], axis=1)  # (videos, 6 views, K)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs = (probs / probs.sum(-1, keepdims=True)).mean(1)
    top1 = float((probs.argmax(1) == files[0].labels).mean() * 100)
    assert card["comparison"]["top1"] == {"ours": pytest.approx(top1), "published": 50.0,
                                          "difference": pytest.approx(top1 - 50.0)}
    assert card["comparison"]["top5"]["ours"] == 100.0  # 4 classes
    assert f"top1: ours {top1:.2f}, published 50, difference {top1 - 50:+.2f}" in out
    markdown = (tmp_path / "v" / "card.md").read_text()
    assert f"| top1 | {top1:.2f} | 50 | {top1 - 50:+.2f} |" in markdown and "| num_clips | 2 | weights tiny_verify |" in markdown


def test_compare_keeps_the_published_metrics_only():
    rows = compare({"top1": 70.0, "top5": 90.0, "mean_class_acc": 60.0}, Published(top1=72.5, source="t"))
    assert rows == {"top1": {"ours": 70.0, "published": 72.5, "difference": -2.5}}
    rows = compare({"mAP": 80.25}, Published(mAP=79.0))
    assert comparison_lines(rows) == ["mAP: ours 80.25, published 79, difference +1.25"]


def test_verify_takes_a_catalog_name_only(tmp_path, run_main):
    code, _, err = run_main("verify", tmp_path / "x.pth", "-o", tmp_path / "v")
    assert code == 2 and "verify takes a name of `videorec weights`, not a file" in err
