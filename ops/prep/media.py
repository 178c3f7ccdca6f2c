"""Media helpers: find ffmpeg, find videos, frame-name templates, frame extraction.

Frame extraction writes JPEGs named by a template such as ``img_{:05d}.jpg``
(numbered from 1, as every list file in the seeds expects) into one folder per
video. Each video is extracted into a temporary sibling folder that is renamed
into place only when ffmpeg succeeded, so a finished folder is always complete
and an interrupted run can simply be started again.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import ffmpeg

from ops.common.errors import UserError
from ops.common.fileio import check_output_dir, write_report
from ops.prep.workers import ChildProcesses, run_jobs

VIDEO_EXTENSIONS: Tuple[str, ...] = (
    ".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts", ".ogv",
)
DEFAULT_TEMPLATE = "img_{:05d}.jpg"
FAILURES_FILE = "extract_failures.txt"


class MediaError(UserError):
    """A video that cannot be used; ``reason`` is the message without the path."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


def ffmpeg_exe() -> str:
    """The ffmpeg executable: the one on PATH, else the binary shipped with imageio-ffmpeg."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise UserError(f"ffmpeg not found on PATH and imageio-ffmpeg has none ({exc}); "
                        "install ffmpeg or `pip install imageio-ffmpeg`") from None


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def find_videos(src: Path) -> List[Path]:
    """Video files under ``src`` (recursive, extension case-insensitive), sorted; ``src`` may be one video."""
    src = Path(src)
    if src.is_file():
        return [src] if is_video(src) else []
    if not src.is_dir():
        raise UserError(f"{src}: no such file or folder")
    return sorted(p for p in src.rglob("*") if is_video(p) and p.is_file() and not _hidden(p.relative_to(src)))


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


@dataclass(frozen=True)
class FrameTemplate:
    """A frame-name template with one integer field: ``img_{:05d}.jpg``, ``{:06d}.jpg`` or ``img_%05d.jpg``.

    ``width`` is the zero-padded width (0: no padding).
    """

    prefix: str
    width: int
    suffix: str

    _BRACE = re.compile(r"\{(?::(?:0(?P<w>\d+))?d)?\}")
    _PERCENT = re.compile(r"%(?:0(?P<w>\d+))?d")

    @classmethod
    def parse(cls, template: str) -> "FrameTemplate":
        for pattern, literal in ((cls._BRACE, "{}"), (cls._PERCENT, "%")):
            matches = list(pattern.finditer(template))
            if len(matches) == 1:
                m = matches[0]
                prefix, suffix = template[: m.start()], template[m.end():]
                if not any(c in prefix + suffix for c in literal) and "/" not in prefix + suffix:
                    return cls(prefix, int(m.group("w") or 0), suffix)
        raise UserError(f"frame template {template!r}: expected one integer field such as "
                        "'img_{:05d}.jpg', '{:06d}.jpg' or 'img_%05d.jpg'")

    def format(self, index: int) -> str:
        return f"{self.prefix}{index:0{self.width}d}{self.suffix}"

    @property
    def ffmpeg_pattern(self) -> str:
        """ffmpeg's image2 pattern, e.g. ``img_%05d.jpg``."""
        digits = f"%0{self.width}d" if self.width else "%d"
        return self.prefix.replace("%", "%%") + digits + self.suffix.replace("%", "%%")

    @property
    def regex(self) -> "re.Pattern[str]":
        digits = rf"\d{{{self.width},}}" if self.width else r"\d+"
        return re.compile(re.escape(self.prefix) + digits + re.escape(self.suffix))


def count_frames(folder: Path, template: FrameTemplate) -> int:
    """Number of files in ``folder`` whose names match ``template`` (other files are ignored)."""
    regex = template.regex
    with os.scandir(folder) as it:
        return sum(1 for entry in it if regex.fullmatch(entry.name))


def temp_dir_for(out_dir: Path) -> Path:
    """The temporary sibling a video is extracted into before the rename."""
    return out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")


def scale_short_side(stream, short_side: int):
    """An ffmpeg-python ``stream`` scaled so its shorter side is ``short_side`` (the other side even)."""
    # Portrait: the width is the short side; landscape/square: the height. -2 keeps the other side even.
    return stream.filter("scale", w=f"if(lt(iw,ih),{short_side},-2)", h=f"if(lt(iw,ih),-2,{short_side})")


