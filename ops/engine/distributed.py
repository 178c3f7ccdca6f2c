"""Distributed helpers: read the launch environment, start processes, shard, gather.

A process is part of a distributed run when the environment says so: ``RANK`` /
``WORLD_SIZE`` / ``LOCAL_RANK`` (torchrun, torch.distributed.run, our own
``--nproc-per-node`` launcher) or ``SLURM_PROCID`` / ``SLURM_NTASKS`` /
``SLURM_LOCALID`` (srun; MASTER_ADDR/MASTER_PORT must be exported by the job
script). gloo on CPU, NCCL on CUDA.
"""
from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    control: Optional[object] = None  # beside NCCL, a gloo group for small host-side messages (stop signals)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_ranks() -> tuple:
    """(rank, world_size, local_rank) from torchrun's or SLURM's environment."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
    return 0, 1, 0


def launched() -> bool:
    """True inside a process started by a distributed launcher."""
    return env_ranks()[1] > 1 or "TORCHELASTIC_RUN_ID" in os.environ


def device_type(requested: str = "auto") -> str:
    """The device type ``requested`` means here: ``auto`` is cuda when there is one, else cpu."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def pick_device(local_rank: int, requested: str = "auto") -> torch.device:
    requested = device_type(requested)
    if requested == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(requested)


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched distributed; a plain process gets rank 0 of 1."""
    rank, world, local = env_ranks()
    dev = pick_device(local, device)
    control = None
    if world > 1:
        if not dist.is_initialized():
            os.environ.setdefault("MASTER_ADDR", os.environ.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1"))
            os.environ.setdefault("MASTER_PORT", "29500")
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
        if dev.type == "cuda":
            control = dist.new_group(backend="gloo")
    return DistInfo(rank, world, local, dev, control)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard(n: int, info: DistInfo) -> List[int]:
    """Indices of this rank for evaluation: every item exactly once across ranks, no padding."""
    return list(range(info.rank, n, info.world_size))


def gather_objects(obj, info: DistInfo) -> list:
    """Every rank's ``obj`` on every rank (a list in rank order)."""
    if not info.distributed:
        return [obj]
    out: list = [None] * info.world_size
    dist.all_gather_object(out, obj, group=info.control)  # pickles travel on the host
    return out


def max_over_ranks(value: int, info: DistInfo) -> int:
    """The largest ``value`` of all ranks, on every rank (e.g. the stop signal any rank got).

    It travels on the host (gloo; on CUDA the ``control`` group beside NCCL), so asking every
    step never makes the host wait for the GPU's queue."""
    if not info.distributed:
        return value
    t = torch.tensor([value])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=info.control)
    return int(t.item())


def barrier(info: DistInfo) -> None:
    """Wait until every rank gets here (e.g. until rank 0 has saved)."""
    if info.distributed:
        dist.barrier(group=info.control)


def exit_code(exc: BaseException) -> int:
    """The exit code a launcher returns for the exception ``torch.distributed.run`` raised: the
    signal it got (128 + N, after the ranks it forwarded it to have stopped) or the first
    failed rank's code (128 + N for a rank killed by signal N); 1 for anything else."""
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    if isinstance(exc, SignalException):
        return 128 + int(exc.sigval)
    if isinstance(exc, ChildFailedError):
        _, failure = exc.get_first_failure()
        return 128 - failure.exitcode if failure.exitcode < 0 else failure.exitcode or 1
    return 1


def launch(nproc_per_node: int, nnodes: int, node_rank: int, master_addr: str, master_port: int,
           argv: Sequence[str]) -> int:
    """Re-run ``videorec <argv>`` in ``nproc_per_node`` processes through torch.distributed.run.

    SIGTERM/SIGINT to this process are forwarded to the ranks (which save and stop); the
    return value is the ranks' exit code (0, 128 + signal, or a failed rank's code)."""
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args([
        f"--nproc-per-node={nproc_per_node}", f"--nnodes={nnodes}", f"--node-rank={node_rank}",
        f"--master-addr={master_addr}", f"--master-port={master_port}",
        "--module", "videorec_cli.main", *argv,
    ])
    try:
        run(args)
    except Exception as exc:  # the failing rank already printed its error
        code = exit_code(exc)
        if code not in (128 + signal.SIGTERM, 128 + signal.SIGINT):
            print(f"videorec: error: distributed run failed ({type(exc).__name__}, exit code {code})",
                  file=sys.stderr)
        return code
    return 0
