"""Stage 2 of ReFT: reinforcement learning with PPO on the *same* training questions.

ReFT (Luong et al., 2024, Sec. 3, "Reinforcement Learning") keeps training the warm-up model, but no
longer on the annotated chains of thought: it samples its own, and learns from whether the final
answer is right. One iteration, as this file does it from top to bottom:

  1. ROLLOUT   take a batch of training questions; sample chains of thought from the policy
               (temperature 1.0) -> response tokens and masks                     [reft_mini/sampling.py]
  2. SCORE     extract each answer (N-CoT: after "####"; P-CoT: run the program safely) and compare it
               to the gold answer: 1 right, 0.1 wrong-but-extracted, 0 nothing    [reft_mini/reward.py]
  3. EVALUATE  log pi_old(a_t) and values V(s_t) from the states the sampler already computed, and
               log pi_ref(a_t) from one no-grad forward of the frozen reference (the warm-up model)
  4. SHAPE     per-token reward r_t = -beta * (log pi_old - log pi_ref), plus the score on the last
               token; GAE (gamma 1, lambda 1.0; the paper 0.95) -> advantages and returns; whiten
                                                                                    [reft_mini/ppo.py]
  5. LEARN     ppo_epochs passes over the batch in minibatches: clipped surrogate policy loss +
               vf_coef * clipped value loss, AdamW step with gradient clipping

The policy and the value function share one backbone (a scalar head on the GPT, new at the start of
RL, as in ReFT). A fresh head predicts garbage, and its large loss flowing into the shared backbone
would damage the policy in the first iterations; so the first `value_warmup_iters` iterations train
the value head alone (backbone detached) and the policy's learning rate then ramps up over
`lr_warmup_iters` iterations. (Without this, held-out accuracy dropped in the first iterations.)

GAE's lambda is 1.0 here, not the paper's 0.95. With lambda < 1 the advantage of a token far from the
end of the answer is built mostly from the value head's *differences* V(s_t+1) - V(s_t); the final
reward reaches it only through 0.95^k, which is 0.006 for a token 100 positions before the end. A 7B
critic makes those differences meaningful; our small head explains little of the variance, so with
0.95 the early tokens, where an answer's fate is usually decided, got mostly noise. Measured on 16
fixed training questions x 8 samples: lambda 0.95 left the share of correct samples flat (29% -> 27%
after 10 iterations) while lambda 1.0 raised it (29% -> 44%) (README, "When does ReFT beat SFT?").

    python train_ppo.py                          # from runs/warmup/latest.pt, offline default
    python train_ppo.py --cot=program --init=runs/warmup_program/latest.pt
    python train_ppo.py --resume                 # continue runs/ppo exactly
    python train_ppo.py --help
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from reft_mini import data, dist, ppo, reward
from reft_mini.checkpoint import (StopOnSignal, load_checkpoint, load_weights, model_from_checkpoint, rng_state,
                                  save_checkpoint, set_rng_state)
from reft_mini.config import UserError, parse_config
from reft_mini.evaluation import greedy_accuracy, score_completion
from reft_mini.kernels import token_logprobs
from reft_mini.metrics import MetricsLog, plot_curves, truncate_after
from reft_mini.sampling import generate
from reft_mini.tokenizer import get_tokenizer

# The paper's KL coefficients (beta): stronger for natural language than for programs.
PAPER_KL_COEF = {"nl": 0.05, "program": 0.01}


@dataclass
class Config:
    """ReFT stage 2: PPO on the same training questions, from a warm-up checkpoint."""
    init: str = "runs/warmup/latest.pt"  # warm-up checkpoint: initial policy AND the frozen reference
    # --- data (None = as in the warm-up checkpoint)
    dataset: str | None = None          # synthetic | gsm8k | svamp | mathqa | reft
    data_path: str | None = None        # local file/folder for a real data set
    cot: str | None = None              # nl (N-CoT) or program (P-CoT)
    train_split: str | None = None      # the questions RL practises on (the SFT training questions)
    eval_split: str | None = None       # held-out split for greedy accuracy
    max_train: int | None = None        # use only the first N training questions
    # --- rollouts
    questions_per_iter: int = 32        # questions per iteration (the paper: 4 per GPU x 8 GPUs)
    samples_per_question: int = 4       # chains of thought per question (the paper: 1)
    temperature: float = 1.0            # sampling temperature (the paper: 1.0, no top-k/top-p)
    max_new_tokens: int = 160           # longest chain of thought
    # --- reward
    partial_reward: float = 0.1         # score when an answer was extracted but is wrong (the paper: 0.1)
    unfinished_score: float | None = None  # score of a response that hit max_new_tokens (None: score its text)
    kl_coef: float | None = None        # beta of the per-token KL penalty (None: 0.05 N-CoT / 0.01 P-CoT)
    # --- PPO
    ppo_epochs: int = 1                 # passes over each rollout batch (the paper: 2; README says why 1)
    minibatch_size: int = 64            # responses per gradient step
    gamma: float = 1.0                  # discount (the paper: 1.0)
    lam: float = 1.0                    # GAE lambda (the paper: 0.95; why 1.0 here: top of this file)
    clip: float = 0.2                   # policy ratio clip (the paper: 0.2)
    vf_clip: float = 0.2                # value clip (the paper: 0.2)
    vf_coef: float = 0.5                # value-loss weight (the paper: 5; see README for why 0.5 here)
    lr: float = 1e-4                    # policy learning rate (the paper: 3e-7 for 7B models)
    value_lr: float = 1e-3              # learning rate of the value head alone
    weight_decay: float = 0.0           # AdamW weight decay (the paper: 0)
    grad_clip: float = 1.0              # global gradient-norm clip (the paper: 1.0)
    value_warmup_iters: int = 5         # first iterations train only the value head (backbone detached)
    lr_warmup_iters: int = 5            # then the policy lr ramps up linearly over this many iterations
    # --- loop, evaluation, output
    iters: int = 100000                 # stop after this many iterations ...
    minutes: float | None = 8.0         # ... or after this many minutes of training (evaluation excluded;
                                        # README: PPO needs about 50 iterations to beat its start by 5 points)
    eval_every: int = 10                # iterations between held-out greedy evaluations
    eval_questions: int = 300           # held-out questions per evaluation
    out_dir: str = "runs/ppo"           # latest.pt, best.pt, metrics.jsonl, curves.png
    resume: bool = False                # continue from out_dir/latest.pt
    seed: int = 1337                    # seeds question order and sampling
    device: str = "auto"                # auto | cpu | cuda
    compile: bool = False               # torch.compile the model and the fused log-prob kernel (pays off on CUDA)
    bf16: bool | None = None            # bf16 autocast for the forward passes (None: on with CUDA, off on CPU)
    progress: bool = True               # tqdm progress bar


def resolve_defaults(cfg: Config, warm_cfg: dict) -> Config:
    """Data settings not given on the command line come from the warm-up run."""
    for key, fallback in (("dataset", "synthetic"), ("cot", "nl"), ("train_split", "train"), ("eval_split", "test"),
                          ("data_path", None), ("max_train", None)):
        if getattr(cfg, key) is None:
            setattr(cfg, key, warm_cfg.get(key, fallback))
    if cfg.cot not in data.STYLES:
        raise UserError(f"--cot={cfg.cot}: choose one of {', '.join(data.STYLES)}")
    if cfg.kl_coef is None:
        cfg.kl_coef = PAPER_KL_COEF[cfg.cot]
    return cfg


def response_states(model, packed: torch.Tensor, index: torch.Tensor, rmask: torch.Tensor,
                    bf16: bool | None = None) -> torch.Tensor:
    """Hidden states that *predict* each response token, (B,N,C).

    packed: (B,P+N) prompt + response with all padding at the end of each row (Samples.packed), so the
    forward needs no attention mask and takes the fused causal-attention path; index: (B,N) positions of
    those states (the last prompt token predicts response token 0, response token t-1 predicts t);
    rmask: (B,N) real response tokens. Columns after the last state any real token needs are cut off
    before the forward (causal attention: nothing earlier depends on them); pad tokens' states are junk.
    bf16: run the forward under bf16 autocast (None: on CUDA only); the log-probs, values and losses
    computed from these states stay in float32 (kernels.token_logprobs upcasts chunk by chunk).
    """
    L = int(index[rmask].max()) + 1 if rmask.any() else 1
    with dist.autocast(packed.device, bf16):
        h = model(packed[:, :L])                                        # (B,L,C)
    return h.gather(1, index.clamp(max=L - 1)[..., None].expand(-1, -1, h.shape[-1]))


def make_optimizer(policy, cfg: Config) -> torch.optim.AdamW:
    """AdamW with two groups: the backbone (group 0, lr warmed up by ppo_update) and the value head."""
    head = list(policy.value_head.parameters())
    backbone = [p for n, p in policy.named_parameters() if not n.startswith("value_head")]
    return torch.optim.AdamW([{"params": backbone, "lr": cfg.lr}, {"params": head, "lr": cfg.value_lr}],
                             weight_decay=cfg.weight_decay, betas=(0.9, 0.95))


def score_texts(problems, texts, cfg: Config) -> torch.Tensor:
    """2. SCORE: 1 / partial / 0 from each completion's final answer, shape (B,); the same reader as
    evaluation (reft_mini/evaluation.py, which extracts with reward.py)."""
    return torch.tensor([score_completion(p.question, p.answer, text, cfg.cot, cfg.partial_reward)[1]
                         for p, text in zip(problems, texts)])


@torch.no_grad()
def evaluate_rollout(policy, reference, s, scores: torch.Tensor, cfg: Config, info: dist.DistInfo) -> dict:
    """3. + 4. Old log-probs and values, the reference's log-probs, KL-shaped rewards, GAE, whitening.

    Returns the rollout as a dict of tensors; every per-token tensor is response-aligned, (B,N).
    """
    seq, index = s.packed()                                             # (B,P+N), (B,N)
    resp, rmask = s.response, s.response_mask                           # (B,N)
    if cfg.unfinished_score is not None:                                # responses cut by the length limit
        scores = torch.where(s.ended.cpu(), scores, torch.full_like(scores, cfg.unfinished_score))
    scores = scores.to(resp.device)
    # ReFT runs PPO's forward passes in eval mode (no dropout): the ratios stay exact.
    policy.eval()
    # The policy's side needs no forward pass of its own: the sampler ran this very model (in eval mode)
    # and kept the state that predicted each token, s.hidden. log pi_old and V_old computed from those
    # states agree with the learner's fresh forward only to float32 rounding, because the KV-cache forward
    # adds in another order: measured on the shipped base model (3 batches of 16 x 60 tokens), at most
    # 4.8e-5 per token in log-prob, so the first PPO ratio is 1 to about 5e-5 (tests/test_train_ppo.py
    # pins this). (Systems that sample with a separate inference engine must recompute them.) Under bf16
    # autocast the two forwards round differently at bf16 precision: the same measurement on CPU bf16
    # autocast gave up to 8.5e-2 for |ratio - 1| on single tokens, inside the clip range 1 +- 0.2 but
    # not negligible; the clipped objective tolerates it, and a GPU run should report its first ratio.
    h = s.hidden.float()                                                # (B,N,C)
    logp_old, entropy = token_logprobs(h, policy.lm_weight(), resp, cfg.temperature, with_entropy=True,
                                       compile=cfg.compile)            # (B,N) float32
    values_old = policy.values(h)                                       # (B,N)
    h_ref = response_states(reference, seq, index, rmask, cfg.bf16)
    logp_ref, _ = token_logprobs(h_ref, reference.lm_weight(), resp, cfg.temperature, compile=cfg.compile)
    # r_t = -beta * (log pi_old - log pi_ref) on every token, + the score on the last one
    rewards, kl = ppo.kl_shaped_rewards(scores, logp_old, logp_ref, rmask, cfg.kl_coef)
    advantages, returns = ppo.gae(rewards, values_old, rmask, cfg.gamma, cfg.lam)
    # Whiten over the global batch (all ranks' samples, as ReFT whitens over all GPUs).
    all_sum = (lambda t: dist.all_reduce_sum(t, info)) if info.enabled else None
    advantages = ppo.masked_whiten(advantages, rmask, all_sum=all_sum)
    # h is kept: during the value warm-up the backbone is frozen, so these states are all the head needs.
    return dict(seq=seq, index=index, resp=resp, rmask=rmask, scores=scores, logp_old=logp_old,
                values_old=values_old, kl=kl, advantages=advantages, returns=returns, ended=s.ended,
                h=h, entropy=entropy)


def ppo_update(policy, opt, r: dict, cfg: Config, info: dist.DistInfo, it: int) -> list[dict]:
    """5. LEARN: `ppo_epochs` passes over the rollout in minibatches; returns per-minibatch statistics."""
    value_only = it < cfg.value_warmup_iters
    ramp = min(1.0, (it - cfg.value_warmup_iters + 1) / max(1, cfg.lr_warmup_iters))
    opt.param_groups[0]["lr"] = 0.0 if value_only else cfg.lr * ramp    # group 0 = backbone, 1 = value head
    B = r["resp"].shape[0]
    mb = max(1, min(cfg.minibatch_size // info.world_size, B))
    stats = []
    for epoch in range(cfg.ppo_epochs):
        perm = torch.randperm(B, generator=torch.Generator().manual_seed(cfg.seed + it * 7 + epoch))
        for i in range(0, B, mb):
            j = perm[i:i + mb].to(r["resp"].device)
            rmask = r["rmask"][j]
            if value_only:
                # Value warm-up: the critic learns on top of a frozen backbone, so its early, large errors
                # cannot move the policy's weights. The backbone's states are those of the rollout pass:
                # no forward pass here, which makes these iterations cost little more than sampling.
                logp, entropy, h = r["logp_old"][j], r["entropy"][j], r["h"][j]
            else:
                h = response_states(policy, r["seq"][j], r["index"][j], rmask, cfg.bf16)
                logp, entropy = token_logprobs(h, policy.lm_weight(), r["resp"][j], cfg.temperature,
                                               with_entropy=True, compile=cfg.compile)
            values = policy.values(h.float())                           # float32 even under autocast
            pg_loss, pg_stats = ppo.policy_loss(logp, r["logp_old"][j], r["advantages"][j], rmask, cfg.clip)
            vf_loss, vf_stats = ppo.value_loss(values, r["values_old"][j], r["returns"][j], rmask, cfg.vf_clip)
            loss = vf_loss if value_only else pg_loss + cfg.vf_coef * vf_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if info.enabled:  # data parallel: average the gradients over ranks
                for p in policy.parameters():
                    if p.grad is not None:
                        torch.distributed.all_reduce(p.grad)
                        p.grad /= info.world_size
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
            opt.step()
            stats.append({"pg_loss": float(pg_loss.detach()), "vf_loss": float(vf_loss.detach()),
                          "entropy": float(ppo.masked_mean(entropy.detach(), rmask)), **pg_stats, **vf_stats})
    return stats


def main(cfg: Config) -> dict:
    info = dist.setup(cfg.device)
    out = Path(cfg.out_dir)
    if cfg.bf16 is None:
        cfg.bf16 = info.device.type == "cuda"
    warm = load_checkpoint(cfg.init)
    cfg = resolve_defaults(cfg, warm.get("config", {}))
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    enc = get_tokenizer(warm.get("tokenizer", "reft_mini"), warm.get("config", {}).get("tokenizer_path"))

    train_problems = data.load_problems(cfg.dataset, cfg.train_split, cfg.cot, cfg.data_path)
    if cfg.max_train:
        train_problems = train_problems[:cfg.max_train]
    eval_problems = data.load_problems(cfg.dataset, cfg.eval_split, cfg.cot, cfg.data_path)[:cfg.eval_questions]
    prompts = [data.encode_prompt(enc, p.question, cfg.cot) for p in train_problems]

    # ---- policy (with a NEW value head) and the frozen reference: both start as the warm-up model
    policy = model_from_checkpoint(warm, cfg.init).to(info.device)
    policy.reset_value_head()
    reference = model_from_checkpoint(warm, cfg.init).to(info.device).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    opt = make_optimizer(policy, cfg)
    it, best_acc, history = 0, -1.0, []
    if cfg.resume:
        ck = load_checkpoint(out / "latest.pt", map_location=info.device)
        if ck.get("kind") != "ppo":
            raise UserError(f"{out / 'latest.pt'} was written by {ck.get('kind', 'another')} training, not PPO; "
                            "--resume continues a PPO run in the same --out_dir (or drop --resume)")
        load_weights(policy, ck["model"], str(out / "latest.pt"))
        opt.load_state_dict(ck["optimizer"])
        it, best_acc, history = ck["iter"], ck["best_acc"], ck["history"]
        set_rng_state(ck["rng"])
        truncate_after(out / "metrics.jsonl", "iter", it)
    log = MetricsLog(out / "metrics.jsonl", resume=cfg.resume, enabled=info.is_main)

    def save(name: str, acc):
        if info.is_main:
            save_checkpoint({
                # "config": the warm-up's settings (tokenizer, model, data) overlaid with PPO's own, so that
                # evaluate.py reads the data set and CoT style of this run back from one place.
                "kind": "ppo", "model_config": asdict(policy.config), "model": policy.state_dict(),
                "optimizer": opt.state_dict(), "iter": it, "best_acc": best_acc,
                "history": history, "config": {**warm.get("config", {}), **asdict(cfg)},
                "tokenizer": warm.get("tokenizer", "reft_mini"), "rng": rng_state(), "eval_acc": acc,
            }, out / name)

    def evaluate() -> float:
        acc = greedy_accuracy(policy, enc, eval_problems, cfg.cot, cfg.max_new_tokens)
        history.append({"iter": it, "eval_acc": acc})
        log.log(iter=it, eval_acc=acc)
        return acc

    if info.is_main:
        print(f"PPO: {len(train_problems)} training questions ({cfg.dataset}/{cfg.cot}), "
              f"{cfg.questions_per_iter} x {cfg.samples_per_question} samples per iteration, "
              f"kl_coef {cfg.kl_coef}, from {cfg.init}")
    last_acc = None
    if it == 0 and info.is_main:
        last_acc = evaluate()  # the warm-up checkpoint's own accuracy: the number PPO must beat
        print(f"held-out greedy accuracy of the warm-up checkpoint: {last_acc:.1%}")

    stop = StopOnSignal()  # Ctrl-C / SIGTERM: finish the iteration, save latest.pt, then stop
    bar = None
    if cfg.progress and info.is_main:
        from tqdm import tqdm
        bar = tqdm(total=None if cfg.minutes else cfg.iters, initial=it, desc="PPO", dynamic_ncols=True)
    train_seconds = sum(h.get("seconds", 0.0) for h in history if "seconds" in h)
    q_per_rank = cfg.questions_per_iter // info.world_size
    def keep_going() -> bool:
        go = it < cfg.iters and not stop.now and (cfg.minutes is None or train_seconds < 60 * cfg.minutes)
        # Under DDP every rank must take the same decision (clocks differ), else one waits forever.
        return bool(dist.all_reduce_sum(torch.tensor(float(not go)), info) == 0) if info.enabled else go

    last_eval_it = 0 if last_acc is not None else -1
    try:
        while keep_going():
            t_start = time.time()
            # ---------------- 1. ROLLOUT: questions of this iteration, k samples each
            # The question order depends only on (seed, pass over the data): resume replays it.
            per_pass = max(1, len(train_problems) // cfg.questions_per_iter)
            order = torch.randperm(len(train_problems),
                                   generator=torch.Generator().manual_seed(cfg.seed + it // per_pass))
            start = (it % per_pass) * cfg.questions_per_iter + info.rank * q_per_rank
            qs = order[start:start + q_per_rank].tolist()
            batch_prompts = [prompts[q] for q in qs for _ in range(cfg.samples_per_question)]
            gen = torch.Generator(device=info.device).manual_seed(cfg.seed * 100003 + it * 97 + info.rank)
            with dist.autocast(info.device, cfg.bf16):
                s = generate(policy, batch_prompts, cfg.max_new_tokens, enc.eot_token,
                             temperature=cfg.temperature, generator=gen)
            t_sample = time.time()

            # ---------------- 2. SCORE: 1 / partial / 0 from the final answer (reward.py)
            texts = [data.decode_completion(enc, row, mrow)
                     for row, mrow in zip(s.response.tolist(), s.response_mask.tolist())]
            scores = score_texts([train_problems[q] for q in qs for _ in range(cfg.samples_per_question)], texts, cfg)
            t_score = time.time()

            # ---------------- 3.+4. EVALUATE the rollout once (no grad), SHAPE rewards, GAE, whitening
            r = evaluate_rollout(policy, reference, s, scores, cfg, info)
            # ---------------- 5. LEARN
            stats = ppo_update(policy, opt, r, cfg, info, it)
            t_end = time.time()
            it += 1
            train_seconds += t_end - t_start

            # ---------------- logging
            row = {k: sum(st[k] for st in stats) / len(stats) for k in stats[0]}
            kl_seq = float((r["kl"] * r["rmask"]).sum(1).mean())  # KL to the reference, nats per response
            row.update(iter=it, score=float(scores.mean()), correct=float((scores == 1.0).float().mean()),
                       kl=kl_seq, explained_var=float(ppo.explained_variance(r["values_old"], r["returns"], r["rmask"])),
                       response_len=float(r["rmask"].sum(1).float().mean()), ended=float(s.ended.float().mean()),
                       t_sample=t_sample - t_start, t_score=t_score - t_sample, t_learn=t_end - t_score,
                       seconds=train_seconds, value_only=it <= cfg.value_warmup_iters)
            history.append({"iter": it, "seconds": t_end - t_start})
            log.log(**row)
            if info.is_main and (it % cfg.eval_every == 0):
                last_acc, last_eval_it = evaluate(), it
                if last_acc > best_acc:
                    best_acc = last_acc
                    save("best.pt", last_acc)
                save("latest.pt", last_acc)
            if bar is not None:
                bar.set_postfix(correct=f"{row['correct']:.0%}", kl=f"{kl_seq:.2f}",
                                acc="-" if last_acc is None else f"{last_acc:.1%}",
                                min=f"{train_seconds / 60:.1f}")
                bar.update(1)
    finally:
        stop.restore()
        if bar is not None:
            bar.close()
    if info.is_main and not stop.now and last_eval_it != it:
        last_acc = evaluate()  # the final model's accuracy, whatever eval_every was
        if last_acc > best_acc:
            best_acc = last_acc
            save("best.pt", last_acc)
    save("latest.pt", last_acc)
    if info.is_main:
        if stop.now:
            print(f"interrupted at iteration {it}: saved {out / 'latest.pt'}; continue with --resume")
        plot_curves(out / "metrics.jsonl", out / "curves.png",
                    [("reward", ["score", "correct"]), ("held-out greedy accuracy", ["eval_acc"]),
                     ("KL to reference (nats/seq)", ["kl"]), ("losses", ["pg_loss", "vf_loss"])],
                    x="iter", title="ReFT stage 2 (PPO)")
        print(f"done: {it} iterations in {train_seconds / 60:.1f} min; held-out greedy accuracy "
              f"{last_acc:.1%} (best {best_acc:.1%}); outputs in {out}/")
    dist.teardown()
    return {"iter": it, "eval_acc": last_acc, "best_acc": best_acc, "history": history}


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("REFT_THREADS", torch.get_num_threads())))
    dist.run_script(lambda: main(parse_config(Config, prog="train_ppo.py")))  # torchrun-safe exit: see dist.py
