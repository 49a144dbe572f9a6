"""Stage 0: pretrain the small base model that stands in for ReFT's pretrained LLM. Not part of ReFT.

ReFT (Luong et al., 2024, Sec. 3) does not start from scratch: it fine-tunes a *pretrained* LLM
(CodeLLaMA, Galactica) that can already read a story, copy its quantities and do arithmetic. Its two
stages -- the supervised warm-up (train_warmup.py) and PPO (train_ppo.py) -- only teach that model
the task. A GPT trained from nothing on a few thousand annotated questions has none of those skills,
and then neither SFT nor RL gets far in minutes. So this project makes its own stand-in once and
ships it as data/base/base.pt (1.5 M parameters, float16): a plain language model trained here on
an endless stream of fresh synthetic "skill" text -- arithmetic facts ("17+25=42"), 1-2-step
problems with their N-CoT or P-CoT, quantity-copying drills -- but never on the annotated training
questions, and never on a test question (data/synthetic/synthetic.py, `skill_corpus`).

This script is the tool that made that file, kept beside it. Nothing in ReFT depends on how the base
was made: any checkpoint of the same shape could take its place (train_warmup.py --init=PATH).

Regenerate the shipped file (train, then write the float16 copy the warm-up starts from):

    python data/base/pretrain.py --export=data/base/base.pt

The shipped file came from this very recipe: 2,369 of the 2,400 scheduled steps of 32 rows x 256
packed tokens in 50 minutes of training, on one thread (REFT_THREADS=1) with other jobs sharing the
machine's 2 cores at times; the time limit (--minutes=50) stopped it just before the schedule's end.
Evaluation time is not counted in those minutes. (The first shipped base, trained with the first
1024-token tokenizer, reached 1,579 steps in the same 50 minutes.) Other options:

    python data/base/pretrain.py --steps=200 --minutes=none       # a short run, no time limit
    python data/base/pretrain.py --resume                         # continue runs/base after Ctrl-C
    python data/base/pretrain.py --resume --export=data/base/base.pt   # export a finished runs/base
    python data/base/pretrain.py --help                           # every option, its default and meaning

Reading order: Config -> validate() -> pretraining_rows() -> main(). The model is reft_mini/model.py; the loss,
optimizer and lr schedule are the warm-up's own (imported from train_warmup.py), so stage 0 and
stage 1 differ only in their data: here every token of fresh text counts, there only the answer.
"""

from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# Run as `python data/base/pretrain.py` from anywhere: put the repository root (for reft_mini and
# train_warmup) and the synthetic generator's folder (for `synthetic`) on the import path.
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "data" / "synthetic"))
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

import synthetic  # noqa: E402  (data/synthetic/synthetic.py: the skill text)
from reft_mini import data, dist  # noqa: E402
from reft_mini.checkpoint import (StopOnSignal, first_non_finite, load_checkpoint, load_weights,  # noqa: E402
                                  remove_stale_tmp, resume_checkpoint, rng_state, save_checkpoint, set_rng_state)
from reft_mini.config import (SEED, UserError, above, at_least, between, check, check_writable_dir,  # noqa: E402
                              device_name, one_of, parse_config, resume_changes)
from reft_mini.evaluation import greedy_accuracy  # noqa: E402
from reft_mini.metrics import MetricsLog, duration, plot_curves, summary_outputs, truncate_after  # noqa: E402
from reft_mini.model import GPT, PRESETS, config_from_preset  # noqa: E402
from reft_mini.tokenizer import get_tokenizer  # noqa: E402
from train_warmup import SCHEDULES, clipped_step, encode_all, heldout_loss, lr_at, make_optimizer, sft_loss_sum  # noqa: E402