def extraction_command(video: Path, pattern: str, *, short_side: int, fps: Optional[float], quality: int) -> List[str]:
    """The ffmpeg command line: optional fps resampling, true short-side resize (even sizes), JPEG quality."""
    # 'file:' keeps names such as 'a:b.mp4' from being read as a protocol.
    stream = ffmpeg.input(f"file:{video}", threads=1)["v:0"]  # the first video stream
    if fps:
        stream = stream.filter("fps", fps=fps)
    if short_side:
        stream = scale_short_side(stream, short_side)
    out = stream.output(f"file:{pattern}", **{"q:v": quality, "start_number": 1, "threads": 1})
    return out.global_args("-nostdin", "-hide_banner", "-loglevel", "error").overwrite_output().compile(cmd=ffmpeg_exe())


def ffmpeg_message(stderr: bytes) -> str:
    """ffmpeg's complaint in one line: its first and last error lines, without ``[ctx @ 0x..]`` prefixes."""
    lines = [re.sub(r"^\[[^\]]* @ [^\]]*\]\s*", "", ln.strip())
             for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return ""
    if any("matches no streams" in ln for ln in lines):
        return "no video stream"
    return lines[0] if lines[0] == lines[-1] else f"{lines[0]} ... {lines[-1]}"


def check_settings(short_side: int, fps: Optional[float], quality: int, template: str) -> FrameTemplate:
    """Validate the extraction settings; returns the parsed template."""
    if short_side < 0:
        raise UserError(f"--short-side {short_side}: must be >= 0 (0 keeps the native size)")
    if fps is not None and fps <= 0:
        raise UserError(f"--fps {fps}: must be > 0 (leave it out for the native rate)")
    if not 0 <= quality <= 31:
        raise UserError(f"--quality {quality}: must be 0..31 (lower is better)")
    return FrameTemplate.parse(template)


def probe_video(video: Path, children: Optional[ChildProcesses] = None) -> Optional[str]:
    """None when ffmpeg decodes the first frame of ``video``'s first video stream, else the reason in one line.

    ffmpeg's own messages are captured, never printed.
    """
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", f"file:{video}",
           "-map", "0:v:0", "-frames:v", "1", "-f", "null", "-"]
    code, stderr = (children or ChildProcesses()).run(cmd)
    message = ffmpeg_message(stderr)
    if code != 0:
        return f"undecodable: {message or f'ffmpeg exit code {code}'}"
    return None


