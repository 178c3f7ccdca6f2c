"""Parallel ffmpeg jobs that one Ctrl-C stops cleanly.

The jobs run in threads and start their child processes through
:class:`ChildProcesses`. On an interrupt :func:`run_jobs` kills the running
children, drops the jobs not yet started and waits for the running ones to clean
up (each removes its temporary file or folder) before it re-raises
``KeyboardInterrupt``; nothing half-written is left behind.
"""
from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Callable, List, Optional, Sequence, Set, Tuple, TypeVar

from tqdm import tqdm

T = TypeVar("T")


class Stopped(Exception):
    """Raised inside a job whose run was interrupted: the job cleans up and gives up."""


class ChildProcesses:
    """Runs child processes so that :meth:`stop` can end every one still running.

    Children get their own session, so a Ctrl-C at the terminal reaches only us and
    we decide what to keep (ffmpeg would otherwise finish a partial output and exit 0).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: Set[subprocess.Popen] = set()
        self.stopped = False

    def run(self, cmd: Sequence[str], input: Optional[bytes] = None) -> Tuple[int, bytes]:
        """(exit code, stderr) of ``cmd`` (stdout discarded); raises :class:`Stopped` after :meth:`stop`."""
        with self._lock:
            if self.stopped:
                raise Stopped()
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
            self._running.add(proc)
        try:
            _, stderr = proc.communicate(input)
        finally:
            with self._lock:
                self._running.discard(proc)
        if self.stopped:
            raise Stopped()
        return proc.returncode, stderr

    def stop(self) -> None:
        """Kill the running children; later :meth:`run` calls raise :class:`Stopped`."""
        with self._lock:
            self.stopped = True
            for proc in self._running:
                proc.kill()


def run_jobs(job: Callable[[T], object], items: Sequence[T], *, workers: int, children: ChildProcesses,
             desc: str, unit: str) -> List[Tuple[T, Future]]:
    """Run ``job(item)`` for every item on ``workers`` threads; (item, finished future) in completion order.

    A tqdm bar shows on a terminal. On ``KeyboardInterrupt`` (or any error here) the
    children are stopped, pending jobs cancelled and running ones awaited before re-raising.
    """
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    done: List[Tuple[T, Future]] = []
    try:
        futures = {pool.submit(job, item): item for item in items}
        for future in tqdm(as_completed(futures), total=len(futures), desc=desc, unit=unit, disable=None,
                           file=sys.stderr):
            done.append((futures[future], future))
    except BaseException:
        children.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return done