@dataclass
class Config:
    """Stage 0 (not part of ReFT): pretrain the base model on fresh synthetic skill text."""
    # --- model (always a fresh random init; the tokenizer is the shipped reft_mini BPE)
    model: str = "demo"                 # The model size: tiny (0.05 M parameters), demo (1.5 M, the shipped base),
                                        # small (6.6 M) or gpt2 (124 M).
    # --- data: an endless stream of fresh text, packed into rows
    batch_size: int = 32                # Rows per optimizer step.
    row_len: int = 256                  # Tokens per row, at most the model's context; texts are packed end to end.
    # --- optimisation (the warm-up's AdamW and lr schedule)
    steps: int = 2400                   # Optimizer steps the learning-rate schedule spans (the shipped run stopped
                                        # at step 1,579, when --minutes ran out).
    lr: float = 2e-3                    # The peak learning rate.
    warmup_frac: float = 0.05           # The share of steps over which the learning rate rises linearly.
    schedule: str = "cosine"            # How the learning rate decays after its warm-up: cosine, linear or constant.
    min_lr_frac: float = 0.1            # The final learning rate, as a fraction of the peak.
    weight_decay: float = 0.1           # AdamW weight decay, applied to weight matrices only.
    grad_clip: float = 1.0              # Clip the global gradient norm to this value.
    # --- evaluation, checkpoints and logging
    cot: str = "nl"                     # The chain-of-thought style of the held-out evaluation, nl or program;
                                        # training sees both.
    eval_every: int = 200               # Steps between held-out loss and greedy accuracy; the end is evaluated too.
    eval_questions: int = 200           # Questions of the synthetic test split to evaluate on.
    max_new_tokens: int = 160           # The longest answer generated during evaluation, in tokens.
    save_every: int = 200               # Steps between saves of out_dir/latest.pt, so a killed run loses at most
                                        # this many steps.
    out_dir: str = "runs/base"          # The output folder: latest.pt, metrics.jsonl, curves.png.
    resume: bool = False                # Continue the run in --out_dir from its latest.pt, with its settings.
    max_steps: int | None = None        # Stop after this many steps, while the schedule still spans --steps (none:
                                        # run the whole schedule).
    minutes: float | None = 50.0        # Stop after this many minutes of training, evaluation excluded (none: no
                                        # limit).
    export: str | None = None           # At the end, also write the float16 base file here, e.g. data/base/base.pt.
    seed: int = 1337                    # The seed of the initial weights and of the text stream.
    device: str = "auto"                # Where to train: auto (CUDA when there is a GPU), cpu, cuda or cuda:N.
    progress: bool = True               # Show a progress bar.


# What each option may be, checked right after parsing (config.check); None always passes.
RULES = {
    "model": one_of(*PRESETS), "schedule": one_of(*SCHEDULES), "cot": one_of(*data.STYLES),
    "device": device_name, "seed": SEED, "batch_size": at_least(1), "row_len": at_least(2), "steps": at_least(1),
    "eval_every": at_least(1), "eval_questions": at_least(1), "max_new_tokens": at_least(1),
    "save_every": at_least(1), "max_steps": at_least(1), "minutes": above(0), "lr": above(0),
    "grad_clip": above(0), "weight_decay": at_least(0), "warmup_frac": between(0, 1), "min_lr_frac": between(0, 1),
}


def validate(cfg: Config, given=frozenset()) -> None:
    """Refuse a mistake on the command line before anything is loaded or written (one line, exit 2)."""
    check(cfg, RULES)
    block = config_from_preset(cfg.model).block_size
    if cfg.row_len > block:
        raise UserError(f"--row_len={cfg.row_len} is longer than the {cfg.model} model's context ({block} tokens); "
                        f"use at most --row_len={block}")
    check_writable_dir("out_dir", cfg.out_dir)
    if cfg.export is not None:
        if Path(cfg.export).is_dir():
            raise UserError(f"--export={cfg.export} is a folder; name the file to write, e.g. data/base/base.pt")
        check_writable_dir("export", str(Path(cfg.export).parent))


