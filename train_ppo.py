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
               vf_coef * clipped value loss, AdamW step with gradient clipping; the policy's learning
               rate falls linearly to 0 at the last iteration (the paper keeps it constant)

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

latest.pt is written every --save_every iterations and with every evaluation, so a run killed without
warning continues with --resume from there. A run whose numbers stop being finite (a far too high --lr)
stops with one line naming the iteration, and its last checkpoint stays the last good state.

    python train_ppo.py                          # from runs/warmup/latest.pt, offline default
    python train_ppo.py --cot=program --init=runs/warmup_program/latest.pt
    python train_ppo.py --resume                 # continue runs/ppo exactly
    python train_ppo.py --help
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch

from reft_mini import data, dist, ppo, reward
from reft_mini.checkpoint import (StopOnSignal, first_non_finite, load_checkpoint, load_weights, model_from_checkpoint,
                                  remove_stale_tmp, resume_checkpoint, rng_state, save_checkpoint, set_rng_state)
from reft_mini.config import (SEED, UserError, above, at_least, below, between, check, check_writable_dir, device_name,
                              one_of, parse_config, resume_changes, show)
from reft_mini.evaluation import greedy_accuracy, score_completion
from reft_mini.kernels import token_logprobs
from reft_mini.metrics import MetricsLog, duration, plot_curves, summary_outputs, truncate_after
from reft_mini.sampling import Samples, generate
from reft_mini.tokenizer import TokenizerError, get_tokenizer

# The paper's KL coefficients (beta): stronger for natural language than for programs.
PAPER_KL_COEF = {"nl": 0.05, "program": 0.01}


