"""The weights downloader against a loopback HTTP server (port 0): resume, hashes, cache, offline."""
from __future__ import annotations

import hashlib
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

from archs.weights import Published, WeightsEntry, register_weights, unregister_weights
from ops.common.download import (HASHES_FILE, cached_file, fetch_weights, find_entry, resolve_weights,
                                 videorec_home)
from ops.common.errors import UserError

BODY = bytes(range(256)) * 40  # 10 KiB


@dataclass
class ServerState:
    files: Dict[str, bytes]
    cut: Set[str] = field(default_factory=set)  # paths whose next response stops halfway
    requests: List[tuple] = field(default_factory=list)  # (path, Range header)
    ranges: bool = True  # False: answer every request with the whole file (200)


class Handler(BaseHTTPRequestHandler):
    """Serves ``state.files`` with Range support; HTTP/1.0, so each response ends the connection."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        state: ServerState = self.server.state
        state.requests.append((self.path, self.headers.get("Range")))
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        asked = self.headers.get("Range") if state.ranges else None
        start = int(asked.split("=")[1].split("-")[0]) if asked else 0
        if start >= len(body) and start:
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if self.path in state.cut:
            state.cut.discard(self.path)
            payload = payload[: len(payload) // 2]
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.state = ServerState({"/w.pth": BODY})
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def base_url(httpd) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}"


@pytest.fixture
def entry_for():
    """Register catalog entries for the test, removed afterwards."""
    names = []

    def make(url: str, sha256: Optional[str] = None, manual: bool = False) -> WeightsEntry:
        name = f"test_dl_{len(names)}"
        entry = WeightsEntry(name=name, arch="tsn_r18", url=url, file_name=f"{name}.pth",
                             dataset="ucf101", num_classes=101, protocol="tsn-1x1", sha256=sha256, manual=manual,
                             published=Published(top1=1.0, source="test"))
        names.append(entry.name)
        return register_weights(entry)

    yield make
    for name in names:
        unregister_weights(name)


def test_cut_download_resumes_with_range_and_records_the_hash(server, entry_for, tmp_path):
    entry = entry_for(base_url(server) + "/w.pth")
    server.state.cut.add("/w.pth")
    path = fetch_weights(entry, tmp_path, progress=False, retries=1)
    assert path == tmp_path / "weights" / entry.file_name and path.read_bytes() == BODY
    assert server.state.requests == [("/w.pth", None), ("/w.pth", f"bytes={len(BODY) // 2}-")]
    assert not path.with_name(path.name + ".part").exists()
    record = json.loads((path.parent / HASHES_FILE).read_text())
    assert record[entry.file_name]["sha256"] == hashlib.sha256(BODY).hexdigest()


def test_a_cut_run_leaves_the_part_and_the_next_run_resumes(server, entry_for, tmp_path):
    entry = entry_for(base_url(server) + "/w.pth")
    server.state.cut.add("/w.pth")
    with pytest.raises(UserError, match="run the command again to resume") as err:
        fetch_weights(entry, tmp_path, progress=False, retries=0)
    part = cached_file(entry, tmp_path).with_name(entry.file_name + ".part")
    assert part.stat().st_size == len(BODY) // 2 and str(part) in str(err.value)
    assert not cached_file(entry, tmp_path).exists()
    assert fetch_weights(entry, tmp_path, progress=False).read_bytes() == BODY
    assert server.state.requests[-1] == ("/w.pth", f"bytes={len(BODY) // 2}-")


def test_a_server_without_ranges_restarts_the_file(server, entry_for, tmp_path):
    entry = entry_for(base_url(server) + "/w.pth")
    server.state.cut.add("/w.pth")
    server.state.ranges = False
    assert fetch_weights(entry, tmp_path, progress=False, retries=1).read_bytes() == BODY
    assert server.state.requests[1] == ("/w.pth", f"bytes={len(BODY) // 2}-")  # asked, answered with all


def test_published_hash_mismatch_is_refused_and_nothing_cached(server, entry_for, tmp_path):
    entry = entry_for(base_url(server) + "/w.pth", sha256=hashlib.sha256(BODY).hexdigest())
    server.state.files["/w.pth"] = BODY[:-1] + b"!"  # tampered upstream
    with pytest.raises(UserError, match="sha256 .* is not the expected") as err:
        fetch_weights(entry, tmp_path, progress=False)
    assert "\n" not in str(err.value)
    assert list((tmp_path / "weights").iterdir()) == []


def test_cache_hit_does_not_download_again_and_a_tampered_cache_is_refused(server, entry_for, tmp_path):
    entry = entry_for(base_url(server) + "/w.pth")
    path = fetch_weights(entry, tmp_path, progress=False)
    assert fetch_weights(entry, tmp_path, progress=False) == path
    assert len(server.state.requests) == 1
    path.write_bytes(b"tampered")
    with pytest.raises(UserError, match="does not match the sha256 recorded at its first download"):
        fetch_weights(entry, tmp_path, progress=False)
    assert not path.exists() and path.with_name(path.name + ".rejected").read_bytes() == b"tampered"
    assert fetch_weights(entry, tmp_path, progress=False).read_bytes() == BODY  # fetched afresh
    assert len(server.state.requests) == 2


def test_offline_names_the_url_and_the_path(entry_for, tmp_path):
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/w.pth"
        entry = entry_for(url)
        with pytest.raises(UserError) as err:
            fetch_weights(entry, tmp_path, progress=False, timeout=5)
    message = str(err.value)
    assert url in message and str(cached_file(entry, tmp_path)) in message and "\n" not in message


def test_http_error_names_the_url_and_the_path(server, entry_for, tmp_path):
    entry = entry_for(base_url(server) + "/missing.pth")
    with pytest.raises(UserError, match="HTTP 404") as err:
        fetch_weights(entry, tmp_path, progress=False)
    assert str(cached_file(entry, tmp_path)) in str(err.value)


def test_manual_entry_names_the_page_and_a_placed_file_is_used(entry_for, tmp_path):
    entry = entry_for("https://drive.example.invalid/folder", manual=True)
    dest = cached_file(entry, tmp_path)
    with pytest.raises(UserError, match="fetch test_dl_0.pth from https://drive.example.invalid/folder") as err:
        fetch_weights(entry, tmp_path, progress=False)
    assert f"save it as {dest}" in str(err.value)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(BODY)
    assert fetch_weights(entry, tmp_path, progress=False) == dest
    assert json.loads((dest.parent / HASHES_FILE).read_text())[dest.name]["sha256"] == hashlib.sha256(BODY).hexdigest()


def test_resolve_weights_paths_and_names(server, entry_for, tmp_path, monkeypatch):
    local = tmp_path / "mine.pth"
    local.write_bytes(b"x")
    assert resolve_weights(str(local)) == local
    with pytest.raises(UserError, match="no such checkpoint file"):
        resolve_weights(str(tmp_path / "gone.pth"))
    with pytest.raises(UserError, match="unknown weights 'mvfnet_r50_k400_8x'.*mvfnet_r50_k400_8x8"):
        resolve_weights("mvfnet_r50_k400_8x")
    entry = entry_for(base_url(server) + "/w.pth")
    assert find_entry(entry.name) is entry and find_entry(str(local)) is None
    monkeypatch.setenv("VIDEOREC_HOME", str(tmp_path / "home"))
    assert resolve_weights(entry.name, progress=False) == tmp_path / "home" / "weights" / entry.file_name


def test_cache_folder_follows_the_environment(tmp_path):
    assert videorec_home({"VIDEOREC_HOME": str(tmp_path), "XDG_CACHE_HOME": "/x"}) == tmp_path
    assert videorec_home({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "videorec"
    assert videorec_home({}) == Path.home() / ".cache" / "videorec"


def test_an_unwritable_part_file_is_one_line(server, entry_for, tmp_path):
    entry = entry_for(base_url(server) + "/w.pth")
    part = cached_file(entry, tmp_path).with_name(entry.file_name + ".part")
    part.mkdir(parents=True)  # a folder where the part file should go
    with pytest.raises(UserError, match=f"cannot write {part}") as err:
        fetch_weights(entry, tmp_path, progress=False)
    assert "\n" not in str(err.value)


def test_checkpoint_arguments_keep_their_words(tmp_path):
    from ops.common.download import resolve_checkpoint_arg

    assert resolve_checkpoint_arg(None) is None
    assert (resolve_checkpoint_arg("none"), resolve_checkpoint_arg("imagenet")) == ("none", "imagenet")
    path = tmp_path / "w.pth"
    path.write_bytes(b"weights")
    assert resolve_checkpoint_arg(str(path)) == str(path)
    with pytest.raises(UserError, match="no such checkpoint file"):
        resolve_checkpoint_arg(str(tmp_path / "missing.pth"))
    with pytest.raises(UserError, match="unknown weights 'mvfnet_r50_k400_8x9'.*mvfnet_r50_k400_8x8"):
        resolve_checkpoint_arg("mvfnet_r50_k400_8x9")


def test_processes_fetching_one_file_download_it_once(server, entry_for, tmp_path):
    """A rank that finds another one downloading waits for it and uses its file."""
    from ops.common.download import exclusive

    entry = entry_for(base_url(server) + "/w.pth", sha256=hashlib.sha256(BODY).hexdigest())
    dest = cached_file(entry, tmp_path)
    dest.parent.mkdir(parents=True)
    results = []
    with exclusive(dest.parent):  # another process is downloading ...
        waiting = threading.Thread(target=lambda: results.append(fetch_weights(entry, tmp_path, progress=False)))
        waiting.start()
        dest.write_bytes(BODY)  # ... and finishes
    waiting.join()
    assert results == [dest] and server.state.requests == []
