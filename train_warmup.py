"""Stage 1 of ReFT: the supervised warm-up (SFT) on (question, chain of thought) pairs.

ReFT (Luong et al., 2024, Sec. 3, "Warm-up") first fine-tunes the model for a few epochs on the
annotated training set, with the usual next-token cross-entropy on the *answer* tokens only:

    L_SFT(theta) = - E_(x,e)~D  sum_t log pi_theta(e_t | x, e_<t)        (x = question, e = CoT)

The paper runs RL from the epoch-2 checkpoint of a 40-epoch schedule, and uses the whole schedule
(its best epoch) as the SFT baseline. This script writes one checkpoint per epoch so both are at hand,
and latest.pt every --save_every steps: Ctrl-C and SIGTERM save before stopping, and a run killed
without warning (SIGKILL, a power cut) continues with --resume from at most that many steps back.

    python train_warmup.py                        # offline default: synthetic data, demo GPT, CPU
    python train_warmup.py --epochs=2 --out_dir=runs/w2
    python train_warmup.py --resume               # continue exactly where runs/warmup stopped
    python train_warmup.py --help                 # every option, its default and meaning
    torchrun --nproc_per_node=2 train_warmup.py   # data parallel (gloo on CPU, NCCL on GPUs)

Reading order: Config -> validate() -> main() -> train loop. The model is reft_mini/model.py, the data and its
answer-only loss mask reft_mini/data.py, the log-probs reft_mini/kernels.py.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from reft_mini import data, dist
from reft_mini.checkpoint import (StopOnSignal, first_non_finite, load_checkpoint, load_weights, model_from_checkpoint,
                                  remove_stale_tmp, resume_checkpoint, rng_state, save_checkpoint, set_rng_state)
from reft_mini.config import (SEED, UserError, above, at_least, below, between, check, check_writable_dir, device_name,
                              one_of, parse_config, resume_changes)
from reft_mini.evaluation import greedy_accuracy
from reft_mini.kernels import token_logprobs
from reft_mini.metrics import MetricsLog, duration, plot_curves, summary_outputs, truncate_after
from reft_mini.model import GPT, PRESETS, config_from_preset
from reft_mini.tokenizer import TokenizerError, get_tokenizer


@dataclass
class Config:
    """ReFT stage 1: supervised warm-up on (question, chain-of-thought) pairs, loss on the answer only."""
    # --- data
    dataset: str = "synthetic"          # The data set: synthetic, gsm8k, svamp, mathqa, mathqa-numeric or reft
                                        # (ReFT's own JSON files).
    data_path: str | None = None        # A local file or folder that holds a real data set (works offline).
    cot: str = "program"                # The chain-of-thought style: program (P-CoT, the demo default) or nl (N-CoT).
    train_split: str = "train"          # The split to train on.
    eval_split: str = "test"            # The held-out split that held-out loss and greedy accuracy are measured on.
    max_train: int | None = None        # Train on the first N training questions only (none: all of them).
    # --- model
    model: str = "demo"                 # The size of a fresh model, used with --init=none: tiny (0.05 M parameters),
                                        # demo (1.5 M), small (6.6 M) or gpt2 (124 M).
    init: str = "auto"                  # The starting weights: auto (the shipped base model data/base/base.pt), none
                                        # (random), a .pt checkpoint, or a local Hugging Face GPT-2 folder.
    tokenizer: str = "reft_mini"        # The tokenizer: reft_mini (shipped, works offline) or gpt2.
    tokenizer_path: str | None = None   # A local GPT-2 folder with vocab.json and merges.txt, to use gpt2 offline.
    dropout: float = 0.0                # Dropout of a fresh model, used with --init=none; keep 0 for small data.
    # --- optimisation
    epochs: int = 2                     # Passes over the training set (the paper's warm-up: 2 of 40).
    batch_size: int = 32                # Questions per optimizer step, over all processes and accumulation steps.
    grad_accum: int = 1                 # Micro-batches per step: the same result in less memory; must divide
                                        # --batch_size.
    lr: float = 2e-3                    # The peak learning rate (the paper: 1e-5, for 7B models).
    warmup_frac: float = 0.05           # The share of steps over which the learning rate rises linearly (the paper:
                                        # 0.1).
    schedule: str = "cosine"            # How the learning rate decays after its warm-up: cosine, linear or constant.
    min_lr_frac: float = 0.1            # The final learning rate, as a fraction of the peak.
    weight_decay: float = 0.1           # AdamW weight decay, applied to weight matrices only.
    grad_clip: float = 1.0              # Clip the global gradient norm to this value (the paper: 1.0).
    # --- evaluation, checkpoints and logging
    eval_every: int = 100               # Steps between evaluations; the end of every epoch is evaluated too.
    eval_questions: int = 200           # Held-out questions behind the held-out loss and greedy accuracy.
    max_new_tokens: int = 128           # The longest answer generated during evaluation, in tokens (the longest
                                        # synthetic P-CoT answer has 100).
    out_dir: str = "runs/warmup"        # The output folder: epochN.pt, latest.pt, best.pt, metrics.jsonl, curves.png.
    save_every: int = 50                # Steps between saves of latest.pt (every epoch's end saves too), so a
                                        # killed run loses at most this many steps.
    resume: bool = False                # Continue the run in --out_dir from its newest checkpoint, with its settings.
    max_steps: int | None = None        # Stop after this many steps (none: train every epoch).
    minutes: float | None = None        # Stop after this many minutes of training, evaluation excluded (none: no
                                        # limit).
    seed: int = 1337                    # The seed of the data order, the initial weights and dropout.
    device: str = "auto"                # Where to train: auto (CUDA when there is a GPU), cpu, cuda or cuda:N.
    compile: bool = False               # Compile the model and the log-prob kernel with torch.compile; pays off on
                                        # CUDA, slow to start on CPU.
    bf16: bool | None = None            # Run the forward passes under bf16 autocast (none: on with CUDA, off on CPU).
    progress: bool = True               # Show a progress bar.


SCHEDULES = ("cosine", "linear", "constant")

# What each option may be, checked right after parsing (config.check). None always passes: it means
# "not set" (no limit). Checks that involve several options or files are in validate() below.
RULES = {
    "dataset": one_of(*data.DATASETS), "cot": one_of(*data.STYLES), "model": one_of(*PRESETS),
    "tokenizer": one_of("reft_mini", "gpt2"), "schedule": one_of(*SCHEDULES), "device": device_name,
    "max_train": at_least(1), "epochs": at_least(1), "batch_size": at_least(1), "grad_accum": at_least(1),
    "eval_every": at_least(1), "eval_questions": at_least(1), "max_new_tokens": at_least(1),
    "save_every": at_least(1), "max_steps": at_least(1), "minutes": above(0), "seed": SEED,
    "lr": above(0), "grad_clip": above(0), "weight_decay": at_least(0), "dropout": (at_least(0), below(1)),
    "warmup_frac": between(0, 1), "min_lr_frac": between(0, 1),
}


def validate(cfg: Config, given=frozenset()) -> None:
    """Refuse a mistake on the command line before anything is loaded or written (one line, exit 2).

    given: the options the user typed (parse_config), to tell an explicit --model from the default."""
    check(cfg, RULES)
    if cfg.batch_size % cfg.grad_accum:
        raise UserError(f"--batch_size={cfg.batch_size} must divide by --grad_accum={cfg.grad_accum}")
    if cfg.init.lower() != "none":
        # A checkpoint brings its own shape and modules: these options would be silently ignored.
        ignored = [f"--{k}" for k in ("model", "dropout") if k in given]
        if ignored:
            raise UserError(f"{' and '.join(ignored)} only shape a fresh model, but --init={cfg.init} brings its "
                            f"own; drop {' and '.join(ignored)}, or add --init=none to start from random weights")
    if cfg.init.lower() not in ("auto", "none"):
        init = Path(cfg.init)
        if not init.exists():
            raise UserError(f"--init={cfg.init}: not found; give a .pt checkpoint, a Hugging Face GPT-2 folder, "
                            "auto (the shipped base model) or none (random weights)")
        if init.is_dir() and not (init / "config.json").is_file():
            raise UserError(f"--init={cfg.init}: a folder must be a Hugging Face GPT-2 checkpoint with config.json "
                            "and model.safetensors (or pytorch_model.bin)")
    for name in ("data_path", "tokenizer_path"):
        if getattr(cfg, name) is not None and not Path(getattr(cfg, name)).exists():
            raise UserError(f"--{name}={getattr(cfg, name)}: not found")
    check_writable_dir("out_dir", cfg.out_dir)
    if (not cfg.resume and cfg.init.lower() not in ("auto", "none")
            and Path(cfg.init).resolve().parent == Path(cfg.out_dir).resolve()):
        raise UserError(f"--out_dir={cfg.out_dir} holds the --init checkpoint, which this run would overwrite; "
                        "choose another --out_dir")


def lr_at(step: int, total: int, cfg: Config) -> float:
    """Linear warm-up to cfg.lr, then decay to cfg.lr * min_lr_frac."""
    warm = max(1, int(cfg.warmup_frac * total))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "constant":
        return cfg.lr
    t = min(1.0, (step - warm) / max(1, total - warm))
    shape = 0.5 * (1 + math.cos(math.pi * t)) if cfg.schedule == "cosine" else 1 - t
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * shape)


def make_optimizer(model: GPT, cfg: Config) -> torch.optim.AdamW:
    # Decay only matrices (attention/MLP weights, embeddings); biases and LayerNorm gains stay free.
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))


REPO = Path(__file__).resolve().parent
BASE_MODEL = REPO / "data" / "base" / "base.pt"  # the shipped stage-0 model, made by data/base/pretrain.py


def build_model(cfg: Config, vocab_size: int) -> GPT:
    """The starting point: ReFT fine-tunes a *pretrained* model; ours is the shipped stage-0 base."""
    init = cfg.init
    if init == "auto":
        init = str(BASE_MODEL)
        if not BASE_MODEL.is_file():
            raise UserError(f"the base model {BASE_MODEL} is missing: regenerate it with "
                            "`python data/base/pretrain.py --export=data/base/base.pt` "
                            "or train from scratch with --init=none")
    if init.lower() == "none":
        return GPT(config_from_preset(cfg.model, vocab_size=vocab_size, dropout=cfg.dropout))
    init = Path(init)
    if init.is_dir():                                   # a Hugging Face GPT-2 folder
        try:
            model = GPT.from_pretrained(init)
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"--init={init}: cannot load it as a GPT-2 folder ({e})") from None
    else:                                               # one of our own checkpoints (e.g. a base model)
        model = model_from_checkpoint(load_checkpoint(init), str(init))
    if model.config.vocab_size != vocab_size:
        raise UserError(f"--init {init} has a vocabulary of {model.config.vocab_size} tokens but tokenizer "
                        f"{cfg.tokenizer!r} has {vocab_size}; use the tokenizer it was trained with")
    model.config.dropout = cfg.dropout
    return model


def encode_all(enc, problems, cfg: Config, block_size: int, what: str):
    """Tokenise every (question, CoT) pair; problems longer than the context are counted and left out."""
    examples, too_long = [], 0
    for p in problems:
        ids, mask = data.encode_sft(enc, p, cfg.cot, max_len=10 ** 9)
        if len(ids) > block_size:
            too_long += 1
            continue
        examples.append((ids, mask))
    if too_long:
        print(f"note: {too_long} of {len(problems)} {what} examples are longer than block_size={block_size} "
              "tokens and are left out")
    if not examples:
        raise UserError(f"no {what} example fits block_size={block_size}")
    return examples


def clipped_step(model: GPT, opt, loss: float, step: int, cfg) -> float:
    """Clip the global gradient norm and take the optimizer step; returns the norm before clipping.
    A non-finite loss or norm stops the run with one line instead: clipping an infinite norm, or
    stepping with NaN gradients, would turn every weight into NaN."""
    if not math.isfinite(loss):
        raise UserError(f"loss became {loss} at step {step}; lower --lr (now {cfg.lr}) or check the data")
    gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
    if not math.isfinite(gnorm):
        raise UserError(f"the gradient norm became {gnorm} at step {step}; lower --lr (now {cfg.lr})")
    opt.step()
    opt.zero_grad(set_to_none=True)
    return gnorm


def sft_loss_sum(model: GPT, idx, targets, loss_mask, compile: bool = False):
    """Sum over answer tokens of -log p(token); the caller divides by the global token count.
    compile: run the fused log-prob kernel through torch.compile (kernels.py)."""
    h = model(idx)                                                     # (B,T,C), right padding: causal is enough
    logp, _ = token_logprobs(h, model.lm_weight(), targets, compile=compile)  # (B,T) log p(next token)
    return -(logp * loss_mask).sum()


@torch.no_grad()
def heldout_loss(model: GPT, examples, pad_id: int, device, batch_size: int = 64) -> float:
    model.eval()
    total, count = 0.0, 0.0
    for i in range(0, len(examples), batch_size):
        idx, targets, mask = (t.to(device) for t in data.collate(examples[i:i + batch_size], pad_id))
        total += float(sft_loss_sum(model, idx, targets, mask))
        count += float(mask.sum())
    model.train()
    return total / max(count, 1.0)


def main(cfg: Config) -> dict:
    info = dist.setup(cfg.device)
    out = Path(cfg.out_dir)
    if cfg.batch_size % (info.world_size * cfg.grad_accum):
        raise UserError(f"--batch_size={cfg.batch_size} must divide by ranks x grad_accum "
                        f"= {info.world_size * cfg.grad_accum}")
    # --resume: pick the checkpoint and compare its settings now, before minutes of loading.
    resumed = None
    if cfg.resume:
        ck_path, ck = resume_checkpoint(out, "warmup", ("latest.pt", "epoch*.pt"), map_location=info.device)
        resumed = ck_path, ck, resume_changes(ck["config"], asdict(cfg), str(ck_path))
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

    # ---- data: one prompt format (data.py), answer-only loss mask
    try:
        enc = get_tokenizer(cfg.tokenizer, cfg.tokenizer_path)
    except TokenizerError as e:
        raise UserError(str(e)) from None
    train_problems = data.load_problems(cfg.dataset, cfg.train_split, cfg.cot, cfg.data_path)
    if cfg.max_train:
        train_problems = train_problems[:cfg.max_train]
    eval_problems = data.load_problems(cfg.dataset, cfg.eval_split, cfg.cot, cfg.data_path)[:cfg.eval_questions]

    # ---- model and optimizer (or everything from the last checkpoint with --resume)
    model = build_model(cfg, enc.n_vocab)
    for p in model.value_head.parameters():
        p.requires_grad_(False)  # the critic is PPO's business
    block = model.config.block_size
    train_ex = encode_all(enc, train_problems, cfg, block, "training")
    eval_ex = encode_all(enc, eval_problems, cfg, block, "held-out")
    model.to(info.device)
    opt = make_optimizer(model, cfg)
    steps_per_epoch = len(train_ex) // cfg.batch_size
    if steps_per_epoch == 0:
        raise UserError(f"{len(train_ex)} training examples are fewer than --batch_size={cfg.batch_size}")
    total_steps = steps_per_epoch * cfg.epochs
    step, best_acc, history, train_seconds, last_acc = 0, -1.0, [], 0.0, None
    if resumed:
        ck_path, ck, changes = resumed
        if ck.get("model_config") != asdict(model.config):
            raise UserError(f"{ck_path} was trained with another model shape; "
                            "use the same --model/--init as the run you resume")
        load_weights(model, ck["model"], str(ck_path))
        opt.load_state_dict(ck["optimizer"])
        step, best_acc, history = ck["step"], ck["best_acc"], ck["history"]
        train_seconds = ck.get("train_seconds", 0.0)
        last_acc = history[-1]["eval_acc"] if history else None
        set_rng_state(ck["rng"])
        if info.is_main:
            truncate_after(out / "metrics.jsonl", "step", step)  # what was logged after that checkpoint is redone
            print(f"resume: continuing from {ck_path} at step {step} (epoch {step / steps_per_epoch:.2f})"
                  + (f"; changed: {changes}" if changes else ""))
    if info.is_main and out.is_dir():
        stale = remove_stale_tmp(out)
        if stale:
            print(f"note: removed {len(stale)} unfinished checkpoint write(s) of a killed run: "
                  f"{', '.join(p.name for p in stale)}")
    compiled = torch.compile(model) if cfg.compile else model  # the kernel: sft_loss_sum(..., cfg.compile)
    log = MetricsLog(out / "metrics.jsonl", resume=cfg.resume, enabled=info.is_main)
    if info.is_main:
        print(f"sft: {len(train_ex)} training examples ({cfg.dataset}/{cfg.cot}), "
              f"{model.num_params() / 1e6:.2f} M parameters, {cfg.epochs} epochs x {steps_per_epoch} steps, "
              f"device {info.device}, {info.world_size} process(es)")

    def checkpoint(name: str, epoch: float, acc: float | None = None):
        if not info.is_main:
            return
        # Never replace a good checkpoint with weights that are not numbers (save_checkpoint checks too;
        # here the message can say when it happened and what to change).
        bad = first_non_finite(model.state_dict())
        if bad is not None:
            raise UserError(f"weight {bad} is not a finite number after step {step}, so {out / name} was not "
                            f"written; lower --lr (now {cfg.lr}) and start again")
        save_checkpoint({
            "kind": "warmup", "model_config": asdict(model.config), "model": model.state_dict(),
            "optimizer": opt.state_dict(), "step": step, "epoch": epoch, "best_acc": best_acc,
            "history": history, "config": asdict(cfg), "tokenizer": cfg.tokenizer, "rng": rng_state(),
            "eval_acc": acc, "train_seconds": train_seconds,
        }, out / name)

    def evaluate(epoch: float) -> float:
        loss = heldout_loss(model, eval_ex, enc.eot_token, info.device)
        acc = greedy_accuracy(model, enc, eval_problems, cfg.cot, cfg.max_new_tokens)
        history.append({"step": step, "epoch": epoch, "eval_loss": loss, "eval_acc": acc})
        log.log(step=step, epoch=round(epoch, 3), eval_loss=loss, eval_acc=acc)
        return acc

    stop = StopOnSignal()  # Ctrl-C / SIGTERM: finish the current step, save latest.pt, then stop

    bar = None
    if cfg.progress and info.is_main:
        from tqdm import tqdm
        bar = tqdm(total=total_steps, initial=step, desc="sft", dynamic_ncols=True)
    micro = cfg.batch_size // info.world_size // cfg.grad_accum   # questions per forward pass on this rank
    model.train()
    tokens_seen = 0

    def keep_going() -> bool:
        go = (step < total_steps and not stop.now and (cfg.max_steps is None or step < cfg.max_steps)
              and (cfg.minutes is None or train_seconds < 60 * cfg.minutes))
        # Under DDP all ranks must stop together (their clocks and signals differ), else one waits forever.
        return bool(dist.all_reduce_sum(torch.tensor(float(not go)), info) == 0) if info.enabled else go

    try:
        while keep_going():
            epoch, in_epoch = divmod(step, steps_per_epoch)
            # The data order depends only on (seed, epoch): a resumed run replays the same batches.
            order = torch.randperm(len(train_ex), generator=torch.Generator().manual_seed(cfg.seed + epoch))
            batch_ids = order[in_epoch * cfg.batch_size:(in_epoch + 1) * cfg.batch_size].tolist()
            batch = [train_ex[i] for i in batch_ids]
            t_step = time.time()
            # Normalise by the answer tokens of the whole global batch, so that 1 process x 32 questions
            # and 2 processes x 16 (or 4 accumulation steps x 8) compute exactly the same gradient.
            n_tokens = sum(sum(m[1:]) for _, m in batch)
            mine = batch[info.rank::info.world_size]
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total_steps, cfg)
            loss_total = 0.0
            for a in range(cfg.grad_accum):
                idx, targets, mask = (dist.to_device(t, info.device)
                                      for t in data.collate(mine[a * micro:(a + 1) * micro], enc.eot_token))
                with dist.autocast(info.device, cfg.bf16):
                    loss = sft_loss_sum(compiled, idx, targets, mask, cfg.compile) / n_tokens
                loss.backward()
                loss_total += float(loss.detach())
                tokens_seen += idx.numel()
            # Sum the gradients of all ranks (each already divided by the global token count).
            if info.enabled:
                for p in model.parameters():
                    if p.grad is not None:
                        torch.distributed.all_reduce(p.grad)
                loss_total = float(dist.all_reduce_sum(torch.tensor(loss_total), info))
            gnorm = clipped_step(model, opt, loss_total, step, cfg)
            step += 1
            train_seconds += time.time() - t_step
            log.log(step=step, epoch=round(step / steps_per_epoch, 3), loss=loss_total, lr=opt.param_groups[0]["lr"],
                    grad_norm=gnorm)
            end_of_epoch = step % steps_per_epoch == 0
            # Evaluate every eval_every steps and at each epoch's end, but skip a periodic evaluation
            # that would come right after an epoch-end one (e.g. steps 93 and 100): it tells nothing new.
            since = step - (history[-1]["step"] if history else 0)
            periodic = step % cfg.eval_every == 0 and since >= cfg.eval_every // 2
            if info.is_main and (periodic or end_of_epoch or step == total_steps):
                last_acc = evaluate(step / steps_per_epoch)
            if end_of_epoch and info.is_main:
                ep = step // steps_per_epoch
                if last_acc is not None and last_acc > best_acc:
                    best_acc = last_acc
                    checkpoint("best.pt", ep, last_acc)
                checkpoint(f"epoch{ep}.pt", ep, last_acc)
            # latest.pt every save_every steps and at each epoch's end, so that a run killed without warning
            # (SIGKILL, power cut) resumes from there; the last step is saved after the loop anyway.
            if (end_of_epoch or step % cfg.save_every == 0) and step not in (total_steps, cfg.max_steps):
                checkpoint("latest.pt", step / steps_per_epoch, last_acc)
            if bar is not None:
                elapsed = max(train_seconds, 1e-9)
                bar.set_postfix(loss=f"{loss_total:.3f}", acc="-" if last_acc is None else f"{last_acc:.1%}",
                                tok_s=f"{tokens_seen * info.world_size / elapsed:,.0f}")
                bar.update(1)
    finally:
        stop.restore()
        if bar is not None:
            bar.close()
    if (info.is_main and not stop.now and cfg.max_steps is None and step > 0
            and (not history or history[-1]["step"] != step)):
        last_acc = evaluate(step / steps_per_epoch)  # stopped by --minutes between evaluations
    checkpoint("latest.pt", step / steps_per_epoch, last_acc)
    if stop.now and info.is_main:
        print(f"interrupted at step {step}: saved {out / 'latest.pt'}; continue with --resume")
    if info.is_main:
        plot = plot_curves(out / "metrics.jsonl", out / "curves.png",
                           [("training loss", ["loss"]), ("held-out loss", ["eval_loss"]),
                            ("held-out greedy accuracy", ["eval_acc"])], x="epoch", title="ReFT warm-up (SFT)")
        epochs = step / steps_per_epoch
        done = (f"{epochs:g} epoch{'s' * (epochs != 1)}" if epochs == int(epochs) and step
                else f"{step} step{'s' * (step != 1)} ({epochs:.2f} epochs)")
        acc = "not measured" if last_acc is None else f"{last_acc:.1%} ({len(eval_problems)} questions)"
        print(f"summary: warm-up {done}, {duration(train_seconds)} of training; held-out greedy accuracy {acc}; "
              + summary_outputs(out / "latest.pt", out / "metrics.jsonl", plot))
    dist.teardown()
    return {"step": step, "eval_acc": last_acc, "best_acc": best_acc, "history": history}


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("REFT_THREADS", torch.get_num_threads())))
    # torchrun-safe exit: see dist.py. validate runs right after parsing, before anything is loaded.
    dist.run_script(lambda: main(parse_config(Config, prog="train_warmup.py", validate=validate)))
