"""How long `videorec --help` and each subcommand's --help take, against `import torch`.

    python scripts/bench_help.py [--runs 5]

Each command runs in a fresh interpreter (``python -m videorec_cli.main ... --help``), as a
user's shell starts it; the figure is the median wall time of ``--runs`` runs. In the same
run, ``python -c "import torch"`` is timed the same way as the baseline: a help that imports
torch cannot be faster than it. Target: every help well under 1 s on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Sequence

ROOT = Path(__file__).resolve().parents[1]


def wall_time(argv: Sequence[str], runs: int) -> float:
    """Median wall time (s) of ``runs`` runs of ``argv`` (output discarded; a failure raises)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    times = []
    for _ in range(runs):
        tic = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def subcommands() -> List[str]:
    """The registered subcommand names (read from the app, which imports nothing heavy)."""
    sys.path.insert(0, str(ROOT))
    from videorec_cli.main import app

    return [info.name for info in app.registered_commands]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per command (the median is reported)")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "videorec_cli.main"]
    baseline = wall_time([sys.executable, "-c", "import torch"], args.runs)
    print(f"{'command':<34} {'median (s)':>10} {'x import torch':>15}")
    torch_label = 'python -c "import torch"'
    print(f"{torch_label:<34} {baseline:>10.3f} {1.0:>15.2f}")
    for name in [None, *subcommands()]:
        seconds = wall_time([*cli, *([name] if name else []), "--help"], args.runs)
        label = f"videorec {name + ' ' if name else ''}--help"
        print(f"{label:<34} {seconds:>10.3f} {seconds / baseline:>15.2f}")


if __name__ == "__main__":
    main()
