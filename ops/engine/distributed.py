"""Distributed helpers: read the launch environment, start processes, shard, gather.

A process is part of a distributed run when the environment says so: ``RANK`` /
``WORLD_SIZE`` / ``LOCAL_RANK`` (torchrun, torch.distributed.run, our own
``--nproc-per-node`` launcher) or ``SLURM_PROCID`` / ``SLURM_NTASKS`` /
``SLURM_LOCALID`` (srun; MASTER_ADDR/MASTER_PORT must be exported by the job
script). gloo on CPU, NCCL on CUDA.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import List, Sequence

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

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


def pick_device(local_rank: int, requested: str = "auto") -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(requested)


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched distributed; a plain process gets rank 0 of 1."""
    rank, world, local = env_ranks()
    dev = pick_device(local, device)
    if world > 1 and not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", os.environ.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1"))
        os.environ.setdefault("MASTER_PORT", "29500")
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistInfo(rank, world, local, dev)


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
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank if ``flag`` is true on any (e.g. a stop signal)."""
    if not info.distributed:
        return flag
    t = torch.tensor([1 if flag else 0], device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return bool(t.item())


def launch(nproc_per_node: int, nnodes: int, node_rank: int, master_addr: str, master_port: int,
           argv: Sequence[str]) -> int:
    """Re-run ``videorec <argv>`` in ``nproc_per_node`` processes through torch.distributed.run."""
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args([
        f"--nproc-per-node={nproc_per_node}", f"--nnodes={nnodes}", f"--node-rank={node_rank}",
        f"--master-addr={master_addr}", f"--master-port={master_port}",
        "--module", "videorec_cli.main", *argv,
    ])
    try:
        run(args)
    except Exception as exc:  # ChildFailedError: the failing rank already printed its error
        print(f"videorec: error: distributed run failed ({type(exc).__name__})", file=sys.stderr)
        return 1
    return 0