@dataclass
class Config:
    """ReFT stage 2: PPO on the same training questions, from a warm-up checkpoint."""
    init: str = "runs/warmup/latest.pt"  # The warm-up checkpoint: both the initial policy and the frozen reference.
    # --- data (none = as in the warm-up checkpoint)
    dataset: str | None = None          # The data set: synthetic, gsm8k, svamp, mathqa, mathqa-numeric or reft
                                        # (none: the warm-up's).
    data_path: str | None = None        # A local file or folder that holds a real data set (none: the warm-up's).
    cot: str | None = None              # The chain-of-thought style: nl (N-CoT) or program (P-CoT) (none: the
                                        # warm-up's).
    train_split: str | None = None      # The split RL practises on, normally the SFT training questions (none: the
                                        # warm-up's).
    eval_split: str | None = None       # The held-out split for greedy accuracy (none: the warm-up's).
    max_train: int | None = None        # Practise on the first N training questions only (none: as in the warm-up).
    # --- rollouts
    questions_per_iter: int = 16        # Questions per iteration (the paper: 4 per GPU x 8 GPUs).
    samples_per_question: int = 8       # Chains of thought sampled per question, which gives PPO a contrast within
                                        # one question (the paper: 1); the k samples share one reading of their
                                        # prompt, so 16 x 8 samples cost less than 32 x 4.
    temperature: float = 1.0            # The sampling temperature (the paper: 1.0, no top-k or top-p).
    max_new_tokens: int = 128           # The longest chain of thought, in tokens (the longest synthetic P-CoT answer
                                        # has 100; a runaway sample costs up to this many decoding steps).
    # --- reward
    partial_reward: float = 0.1         # The score of an answer that was extracted but is wrong (the paper: 0.1).
    unfinished_score: float | None = None  # The score of a response cut off by --max_new_tokens (none: score its
                                           # text like any other).
    kl_coef: float | None = None        # Beta, the weight of the per-token KL penalty to the reference (none: the
                                        # paper's 0.05 for N-CoT, 0.01 for P-CoT).
    # --- PPO
    estimator: str = "gae"              # The advantage estimator: gae (the paper's: a value head and GAE), or the
                                        # critic-free grpo (DeepSeekMath), rloo (leave-one-out) or drgrpo (Dr. GRPO),
                                        # whose baseline is the other samples of the same question (no value head).
    group_std: bool = True              # With grpo, divide each group's advantages by its standard deviation.
    skip_flat_groups: bool = False      # Leave out of the update the questions whose samples all scored the same
                                        # (all right or all wrong): a group baseline gives them no signal but the KL
                                        # penalty, and the learner's time goes to the rest (DAPO's dynamic sampling,
                                        # without its refill). Not the paper's.
    ppo_epochs: int = 1                 # Passes over each rollout batch; one pass fits more iterations into the same
                                        # minutes and scored higher here (the paper: 2).
    minibatch_size: int = 64            # Responses per gradient step.
    gamma: float = 1.0                  # The discount of future rewards (the paper: 1.0).
    lam: float = 1.0                    # GAE lambda; 1.0 lets the final reward reach early tokens of a long answer,
                                        # which a small value head cannot do (the paper: 0.95).
    clip: float = 0.2                   # The policy ratio clip range (the paper: 0.2).
    vf_clip: float = 0.2                # The value clip range (the paper: 0.2).
    vf_coef: float = 0.02               # The value-loss weight, far lower than the paper's: the value loss flowing
                                        # into the small shared backbone hurt the policy; one seed's held-out gain
                                        # after 100 iterations was +1.2 at 0.5, +3.6 at 0.1, +6.2 at 0.02 (the
                                        # paper: 5).
    value_backbone: bool = True         # Let the value loss train the shared backbone too (the paper's); false: it
                                        # trains the value head alone, on the policy's features.
    lr: float = 1e-4                    # The policy learning rate (the paper: 3e-7, for 7B models); 2e-4 and higher
                                        # lowered accuracy here.
    value_lr: float = 1e-4              # The learning rate of the value head, the policy's (as in the paper, one lr).
                                        # Over 5 seeds x 115 iterations it gained +0.9 to +2.2 points more than the
                                        # earlier 1e-3 (3e-4: +0.5 to +2.6 more), though its head explains less of the
                                        # returns (experiment log).
    weight_decay: float = 0.0           # AdamW weight decay (the paper: 0).
    grad_clip: float = 1.0              # Clip the global gradient norm to this value (the paper: 1.0).
    value_warmup_iters: int = 5         # The first iterations train only the value head, with the backbone frozen.
    lr_warmup_iters: int = 5            # After them, the policy learning rate rises linearly over this many
                                        # iterations.
    lr_decay: bool = True               # Then let it fall linearly to 0 at the last iteration (--iters), so the final
                                        # policy is not one step of a noisy walk: the demo (3 seeds, 100
                                        # iterations, one thread) gained +4.4/+5.7/+5.7 with it, +6.5/+1.5/+1.7
                                        # constant (the paper: constant; false).
    # --- loop, evaluation, output
    iters: int = 115                    # Stop after this many iterations: at 2.2-2.5 s each on 2 CPU cores, 4-5
                                        # minutes of training, what fits README's 5-minute demo (the paper: 300
                                        # epochs over the training set).
    minutes: float | None = None        # Or stop after this many minutes of training, evaluation excluded (none: no
                                        # limit).
    eval_every: int = 10                # Iterations between held-out greedy evaluations; the end is evaluated too.
    eval_questions: int = 300           # Held-out questions per evaluation.
    out_dir: str = "runs/ppo"           # The output folder: latest.pt, best.pt, metrics.jsonl, curves.png.
    save_every: int = 5                 # Iterations between saves of latest.pt (every evaluation saves too), so a
                                        # killed run loses at most this many iterations.
    resume: bool = False                # Continue the run in --out_dir from its latest.pt, with its settings.
    seed: int = 1337                    # The seed of the question order and of sampling.
    device: str = "auto"                # Where to train: auto (CUDA when there is a GPU), cpu, cuda or cuda:N.
    compile: bool = False               # Compile the model and the log-prob kernel with torch.compile; pays off on
                                        # CUDA, slow to start on CPU.
    bf16: bool | None = None            # Run the forward passes under bf16 autocast (none: on with CUDA, off on CPU).
    progress: bool = True               # Show a progress bar.


