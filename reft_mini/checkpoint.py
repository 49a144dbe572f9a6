"""Checkpoints that survive a crash: written to a temporary file, then atomically renamed into place.

ReFT needs several checkpoints of one run (the RL stage starts from an *early* warm-up epoch, the SFT
baseline is the best or last one), and CPU runs get interrupted. So:

* `save_checkpoint` writes `name.tmp.<pid>`, flushes it to disk (fsync), then `os.replace`s it over the
  target. A rename within one directory is atomic on POSIX: a reader sees the old file or the new one,
  never half of one. A SIGKILL mid-write leaves only a stray .tmp file; `remove_stale_tmp` deletes
  those of dead processes when the next run starts in that folder.
* `save_checkpoint` refuses weights that are not finite numbers (NaN, inf): a diverged run must never
  replace the last good checkpoint with garbage that a resume would then continue from.
* `resume_checkpoint` picks the newest checkpoint of a folder that loads, skipping (with a note) one
  that does not: training writes one periodically, so a killed run loses at most that interval.
* `load_checkpoint` uses `torch.load(weights_only=True)`: tensors, numbers, strings, lists and dicts
  only, so a checkpoint can never execute code when loaded.

A checkpoint is a plain dict: {"kind", "model_config", "model", "optimizer", "step", "epoch", "config",
"tokenizer", "rng", ...}. The script config inside it is what evaluation reads back.
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import torch

from reft_mini.config import UserError
from reft_mini.model import GPT, GPTConfig


def first_non_finite(obj) -> str | None:
    """The name of the first floating-point tensor in a (nested) checkpoint dict holding NaN or inf."""
    if isinstance(obj, torch.Tensor):
        return "" if obj.is_floating_point() and not bool(torch.isfinite(obj).all()) else None
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for key, value in items:
        bad = first_non_finite(value)
        if bad is not None:
            return f"{key}.{bad}" if bad else str(key)
    return None


def save_checkpoint(obj: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    # The weights and the optimizer's moments: a NaN here would be resumed from, and spread.
    bad = first_non_finite({k: obj[k] for k in ("model", "optimizer") if k in obj})
    if bad is not None:
        raise UserError(f"refusing to save {path}: {bad} is not a finite number (the run diverged); "
                        "lower the learning rate (--lr) and start again")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    except OSError:
        pass
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found (train one first, or pass the right path)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise UserError(f"checkpoint {path} could not be read ({type(e).__name__}: {e}); "
                        "it may be from another program or truncated") from None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # called at the start of a run: this process has not saved anything yet
    try:
        os.kill(pid, 0)  # signal 0: "does this process exist?", nothing is sent
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def remove_stale_tmp(folder: str | os.PathLike) -> list[Path]:
    """Delete the `name.tmp.<pid>` files that writes killed half way left in `folder`; returns them.

    Only files whose writer (the pid in the name) is no longer running: a live writer may be another
    program saving into the same folder right now (say an export), and its file must not vanish under it.
    A pid the system has since given to an unrelated process keeps its file until a later start."""
    removed = []
    for tmp in sorted(Path(folder).glob("*.tmp.*")):
        pid = tmp.name.rsplit(".tmp.", 1)[1]
        if pid.isdigit() and tmp.is_file() and not _pid_alive(int(pid)):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


RESUME_KEYS = ("model", "optimizer", "rng", "config")  # what a run needs to continue exactly
KINDS = {"base": "stage 0 (data/base/pretrain.py)", "warmup": "the warm-up (train_warmup.py)",
         "ppo": "PPO (train_ppo.py)"}


def resume_checkpoint(folder: str | os.PathLike, kind: str, patterns=("latest.pt",),
                      map_location="cpu") -> tuple[Path, dict]:
    """The newest checkpoint in `folder` (files matching `patterns`, newest modification time first)
    that loads and is complete; one that fails is skipped with a note. Raises UserError when there is
    none, or when the newest is not a `kind` checkpoint (another script's folder)."""
    folder = Path(folder)
    candidates = {p for pattern in patterns for p in folder.glob(pattern) if p.is_file()}
    # Newest first; on equal times, latest.pt (written last at an epoch end) before epochN.pt.
    for path in sorted(candidates, key=lambda p: (p.stat().st_mtime_ns, p.name == "latest.pt"), reverse=True):
        try:
            ck = load_checkpoint(path, map_location=map_location)
        except UserError as e:
            print(f"note: skipped {path}: {e}")
            continue
        if not isinstance(ck, dict) or any(k not in ck for k in RESUME_KEYS):
            print(f"note: skipped {path}: not a full training checkpoint (no optimizer or RNG state)")
            continue
        if ck.get("kind") != kind:
            raise UserError(f"--resume: {path} was written by {KINDS.get(ck.get('kind'), 'another program')}, "
                            f"not {KINDS[kind]}; resume a folder of the same stage, or drop --resume")
        return path, ck
    raise UserError(f"--resume: no checkpoint to continue in {folder} (looked for {', '.join(patterns)}); "
                    "drop --resume to start a new run")


class StopOnSignal:
    """Turn Ctrl-C (SIGINT) and SIGTERM into a flag the training loop checks between steps.

    The loop then finishes the step it is in and writes its checkpoint, instead of dying half way
    through an optimizer step. `restore()` puts the previous handlers back.
    """

    def __init__(self):
        self.now = False
        self._old = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum, frame):
        self.now = True

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def rng_state() -> dict:
    """Everything random in training: Python's and torch's generators (CUDA's too when present)."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_as_tuple(state["python"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x):
    # random.setstate wants tuples all the way down; torch.load may hand back lists.
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def model_from_checkpoint(ckpt: dict, path: str = "checkpoint") -> GPT:
    """Rebuild the GPT a checkpoint was trained with and load its weights."""
    try:
        model = GPT(GPTConfig(**ckpt["model_config"]))
    except (KeyError, TypeError) as e:
        raise UserError(f"{path} is not a reft_mini checkpoint (no model config: {e})") from None
    load_weights(model, ckpt["model"], path)
    return model


def load_weights(model: GPT, state: dict, path: str = "checkpoint") -> None:
    """Load a state dict, turning a shape mismatch into one readable line."""
    own = model.state_dict()
    for k, v in state.items():
        if k in own and own[k].shape != v.shape:
            raise UserError(f"{path} was trained with another model shape ({k}: {tuple(v.shape)} vs "
                            f"{tuple(own[k].shape)}); use the same --model preset or a matching checkpoint")
    missing, unexpected = model.load_state_dict({k: v.to(own[k].dtype) if k in own else v
                                                 for k, v in state.items()}, strict=False)
    missing = [k for k in missing if not k.startswith("value_head")]
    if missing or unexpected:
        raise UserError(f"{path} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]})")