def extract_frames(video: Path, out_dir: Path, short_side: int = 320, fps: Optional[float] = None, quality: int = 2,
                   template: str = DEFAULT_TEMPLATE, children: Optional[ChildProcesses] = None) -> int:
    """Extract the frames of ``video`` into ``out_dir`` (replaced if present); returns the number written.

    ``short_side`` 0 keeps the native size; ``fps`` None keeps the native rate. Raises
    :class:`MediaError` (with ffmpeg's message) when the video cannot be decoded
    or yields no frame; ``out_dir`` is then left untouched. ``children`` lets a caller
    stop the ffmpeg process (then :class:`ops.prep.workers.Stopped` is raised and the
    temporary folder removed).
    """
    video, out_dir = Path(video), Path(out_dir)
    tmpl = check_settings(short_side, fps, quality, template)
    if not video.is_file():
        raise MediaError(video, "no such file")
    tmp = temp_dir_for(out_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        pattern = os.path.join(str(tmp).replace("%", "%%"), tmpl.ffmpeg_pattern)  # '%' in a folder name is literal
        cmd = extraction_command(video, pattern, short_side=short_side, fps=fps, quality=quality)
        code, stderr = (children or ChildProcesses()).run(cmd)
        message = ffmpeg_message(stderr)
        if code != 0:
            raise MediaError(video, f"ffmpeg failed: {message or f'exit code {code}'}")
        written = count_frames(tmp, tmpl)
        if written == 0:
            raise MediaError(video, f"no frames decoded{': ' + message if message else ' (no video stream?)'}")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written


@dataclass
class ExtractSummary:
    """What one ``extract_tree`` run did; ``failures`` holds (video, reason)."""

    extracted: int = 0
    skipped: int = 0
    frames: int = 0
    failures: List[Tuple[Path, str]] = field(default_factory=list)
    failures_file: Optional[Path] = None


def plan_outputs(src: Path, dst: Path, videos: Iterable[Path]) -> Dict[Path, Path]:
    """Video -> frame folder, keeping the layout: ``src/a/b/c.mp4`` -> ``dst/a/b/c``."""
    src, dst = Path(src), Path(dst)
    base = src.parent if src.is_file() else src
    plan: Dict[Path, Path] = {}
    owner: Dict[Path, Path] = {}
    for video in videos:
        out = dst / video.relative_to(base).with_suffix("")
        if out in owner:
            raise UserError(f"{video}: same frame folder {out} as {owner[out]}; rename one of them")
        owner[out] = video
        plan[video] = out
    return plan


def pending(plan: Dict[Path, Path], done: Callable[[Path], bool], overwrite: bool) -> Tuple[Dict[Path, Path], int]:
    """The (video -> output) pairs of ``plan`` still to make, and how many outputs are ``done``
    already (kept, unless ``overwrite``): what makes a long job resumable."""
    todo = {video: out for video, out in plan.items() if overwrite or not done(out)}
    return todo, len(plan) - len(todo)


def remove_stale_temps(folders: Iterable[Path]) -> None:
    """Remove temporary folders and files left by interrupted runs in ``folders`` (not recursive)."""
    for folder in folders:
        if folder.is_dir():
            for stale in folder.glob(".*.tmp-*"):
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)


def _remove_empty_parents(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its parents below ``stop`` while they are empty (left by failed videos)."""
    while folder != stop and stop in folder.parents and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def extract_tree(src: Path, dst: Path, *, short_side: int = 320, fps: Optional[float] = None, quality: int = 2,
                 template: str = DEFAULT_TEMPLATE, workers: int = 1, overwrite: bool = False,
                 note: Callable[[str], None] = lambda message: None) -> ExtractSummary:
    """Extract every video under ``src`` into ``dst`` with ``workers`` parallel ffmpeg processes.

    Finished folders are skipped unless ``overwrite``. Failures do not stop the
    others; they are written to ``dst/extract_failures.txt`` (``path<TAB>reason``),
    which is removed when a run has none. ``note`` gets one line when the work starts.
    On ``KeyboardInterrupt`` the running ffmpeg processes are stopped and their
    temporary folders removed before it is re-raised: every frame folder in ``dst``
    is complete.
    """
    src, dst = Path(src), Path(dst)
    check_settings(short_side, fps, quality, template)  # fail before starting any work
    check_output_dir(dst, "frames folder", fix="choose another DST or fix its permissions")
    videos = find_videos(src)
    if not videos:
        raise UserError(f"{src}: no videos found (extensions {' '.join(VIDEO_EXTENSIONS)})")
    plan = plan_outputs(src, dst, videos)
    remove_stale_temps({out.parent for out in plan.values()})
    summary = ExtractSummary()
    todo, summary.skipped = pending(plan, Path.is_dir, overwrite)
    note(f"extracting {len(todo)} videos into {dst} ({summary.skipped} already done)")
    children = ChildProcesses()
    try:
        done = run_jobs(lambda video: extract_frames(video, todo[video], short_side, fps, quality, template, children),
                        list(todo), workers=workers, children=children, desc="extract-frames", unit="video")
    except KeyboardInterrupt:
        for out in todo.values():
            _remove_empty_parents(out.parent, dst)
        raise
    for video, future in done:
        try:
            summary.frames += future.result()
            summary.extracted += 1
        except MediaError as exc:
            summary.failures.append((video, exc.reason))
        except OSError as exc:
            summary.failures.append((video, f"{type(exc).__name__}: {exc}"))
    summary.failures.sort()
    for video, _ in summary.failures:
        _remove_empty_parents(plan[video].parent, dst)
    failures_file = dst / FAILURES_FILE
    write_report(failures_file, [f"{video}\t{reason}" for video, reason in summary.failures])
    summary.failures_file = failures_file if summary.failures else None
    return summary