# What each option may be, checked right after parsing (config.check). None always passes: it means
# "not set" (the warm-up's value, no limit). Checks involving several options or files: validate().
RULES = {
    "dataset": one_of(*data.DATASETS), "cot": one_of(*data.STYLES), "device": device_name, "seed": SEED,
    "max_train": at_least(1), "questions_per_iter": at_least(1), "samples_per_question": at_least(1),
    "max_new_tokens": at_least(1), "ppo_epochs": at_least(1), "minibatch_size": at_least(1),
    "value_warmup_iters": at_least(0), "lr_warmup_iters": at_least(0), "iters": at_least(1),
    "eval_every": at_least(1), "eval_questions": at_least(1), "save_every": at_least(1),
    "temperature": above(0), "lr": above(0), "value_lr": above(0), "grad_clip": above(0), "clip": above(0),
    "vf_clip": above(0), "minutes": above(0), "kl_coef": at_least(0), "vf_coef": at_least(0),
    "weight_decay": at_least(0), "gamma": (above(0), between(0, 1)), "lam": between(0, 1),
    "partial_reward": (at_least(0), below(1)), "estimator": one_of(*ppo.ESTIMATORS),
}


def validate(cfg: Config, given=frozenset()) -> None:
    """Refuse a mistake on the command line before anything is loaded or written (one line, exit 2)."""
    check(cfg, RULES)
    if cfg.estimator != "gae" and cfg.samples_per_question < 2:
        raise UserError(f"--estimator={cfg.estimator} compares the samples of one question with each other: it needs "
                        f"--samples_per_question of at least 2 (now {cfg.samples_per_question})")
    if not Path(cfg.init).is_file():
        raise UserError(f"--init={cfg.init}: checkpoint not found; train the warm-up first (python train_warmup.py) "
                        "or pass the path of its latest.pt")
    if cfg.data_path is not None and not Path(cfg.data_path).exists():
        raise UserError(f"--data_path={cfg.data_path}: not found")
    check_writable_dir("out_dir", cfg.out_dir)
    if Path(cfg.init).resolve().parent == Path(cfg.out_dir).resolve():
        raise UserError(f"--out_dir={cfg.out_dir} holds the --init checkpoint, which PPO's latest.pt would overwrite; "
                        "choose another --out_dir")


class Diverged(UserError):
    """Training produced numbers that are not finite (NaN, inf): stop, and keep the last good checkpoint."""


def diverged(it: int, what: str, cfg: Config) -> Diverged:
    return Diverged(f"PPO diverged in iteration {it + 1}: {what}, so nothing of it was saved (latest.pt, if any, "
                    f"holds the last good state); lower --lr (now {cfg.lr:g}), --value_lr (now {cfg.value_lr:g}) "
                    f"or --kl_coef (now {show(cfg.kl_coef)}) and start again")


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


