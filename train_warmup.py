"""Stage 1 of ReFT: the supervised warm-up (SFT) on (question, chain of thought) pairs.

ReFT (Luong et al., 2024, Sec. 3, "Warm-up") first fine-tunes the model for a few epochs on the
annotated training set, with the usual next-token cross-entropy on the *answer* tokens only:

    L_SFT(theta) = - E_(x,e)~D  sum_t log pi_theta(e_t | x, e_<t)        (x = question, e = CoT)

The paper runs RL from the epoch-2 checkpoint of a 40-epoch schedule, and uses the whole schedule
(its best epoch) as the SFT baseline. This script writes one checkpoint per epoch so both are at hand.

    python train_warmup.py                        # offline default: synthetic data, demo GPT, CPU
    python train_warmup.py --epochs=2 --out_dir=runs/w2
    python train_warmup.py --resume               # continue exactly where runs/warmup stopped
    python train_warmup.py --help                 # every option, its default and meaning
    torchrun --nproc_per_node=2 train_warmup.py   # data parallel (gloo on CPU, NCCL on GPUs)

Reading order: Config -> main() -> train loop. The model is reft_mini/model.py, the data and its
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
from reft_mini.checkpoint import (StopOnSignal, load_checkpoint, load_weights, model_from_checkpoint, rng_state,
                                  save_checkpoint, set_rng_state)
from reft_mini.config import UserError, parse_config
from reft_mini.evaluation import greedy_accuracy
from reft_mini.kernels import token_logprobs
from reft_mini.metrics import MetricsLog, plot_curves, truncate_after
from reft_mini.model import GPT, config_from_preset
from reft_mini.tokenizer import get_tokenizer


@dataclass
class Config:
    """ReFT stage 1: supervised warm-up on (question, chain-of-thought) pairs, loss on the answer only."""
    # --- data
    dataset: str = "synthetic"          # synthetic | gsm8k | svamp | mathqa | reft (ReFT's JSON files)
    data_path: str | None = None        # local file/folder for a real data set (works offline)
    cot: str = "program"                # chain-of-thought style: program (P-CoT, the default demo) or nl (N-CoT)
    train_split: str = "train"          # split to train on
    eval_split: str = "test"            # held-out split for loss and greedy accuracy
    max_train: int | None = None        # use only the first N training questions (None = all)
    # --- model
    model: str = "demo"                 # size preset: tiny | demo | small | gpt2 (see reft_mini/model.py)
    init: str = "auto"                  # auto (shipped base model) | none (random) | a .pt checkpoint | a GPT-2 folder
    tokenizer: str = "reft_mini"        # reft_mini (shipped, offline) or gpt2
    tokenizer_path: str | None = None   # local GPT-2 folder with vocab.json + merges.txt (for gpt2 offline)
    dropout: float = 0.0                # dropout in the GPT (0 for a from-scratch tiny model)
    # --- optimisation
    epochs: int = 2                     # passes over the training set (the paper's warm-up: 2 of 40)
    batch_size: int = 32                # questions per optimizer step, over all ranks and accumulation
    grad_accum: int = 1                 # micro-batches per step (same result, less memory)
    lr: float = 2e-3                    # peak learning rate (the paper: 1e-5 for 7B models)
    warmup_frac: float = 0.05           # share of steps with linearly rising lr (the paper: 10%)
    schedule: str = "cosine"            # lr decay after warm-up: cosine | linear | constant
    min_lr_frac: float = 0.1            # lr at the end, as a fraction of the peak
    weight_decay: float = 0.1           # AdamW decay, on weight matrices only
    grad_clip: float = 1.0              # clip the global gradient norm (the paper: 1.0)
    # --- evaluation and logging
    eval_every: int = 100               # steps between evaluations (and at each epoch end)
    eval_questions: int = 200           # held-out questions for loss and greedy accuracy
    max_new_tokens: int = 160           # longest generated answer during evaluation
    out_dir: str = "runs/warmup"        # checkpoints epoch{N}.pt, latest.pt, best.pt, metrics.jsonl, curves.png
    resume: bool = False                # continue from out_dir/latest.pt (same config)
    max_steps: int | None = None        # stop after this many steps (smoke tests)
    minutes: float | None = None        # stop after this many minutes of training (evaluation excluded)
    seed: int = 1337                    # seeds data order, init and dropout
    device: str = "auto"                # auto | cpu | cuda
    compile: bool = False               # torch.compile the model and the fused log-prob kernel (CUDA; slow to start on CPU)
    bf16: bool | None = None            # bf16 autocast for the forward passes (None: on with CUDA, off on CPU)
    progress: bool = True               # tqdm progress bar


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
        model = GPT.from_pretrained(init)
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
    if cfg.cot not in data.STYLES:
        raise UserError(f"--cot={cfg.cot}: choose one of {', '.join(data.STYLES)}")
    if cfg.batch_size % (info.world_size * cfg.grad_accum):
        raise UserError(f"--batch_size={cfg.batch_size} must divide by ranks x grad_accum "
                        f"= {info.world_size * cfg.grad_accum}")
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

    # ---- data: one prompt format (data.py), answer-only loss mask
    enc = get_tokenizer(cfg.tokenizer, cfg.tokenizer_path)
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
    step, best_acc, history, train_seconds = 0, -1.0, [], 0.0
    if cfg.resume:
        ck = load_checkpoint(out / "latest.pt", map_location=info.device)
        if ck.get("model_config") != asdict(model.config):
            raise UserError(f"{out / 'latest.pt'} was trained with another model shape; "
                            "use the same --model/--init as the run you resume")
        load_weights(model, ck["model"], str(out / "latest.pt"))
        opt.load_state_dict(ck["optimizer"])
        step, best_acc, history = ck["step"], ck["best_acc"], ck["history"]
        train_seconds = ck.get("train_seconds", 0.0)
        set_rng_state(ck["rng"])
        truncate_after(out / "metrics.jsonl", "step", step)
        if info.is_main:
            print(f"resumed from {out / 'latest.pt'} at step {step}")
    compiled = torch.compile(model) if cfg.compile else model  # the kernel: sft_loss_sum(..., cfg.compile)
    log = MetricsLog(out / "metrics.jsonl", resume=cfg.resume, enabled=info.is_main)
    if info.is_main:
        print(f"sft: {len(train_ex)} training examples ({cfg.dataset}/{cfg.cot}), "
              f"{model.num_params() / 1e6:.2f} M parameters, {cfg.epochs} epochs x {steps_per_epoch} steps, "
              f"device {info.device}, {info.world_size} process(es)")

    def checkpoint(name: str, epoch: float, acc: float | None = None):
        if not info.is_main:
            return
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
    tokens_seen, last_acc = 0, None

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
            if not math.isfinite(loss_total):
                raise UserError(f"loss became {loss_total} at step {step}; lower --lr "
                                f"(now {cfg.lr}) or check the data")
            gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
            opt.step()
            opt.zero_grad(set_to_none=True)
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
        plot_curves(out / "metrics.jsonl", out / "curves.png",
                    [("training loss", ["loss"]), ("held-out loss", ["eval_loss"]),
                     ("held-out greedy accuracy", ["eval_acc"])], x="epoch", title="ReFT warm-up (SFT)")
        acc = "not measured" if last_acc is None else f"{last_acc:.1%} (best {best_acc:.1%})"
        print(f"done: step {step}, held-out greedy accuracy {acc}; checkpoints in {out}/")
    dist.teardown()
    return {"step": step, "eval_acc": last_acc, "best_acc": best_acc, "history": history}


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("REFT_THREADS", torch.get_num_threads())))
    dist.run_script(lambda: main(parse_config(Config, prog="train_warmup.py")))  # torchrun-safe exit: see dist.py
