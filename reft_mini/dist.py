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
import sys
import traceback
from typing import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from reft_mini.config import UserError, main_guard


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


def teardown() -> None:
    """Wait for every rank at the end of a run: rank 0 usually still evaluates, saves and plots when
    the others get here, and no rank may leave while a peer could still talk to it."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def run_script(main: Callable[[], object]) -> None:
    """Run a script's main(): alone, as usual; under torchrun, then leave at once with os._exit.

    Why: at interpreter exit, gloo's C++ worker threads can be destroyed in an order that aborts the
    process ("terminate called without an active exception", SIGABRT) although all work is done and
    saved; it happened at random in CI, on the rank that was not saving. After teardown()'s barrier
    there is nothing left to do, so a rank skips Python's finalisation: flush stdout/stderr, exit with
    the script's status (a Python error prints its traceback first and exits 1). Every file the
    scripts write is closed when written (atomic checkpoints, one open() per metrics line).
    """
    if "RANK" not in os.environ:
        main_guard(main)
        return
    code = 0
    try:
        main_guard(main)
    except SystemExit as e:                  # main_guard's exit 2 for a UserError, or --help's exit 0
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:                     # noqa: BLE001 - any error: show it, then leave
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def all_reduce_sum(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def autocast(device: torch.device, enabled: bool | None = None):
    """bf16 autocast (matmuls in bfloat16, reductions and LayerNorm in float32) or nothing.

    enabled=None: on for CUDA, off on CPU (a CPU gains little from bf16). enabled=True on CPU runs the
    very same code path under torch.autocast("cpu", bfloat16): that is how the tests exercise it."""
    if enabled is None:
        enabled = device.type == "cuda"
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a CPU batch to the device; on CUDA through pinned memory, so the copy runs asynchronously."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t