def response_states(model, prompt: torch.Tensor, prompt_mask: torch.Tensor, response: torch.Tensor,
                    rmask: torch.Tensor, k: int, bf16: bool | None = None) -> torch.Tensor:
    """Hidden states that *predict* each response token, (B,N,C), reading each question's prompt once.

    prompt, prompt_mask: (B,P) left-padded, as the sampler returns them; rows g*k .. g*k+k-1 are the k
    samples of one question and share one prompt. response, rmask: (B,N) right-padded.

    The k responses of a question continue the same prompt, so the prompt's keys and values are the same
    for all k: compute them once per question (G = B/k rows), copy them to the k rows through the KV cache
    exactly as the sampler does, then run only the responses. The forward covers G*P + B*N positions
    instead of B*(P+N): with 4 samples of ~100-token prompts and ~60-token answers, about half. It is
    the same computation as one long forward per sample, gradients included (they flow back through the
    cache into the prompt's positions, summed over the k rows that read them): tests/test_train_ppo.py
    compares both. The state after the prompt predicts response token 0; response token t-1's state
    predicts token t, so the last response token is never fed. Columns after the longest real response
    are cut off first (causal attention: nothing earlier depends on them); pad tokens' states are junk.
    bf16: run the forward under bf16 autocast (None: on CUDA only); the log-probs, values and losses
    computed from these states stay in float32 (kernels.token_logprobs upcasts chunk by chunk).
    """
    B, P = prompt.shape
    N = response.shape[1]
    G = B // k
    assert G * k == B and torch.equal(prompt.view(G, k, P), prompt[::k, None].expand(G, k, P)), \
        "rows g*k .. g*k+k-1 must share one prompt"
    L = int(rmask.sum(1).max()) if rmask.any() else 1                  # longest real response
    with dist.autocast(prompt.device, bf16):
        cache = model.new_kv_cache(G, P + L)
        h = model(prompt[::k], attention_mask=prompt_mask[::k], kv_cache=cache)[:, -1:]   # (G,1,C)
        copies = torch.arange(G, device=prompt.device).repeat_interleave(k)                # (B,)
        h = h[copies]                                                   # (B,1,C) predicts token 0
        if L > 1:
            cache.reorder(copies)                                       # (B,...) each prompt's keys, k times
            mask = torch.cat([prompt_mask, rmask.new_ones((B, L - 1))], 1)             # (B,P+L-1)
            positions = prompt_mask.sum(1, keepdim=True) + torch.arange(L - 1, device=prompt.device)
            h_resp = model(response[:, :L - 1], attention_mask=mask, positions=positions, kv_cache=cache)
            h = torch.cat([h, h_resp], 1)                               # (B,L,C)
    return torch.nn.functional.pad(h, (0, 0, 0, N - L))                 # (B,N,C), zeros past L


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
    h_ref = response_states(reference, s.prompt, s.prompt_mask, resp, rmask, cfg.samples_per_question, cfg.bf16)
    logp_ref, _ = token_logprobs(h_ref, reference.lm_weight(), resp, cfg.temperature, compile=cfg.compile)
    if cfg.estimator == "gae":
        # r_t = -beta * (log pi_old - log pi_ref) on every token, + the score on the last one
        rewards, kl = ppo.kl_shaped_rewards(scores, logp_old, logp_ref, rmask, cfg.kl_coef)
        advantages, returns = ppo.gae(rewards, values_old, rmask, cfg.gamma, cfg.lam)
        # Whiten over the global batch (all ranks' samples, as ReFT whitens over all GPUs).
        all_sum = (lambda t: dist.all_reduce_sum(t, info)) if info.enabled else None
        advantages = ppo.masked_whiten(advantages, rmask, all_sum=all_sum)
    else:
        # Critic-free (not the paper's): the other samples of the same question are the baseline. The
        # group's advantage takes the score's place on the last token, the KL penalty stays on every
        # token, and each token's advantage is the reward-to-go (GAE with V = 0 and lambda = 1). Groups
        # are the samples_per_question rows of one question, which never span two processes.
        outcome = ppo.group_advantages(scores, cfg.samples_per_question, cfg.estimator, std=cfg.group_std)
        rewards, kl = ppo.kl_shaped_rewards(outcome, logp_old, logp_ref, rmask, cfg.kl_coef)
        advantages, _ = ppo.gae(rewards, torch.zeros_like(rewards), rmask, cfg.gamma, 1.0)
        returns = torch.zeros_like(advantages)                          # no value head to regress
    # h is kept: during the value warm-up the backbone is frozen, so these states are all the head needs.
    return dict(prompt=s.prompt, prompt_mask=s.prompt_mask, resp=resp, rmask=rmask, scores=scores, logp_old=logp_old,
                values_old=values_old, kl=kl, advantages=advantages, returns=returns, ended=s.ended,
                h=h, entropy=entropy)