def pretraining_rows(enc, seed: int, step: int, n: int, row_len: int) -> list[tuple[list[int], list[int]]]:
    """The batch of one step: n rows of row_len tokens of fresh skill text, loss on every token.

    Fresh text every step, so there are no epochs and nothing to overfit (hence no dropout). The text
    depends only on (seed, step), so a resumed run sees exactly the stream it would have seen.
    The texts are packed end to end, separated by end-of-text, and cut into rows: no padding is
    wasted (the usual way language models are pretrained; a row may start in the middle of a text).
    Each row comes with a loss mask in data.encode_sft's format (1 = predict this token); the first
    token has nothing before it to be predicted from, so it is 0.
    """
    rng = random.Random(seed * 1_000_003 + step)
    stream: list[int] = []
    while len(stream) < n * row_len:
        for text in synthetic.skill_corpus(rng, 32):
            stream += enc.encode_ordinary(text) + [enc.eot_token]
    return [(stream[i * row_len:(i + 1) * row_len], [0] + [1] * (row_len - 1)) for i in range(n)]


def export_weights(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Keep only what a later run needs to *start from* a checkpoint, weights in half precision.

    This is how data/base/base.pt is made small enough to ship (a few MB): no optimizer, no RNG,
    no value head (PPO adds a fresh one), float16 weights (loading converts them back to float32).
    """
    ck = load_checkpoint(src)
    slim = {k: ck[k] for k in ("kind", "model_config", "config", "tokenizer", "step", "train_seconds") if k in ck}
    slim["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ck["model"].items()
                     if not k.startswith("value_head")}
    return save_checkpoint(slim, dst)


def main(cfg: Config) -> dict:
    info = dist.setup(cfg.device)
    if info.world_size > 1:
        raise UserError("data/base/pretrain.py runs in one process; start it with python, not torchrun")
    device, out = info.device, Path(cfg.out_dir)
    # --resume: pick the checkpoint and compare its settings now, before anything is loaded or written.
    resumed = None
    if cfg.resume:
        ck_path, ck = resume_checkpoint(out, "base", ("latest.pt",), map_location=device)
        resumed = ck_path, ck, resume_changes(ck["config"], asdict(cfg), str(ck_path))
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

    enc = get_tokenizer("reft_mini")
    model = GPT(config_from_preset(cfg.model, vocab_size=enc.n_vocab, dropout=0.0))
    for p in model.value_head.parameters():
        p.requires_grad_(False)  # a critic belongs to PPO; a language model has none to train
    row_len = cfg.row_len  # validate() made sure it fits the model's context
    # Held-out monitor: the annotated synthetic *test* questions, which stage 0 never trains on.
    eval_problems = data.load_problems("synthetic", "test", cfg.cot)[:cfg.eval_questions]
    eval_ex = encode_all(enc, eval_problems, cfg, model.config.block_size, "held-out")
    model.to(device)
    opt = make_optimizer(model, cfg)

    step, history, train_seconds = 0, [], 0.0
    if resumed:
        ck_path, ck, changes = resumed
        if ck.get("model_config") != asdict(model.config):
            raise UserError(f"{ck_path} has another model shape; resume with the --model it was trained with")
        load_weights(model, ck["model"], str(ck_path))
        opt.load_state_dict(ck["optimizer"])
        step, history, train_seconds = ck["step"], ck["history"], ck.get("train_seconds", 0.0)
        set_rng_state(ck["rng"])
        truncate_after(out / "metrics.jsonl", "step", step)  # drop rows logged after that checkpoint
        print(f"resume: continuing from {ck_path} at step {step}" + (f"; changed: {changes}" if changes else ""))
    if out.is_dir():
        stale = remove_stale_tmp(out)
        if stale:
            print(f"note: removed {len(stale)} unfinished checkpoint write(s) of a killed run: "
                  f"{', '.join(p.name for p in stale)}")
    log = MetricsLog(out / "metrics.jsonl", resume=cfg.resume)
    print(f"stage 0: {model.num_params() / 1e6:.2f} M parameters, {cfg.steps} steps of {cfg.batch_size} x {row_len} "
          f"tokens of fresh synthetic skill text, device {device}")

    def evaluate() -> float:
        loss = heldout_loss(model, eval_ex, enc.eot_token, device)  # per answer token, as in the warm-up
        acc = greedy_accuracy(model, enc, eval_problems, cfg.cot, cfg.max_new_tokens)
        history.append({"step": step, "eval_loss": loss, "eval_acc": acc})
        log.log(step=step, eval_loss=loss, eval_acc=acc)
        return acc

    def save() -> None:
        bad = first_non_finite(model.state_dict())  # never replace a good checkpoint with NaN weights
        if bad is not None:
            raise UserError(f"weight {bad} is not a finite number after step {step}, so {out / 'latest.pt'} was not "
                            f"written; lower --lr (now {cfg.lr}) and start again")
        save_checkpoint({"kind": "base", "model_config": asdict(model.config), "model": model.state_dict(),
                         "optimizer": opt.state_dict(), "step": step, "history": history, "config": asdict(cfg),
                         "tokenizer": "reft_mini", "rng": rng_state(), "train_seconds": train_seconds,
                         "eval_acc": history[-1]["eval_acc"] if history else None}, out / "latest.pt")

    stop = StopOnSignal()  # Ctrl-C / SIGTERM: finish the current step, save latest.pt, then stop
    bar = None
    if cfg.progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.steps, initial=step, desc="stage 0", dynamic_ncols=True)
    model.train()
    try:
        while (step < cfg.steps and not stop.now and (cfg.max_steps is None or step < cfg.max_steps)
               and (cfg.minutes is None or train_seconds < 60 * cfg.minutes)):
            batch = pretraining_rows(enc, cfg.seed, step, cfg.batch_size, row_len)
            t0 = time.time()  # the clock of --minutes counts training only, not making text or evaluating
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg.steps, cfg)
            idx, targets, mask = (dist.to_device(t, device) for t in data.collate(batch, enc.eot_token))
            with dist.autocast(device):
                # Mean next-token cross-entropy over every predicted token of the batch.
                loss = sft_loss_sum(model, idx, targets, mask) / sum(sum(m[1:]) for _, m in batch)
            loss.backward()
            loss = float(loss.detach())
            gnorm = clipped_step(model, opt, loss, step, cfg)
            step += 1
            train_seconds += time.time() - t0
            log.log(step=step, loss=loss, lr=opt.param_groups[0]["lr"], grad_norm=gnorm)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                evaluate()
            if step % cfg.save_every == 0:
                save()
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{history[-1]['eval_acc']:.1%}" if history else "-")
                bar.update(1)
    finally:
        stop.restore()
        if bar is not None:
            bar.close()
    if not stop.now and cfg.max_steps is None and step > 0 and (not history or history[-1]["step"] != step):
        evaluate()  # stopped by --minutes between two evaluations: measure where it ended
    save()
    plot = plot_curves(out / "metrics.jsonl", out / "curves.png",
                       [("training loss", ["loss"]), ("held-out loss (annotated task)", ["eval_loss"]),
                        ("held-out greedy accuracy", ["eval_acc"])], x="step", title="Stage 0: the base model")
    exported = ""
    if stop.now:
        print(f"interrupted at step {step}: saved {out / 'latest.pt'}; continue with --resume")
    elif cfg.export:
        dst = export_weights(out / "latest.pt", cfg.export)
        exported = f", base model {dst}"
        print(f"exported {dst} ({dst.stat().st_size / 1e6:.1f} MB, float16)")
    acc = history[-1]["eval_acc"] if history else None
    measured = "not measured" if acc is None else f"{acc:.1%} ({len(eval_problems)} questions)"
    print(f"summary: stage 0 {step} step{'s' * (step != 1)}, {duration(train_seconds)} of training; "
          f"held-out greedy accuracy {measured}; "
          + summary_outputs(out / "latest.pt", out / "metrics.jsonl", plot) + exported)
    dist.teardown()
    return {"step": step, "eval_acc": acc, "history": history}


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("REFT_THREADS", torch.get_num_threads())))
    # validate runs right after parsing, before anything is loaded or written.
    dist.run_script(lambda: main(parse_config(Config, prog="data/base/pretrain.py", validate=validate)))
