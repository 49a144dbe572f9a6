"""Device and multi-process setup: CPU by default, CUDA when asked for, DDP when run under torchrun.

ReFT's official runs use 8 GPUs (4 questions per GPU). Data parallelism is the same idea at any
scale: every process (rank) holds a full copy of the model, works on its own slice of the batch, and
gradients are averaged across ranks before each optimizer step, so all copies stay identical.
`torchrun --nproc_per_node=N script.py` sets RANK / WORLD_SIZE / LOCAL_RANK; without them we are a
single process. Backend: NCCL between GPUs, gloo on CPU (which is how the tests run DDP here).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from reft_mini.config import UserError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(name: str = "auto") -> torch.device:
    """'auto' = CUDA when available, else CPU; 'cuda' insists on a GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device=cuda but no CUDA GPU is visible; use --device=cpu")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UserError(f"--device={name}: choose auto, cpu or cuda")
    return torch.device(name)


def setup(device: str = "auto") -> DistInfo:
    """Initialise the process group when launched by torchrun; pick this rank's device."""
    if "RANK" not in os.environ:
        return DistInfo(device=pick_device(device))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", 0))
    dev = pick_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local, dev)


def teardown(wait_for_peers: bool = True) -> None:
    """Leave the process group, together. Rank 0 usually still evaluates, saves and plots when the
    others reach the end; the barrier makes every rank wait until all are done before the connections
    close. On the error path (wait_for_peers=False) we only destroy the group: a peer may be stuck in
    another collective, and a process that exits with gloo's threads still alive dies with SIGABRT
    ("terminate called without an active exception") instead of showing its Python error."""
    if dist.is_available() and dist.is_initialized():
        if wait_for_peers:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_mean(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Average a tensor over ranks (identity for one process)."""
    if info.enabled:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= info.world_size
    return x


def all_reduce_sum(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def autocast(device: torch.device):
    """bf16 autocast on CUDA (matmuls in bfloat16, reductions in float32); nothing on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a CPU batch to the device; on CUDA through pinned memory, so the copy runs asynchronously."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t