def has_spread(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(questions,) bool: True where a question's k samples did not all get the same score.
    scores: (questions * k,), the k samples of each question in consecutive rows."""
    by_q = scores.view(-1, k)                                                            # (questions, k)
    return by_q.max(1).values > by_q.min(1).values


def flat_share(scores: torch.Tensor, k: int) -> float:
    """The share of questions whose k samples all got the same score (all right, or all wrong). Their
    group baseline equals every score, so a critic-free estimator learns nothing from them but the KL
    penalty; with gae they still teach through the value head."""
    return 1.0 - float(has_spread(scores, k).float().mean())


def keep_groups_with_spread(s: Samples, scores: torch.Tensor, k: int) -> tuple[Samples, torch.Tensor]:
    """The rollout without the questions whose k samples all scored the same; rows stay grouped by
    question (k consecutive rows each). s: Samples of (questions * k) rows; scores: (questions * k,)."""
    idx = has_spread(scores, k).repeat_interleave(k).nonzero().squeeze(1)              # kept rows, (kept,)
    pick = lambda t: None if t is None else t[idx.to(t.device)]                         # noqa: E731
    return replace(s, **{f.name: pick(getattr(s, f.name)) for f in fields(s)}), scores[idx]


def policy_lr(cfg: Config, it: int) -> float:
    """The backbone's learning rate at iteration `it` (counted from 0): 0 while only the value head learns,
    then a linear rise over lr_warmup_iters, then a linear fall towards 0 at the last iteration (--iters),
    or with --lr_decay=false constant (the paper's)."""
    warm = cfg.value_warmup_iters if cfg.estimator == "gae" else 0      # critic-free: no value warm-up
    if it < warm:
        return 0.0
    ramp = min(1.0, (it - warm + 1) / max(1, cfg.lr_warmup_iters))
    if cfg.lr_decay:
        ramp *= max(0.0, 1.0 - (it - warm) / max(1, cfg.iters - warm))
    return cfg.lr * ramp


def ppo_update(policy, opt, r: dict, cfg: Config, info: dist.DistInfo, it: int) -> list[dict]:
    """5. LEARN: `ppo_epochs` passes over the rollout in minibatches; returns per-minibatch statistics."""
    critic = cfg.estimator == "gae"                                     # the critic-free estimators skip the
    value_only = critic and it < cfg.value_warmup_iters                 # value head and its warm-up
    opt.param_groups[0]["lr"] = policy_lr(cfg, it)                      # group 0 = backbone, 1 = value head
    k = cfg.samples_per_question
    G = r["resp"].shape[0] // k                                         # questions in this rollout
    # Minibatches hold whole questions (all k samples of each), so the learner reads every prompt once
    # (response_states); minibatch_size counts responses, as before.
    mb = max(1, min(cfg.minibatch_size // info.world_size // k, G))     # questions per minibatch
    stats = []
    for epoch in range(cfg.ppo_epochs):
        perm = torch.randperm(G, generator=torch.Generator().manual_seed(cfg.seed + it * 7 + epoch))
        for i in range(0, G, mb):
            j = (perm[i:i + mb, None] * k + torch.arange(k)).flatten().to(r["resp"].device)   # their rows
            rmask = r["rmask"][j]
            if value_only:
                # Value warm-up: the critic learns on top of a frozen backbone, so its early, large errors
                # cannot move the policy's weights. The backbone's states are those of the rollout pass:
                # no forward pass here, which makes these iterations cost little more than sampling.
                logp, entropy, h = r["logp_old"][j], r["entropy"][j], r["h"][j]
            else:
                h = response_states(policy, r["prompt"][j], r["prompt_mask"][j], r["resp"][j], rmask, k, cfg.bf16)
                logp, entropy = token_logprobs(h, policy.lm_weight(), r["resp"][j], cfg.temperature,
                                               with_entropy=True, compile=cfg.compile)
            reduction = "budget" if cfg.estimator == "drgrpo" else "seq_mean"   # Dr. GRPO: no length norm
            pg_loss, pg_stats = ppo.policy_loss(logp, r["logp_old"][j], r["advantages"][j], rmask, cfg.clip,
                                                reduction)
            if critic:
                # float32 even under autocast; detached, the value loss reaches the value head only
                values = policy.values((h if cfg.value_backbone else h.detach()).float())
                vf_loss, vf_stats = ppo.value_loss(values, r["values_old"][j], r["returns"][j], rmask, cfg.vf_clip)
                loss = vf_loss if value_only else pg_loss + cfg.vf_coef * vf_loss
            else:
                vf_loss, vf_stats, loss = torch.zeros(()), {}, pg_loss
            if not torch.isfinite(loss):  # a NaN gradient step would turn every weight into NaN
                raise diverged(it, f"the PPO loss became {float(loss)}", cfg)
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
    if cfg.questions_per_iter % info.world_size:
        raise UserError(f"--questions_per_iter={cfg.questions_per_iter} must divide by the number of processes "
                        f"({info.world_size})")
    if cfg.skip_flat_groups and info.enabled:   # ranks would hold different numbers of minibatches
        raise UserError("--skip_flat_groups works in one process only; run without torchrun or drop the option")
    if cfg.bf16 is None:
        cfg.bf16 = info.device.type == "cuda"
    warm = load_checkpoint(cfg.init)
    if not isinstance(warm, dict) or "model_config" not in warm:
        raise UserError(f"--init={cfg.init} is not a reft_mini checkpoint; pass the latest.pt of a warm-up run")
    cfg = resolve_defaults(cfg, warm.get("config", {}))
    # --resume: pick the checkpoint and compare its settings now, before anything is loaded or written.
    resumed = None
    if cfg.resume:
        ck_path, ck = resume_checkpoint(out, "ppo", ("latest.pt",), map_location=info.device)
        resumed = ck_path, ck, resume_changes(ck["config"], asdict(cfg), str(ck_path))
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    try:
        enc = get_tokenizer(warm.get("tokenizer", "reft_mini"), warm.get("config", {}).get("tokenizer_path"))
    except TokenizerError as e:
        raise UserError(f"{cfg.init}: {e}") from None
    if warm["model_config"].get("vocab_size") != enc.n_vocab:   # e.g. a warm-up made with an earlier tokenizer
        raise UserError(f"--init={cfg.init}: the model has a vocabulary of {warm['model_config'].get('vocab_size')} "
                        f"tokens but its tokenizer has {enc.n_vocab}; it was trained with another tokenizer file: "
                        "train the warm-up again (python train_warmup.py)")

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
    it, best_acc, history, last_acc, last_eval_it = 0, -1.0, [], None, -1
    if resumed:
        ck_path, ck, changes = resumed
        load_weights(policy, ck["model"], str(ck_path))
        opt.load_state_dict(ck["optimizer"])
        it, best_acc, history = ck["iter"], ck["best_acc"], ck["history"]
        evals = [h for h in history if "eval_acc" in h]
        if evals:
            last_acc, last_eval_it = evals[-1]["eval_acc"], evals[-1]["iter"]
        set_rng_state(ck["rng"])
        if info.is_main:
            truncate_after(out / "metrics.jsonl", "iter", it)  # what was logged after that checkpoint is redone
            print(f"resume: continuing from {ck_path} at iteration {it}" + (f"; changed: {changes}" if changes else ""))
    if info.is_main and out.is_dir():
        stale = remove_stale_tmp(out)
        if stale:
            print(f"note: removed {len(stale)} unfinished checkpoint write(s) of a killed run: "
                  f"{', '.join(p.name for p in stale)}")
    log = MetricsLog(out / "metrics.jsonl", resume=cfg.resume, enabled=info.is_main)

    def save(name: str, acc):
        # save_checkpoint refuses weights that are not finite; the loop below stops before that can happen.
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
    if it == 0 and info.is_main:
        last_acc, last_eval_it = evaluate(), 0  # the warm-up checkpoint's own accuracy: the number PPO must beat
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
            gen = torch.Generator(device=info.device).manual_seed(cfg.seed * 100003 + it * 97 + info.rank)
            try:
                with dist.autocast(info.device, cfg.bf16):   # rows q*k .. q*k+k-1: the k samples of question q
                    s = generate(policy, [prompts[q] for q in qs], cfg.max_new_tokens, enc.eot_token,
                                 temperature=cfg.temperature, generator=gen,
                                 samples_per_prompt=cfg.samples_per_question)
            except RuntimeError as e:
                # The sampler's complaint (sampling.draw, in torch.multinomial's words) when the weights have
                # grown so large that the softmax overflows: "probability tensor contains either inf, nan or
                # element < 0".
                if "probability tensor" not in str(e) and "invalid multinomial distribution" not in str(e):
                    raise
                raise diverged(it, "the next-token probabilities of the sampler are not finite numbers", cfg) from None
            t_sample = time.time()

            # ---------------- 2. SCORE: 1 / partial / 0 from the final answer (reward.py)
            texts = [data.decode_completion(enc, row, mrow)
                     for row, mrow in zip(s.response.tolist(), s.response_mask.tolist())]
            scores = score_texts([train_problems[q] for q in qs for _ in range(cfg.samples_per_question)], texts, cfg)
            t_score = time.time()

            flat, batch_scores = flat_share(scores, cfg.samples_per_question), scores    # logged: the whole batch
            if cfg.skip_flat_groups and 0 < flat < 1:         # (all flat: nothing to prefer, keep the batch)
                s, scores = keep_groups_with_spread(s, scores, cfg.samples_per_question)

            # ---------------- 3.+4. EVALUATE the rollout once (no grad), SHAPE rewards, GAE, whitening
            r = evaluate_rollout(policy, reference, s, scores, cfg, info)
            for key, what in (("logp_old", "log-probs"), ("values_old", "values"), ("advantages", "advantages")):
                if not bool(torch.isfinite(r[key][r["rmask"]]).all()):
                    raise diverged(it, f"the rollout's {what} are not finite numbers", cfg)
            # ---------------- 5. LEARN
            stats = ppo_update(policy, opt, r, cfg, info, it)
            bad = first_non_finite(policy.state_dict())
            if bad is not None:
                raise diverged(it, f"weight {bad} is not a finite number after the update", cfg)
            t_end = time.time()
            it += 1
            train_seconds += t_end - t_start

            # ---------------- logging
            row = {k: sum(st[k] for st in stats) / len(stats) for k in stats[0]}
            kl_seq = float((r["kl"] * r["rmask"]).sum(1).mean())  # KL to the reference, nats per response
            row.update(flat=flat)
            row.update(iter=it, score=float(batch_scores.mean()), correct=float((batch_scores == 1.0).float().mean()),
                       kl=kl_seq, response_len=float(r["rmask"].sum(1).float().mean()),
                       ended=float(s.ended.float().mean()), t_sample=t_sample - t_start, t_score=t_score - t_sample,
                       t_learn=t_end - t_score, seconds=train_seconds)
            if cfg.estimator == "gae":  # how much of the returns' variance the value head explains
                row.update(explained_var=float(ppo.explained_variance(r["values_old"], r["returns"], r["rmask"])),
                           value_only=it <= cfg.value_warmup_iters)
            history.append({"iter": it, "seconds": t_end - t_start})
            log.log(**row)
            evaluated = info.is_main and it % cfg.eval_every == 0
            if evaluated:
                last_acc, last_eval_it = evaluate(), it
                if last_acc > best_acc:
                    best_acc = last_acc
                    save("best.pt", last_acc)
            # latest.pt with every evaluation and every save_every iterations, so that a run killed without
            # warning (SIGKILL, power cut) resumes from there; the last iteration is saved after the loop.
            if evaluated or (it % cfg.save_every == 0 and it < cfg.iters):
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
        plot = plot_curves(out / "metrics.jsonl", out / "curves.png",
                           [("reward", ["score", "correct"]), ("held-out greedy accuracy", ["eval_acc"]),
                            ("KL to reference (nats/seq)", ["kl"]), ("losses", ["pg_loss", "vf_loss"])],
                           x="iter", title="ReFT stage 2 (PPO)")
        evals = [h["eval_acc"] for h in history if "eval_acc" in h]
        accs = " -> ".join(f"{a:.1%}" for a in (evals[:1] + evals[-1:] if len(evals) > 1 else evals))
        print(f"summary: PPO {it} iteration{'s' * (it != 1)}, {duration(train_seconds)} of training; held-out greedy "
              f"accuracy {accs or 'not measured'} ({len(eval_problems)} questions); "
              + summary_outputs(out / "latest.pt", out / "metrics.jsonl", plot))
    dist.teardown()
    return {"iter": it, "eval_acc": last_acc, "best_acc": best_acc, "history": history}


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("REFT_THREADS", torch.get_num_threads())))
    # torchrun-safe exit: see dist.py. validate runs right after parsing, before anything is loaded.
    dist.run_script(lambda: main(parse_config(Config, prog="train_ppo.py", validate=validate)))
