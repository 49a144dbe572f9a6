# The PPO arithmetic of ReFT as pure tensor functions: KL-shaped per-token rewards, GAE advantages and
# returns, masked whitening, the clipped policy (surrogate) loss and the clipped value loss.
#
# Paper: Luong et al. 2024, "ReFT: Reasoning with Reinforced Fine-Tuning" (arXiv 2401.08967), Section 3
# (Method), the Reinforcement Learning stage. The paper writes one generated chain of thought as a
# sequence of actions a_1..a_L (tokens; a_L = <eos>) taken in states s_t = (question, tokens so far), and
# trains the policy with PPO:
#   * reward: a terminal score r(s_t, a_t, s_{t+1}) (1 right / 0.1 wrong-but-extracted / 0 nothing) that is
#     non-zero only on the last action, plus a per-step KL penalty to the warm-up (SFT) policy pi^(0):
#       r_total(s_t, a_t, s_{t+1}) = r(s_t, a_t, s_{t+1}) - beta * KL(pi_theta(.|s_t) || pi^(0)(.|s_t))
#   * advantages by Generalized Advantage Estimation (Schulman et al. 2016):
#       delta_t = r_total_t + gamma * V(s_{t+1}) - V(s_t),   A_t = sum_l (gamma*lam)^l delta_{t+l}
#     and the value target (return) R_t = A_t + V(s_t);
#   * the PPO clipped surrogate for the policy and a clipped squared error for the value head.
#
# Details the paper leaves open are taken from ReFT's official code (github lqtrung1998/mwp_ReFT) and its
# run scripts; each is marked "[ReFT code]" where it is used below:
#   * the KL "divergence" per token is the single-sample k1 estimate log pi_old(a_t) - log pi_ref(a_t) of
#     the *sampled* token (not a full-vocabulary KL), added to the reward of every response token;
#   * the score sits on the token that emitted end-of-sequence; a response cut by the length limit is
#     scored on its last generated token;
#   * gamma = 1.0, lambda = 0.95; GAE runs over response tokens only;
#   * advantages are whitened (mean 0, std 1) over all valid tokens of the whole batch;
#   * value loss = 0.5 * max(unclipped, clipped) squared error;
#   * losses are averaged over the tokens of each sequence first, then over the sequences of the batch.
#
# Conventions for every function here. All per-token tensors are *response-aligned*: shape (B, N), row b
# is the b-th sampled response, column t its t-th generated token. `mask` (B, N) (bool, or 0/1 float) is
# True on real response tokens (including the EOS that ended the response) and False on padding. The
# responses produced by sampling.generate are RIGHT-padded: every row is some True positions followed by
# False ones. Masked positions never influence any result, even if they hold garbage (inf/nan): we select
# with torch.where instead of multiplying by the mask, because nan * 0 is still nan.
#
# These are pure functions: tensors in, tensors out; no models, no state, no I/O. They do not detach
# their inputs: the caller passes rollout quantities (old log-probs, values, rewards) already detached.

from __future__ import annotations

import torch
from torch import Tensor


def _as_bool(mask: Tensor) -> Tensor:
    """Accept a bool mask or a 0/1 float/int mask; return a bool mask of the same shape."""
    return mask if mask.dtype == torch.bool else mask != 0


# ----------------------------------------------------------------------------------------------------------
# Masked statistics
# ----------------------------------------------------------------------------------------------------------

def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of x over the positions where mask is True (over everything, or along `dim`).

    x, mask: same shape. Returns a 0-dim tensor (dim=None) or x reduced along `dim`. An empty selection
    gives 0 rather than nan (0 / max(count, 1)).
    """
    m = _as_bool(mask)
    total = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))
    if dim is None:
        return total.sum() / m.sum().clamp(min=1).to(x.dtype)
    return total.sum(dim) / m.sum(dim).clamp(min=1).to(x.dtype)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance of x over all positions where mask is True (a 0-dim tensor).

    unbiased=True applies Bessel's correction n/(n-1), as the usual PPO implementations do; with a single
    valid element the correction is skipped (the variance is then 0).
    """
    m = _as_bool(mask)
    mean = masked_mean(x, m)
    centered = torch.where(m, x - mean, torch.zeros((), dtype=x.dtype, device=x.device))
    n = m.sum()
    var = (centered ** 2).sum() / n.clamp(min=1).to(x.dtype)
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8,
                  all_sum=None) -> Tensor:
    """Normalise x to mean 0 and variance 1 over the valid positions; masked positions become 0.

    [ReFT code] advantages are whitened once per rollout batch over all valid tokens of all sequences (the
    whole global batch, not per sequence). Whitening keeps the policy-gradient step size independent of the
    reward scale (1 / 0.1 / 0) and centres the advantages so about half the tokens get pushed down.
    shift_mean=False rescales but puts the mean back (TRL's meaning of the flag; ReFT's official
    `allgather_masked_whiten` uses the opposite convention, and with its default it centres, as we do).
    all_sum: under data parallelism, a function that sums a tensor over all processes, so that
    the mean and variance are those of the global batch (ReFT whitens over all GPUs' samples); None for
    one process. The statistics equal masked_mean and masked_var (unbiased) of the global batch.
    """
    m = _as_bool(mask)
    total = all_sum or (lambda t: t)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    n = total(m.sum().to(x.dtype))                                     # valid positions, all processes
    mean = total(torch.where(m, x, zero).sum()) / n.clamp(min=1)
    var = total(torch.where(m, x - mean, zero).pow(2).sum()) / n.clamp(min=1)
    if n > 1:
        var = var * n / (n - 1)                                        # Bessel's correction, as masked_var
    white = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        white = white + mean
    return torch.where(m, white, zero.to(white.dtype))


# ----------------------------------------------------------------------------------------------------------
# Rewards: terminal score + per-token KL penalty
# ----------------------------------------------------------------------------------------------------------

def kl_shaped_rewards(scores: Tensor, logp_old: Tensor, logp_ref: Tensor, mask: Tensor,
                      kl_coef: float) -> tuple[Tensor, Tensor]:
    """Per-token rewards r_t = -kl_coef * kl_t, plus the sequence score on its last valid token.

    scores   (B,)   terminal reward of each response (1 / 0.1 / 0 in ReFT).
    logp_old (B, N) log pi_old(a_t | s_t) of the sampled tokens under the policy that sampled them.
    logp_ref (B, N) log pi_ref(a_t | s_t) under the frozen warm-up (reference) model.
    mask     (B, N) True on response tokens.
    Returns (rewards (B, N), kl (B, N)); both are 0 at masked positions.

    Paper (Section 3): r_total = r - beta * KL(pi_theta || pi^(0)) at every step.
    [ReFT code] the KL term is the k1 estimate of the sampled token, log pi_old - log pi_ref (its
    expectation under pi_old is the true KL), and the score goes on the LAST valid position: that is the
    EOS token when the response ended, and the last generated token when it hit the length limit. Rows
    without any valid token get no score (there is no token to put it on).
    """
    # EXERCISE kl_reward: begin
    m = _as_bool(mask)
    B, N = m.shape
    # k1 KL estimate per token (B, N); padding forced to exactly 0 whatever the log-probs hold there.
    kl = torch.where(m, logp_old - logp_ref, torch.zeros((), dtype=logp_old.dtype, device=logp_old.device))
    rewards = -kl_coef * kl
    # Index of the last True position of each row (B,): the largest t with mask[b, t]; -1 for empty rows.
    # Written for any mask, not only right-padded ones (for those it is simply length - 1).
    positions = torch.arange(N, device=m.device).expand(B, N)
    last = torch.where(m, positions, torch.full_like(positions, -1)).max(dim=1).values
    # One-hot (B, N) of that position (all False for empty rows, since no column equals -1).
    on_last = positions == last[:, None]
    rewards = rewards + on_last.to(rewards.dtype) * scores.to(rewards.dtype)[:, None]
    # EXERCISE kl_reward: end
    return rewards, kl


# ----------------------------------------------------------------------------------------------------------
# Generalized Advantage Estimation
# ----------------------------------------------------------------------------------------------------------

def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """GAE advantages and returns over the response tokens.

    rewards (B, N) per-token rewards (from kl_shaped_rewards); values (B, N) V(s_t) from the value head at
    rollout time; mask (B, N). Returns (advantages (B, N), returns (B, N)), both 0 at masked positions;
    elsewhere returns = advantages + values (the value head's regression target).

    Backward recursion, t = N-1 .. 0, over valid positions:
        delta_t = r_t + gamma * V_next - V_t
        A_t     = delta_t + gamma * lam * A_next
    where V_next / A_next belong to the next *valid* position, and are 0 beyond the last valid token (the
    episode ends there: after EOS, or at the length limit, which ReFT also treats as the end).
    [ReFT code] gamma = 1.0, lam = 0.95, response tokens only (prompt tokens never get advantages).

    Masks: the usual case is RIGHT padding (valid tokens, then pads), and then the recursion simply starts
    at each row's last valid token. A masked position is *skipped*: it keeps the running (V_next, A_next)
    unchanged, so for a mask with holes the valid tokens behave as one contiguous episode; left padding
    also works (pads come after the recursion has finished the row).
    """
    # EXERCISE gae: begin
    m = _as_bool(mask)
    B, N = rewards.shape
    next_value = torch.zeros(B, dtype=values.dtype, device=values.device)   # V(s_{t+1}), (B,)
    next_adv = torch.zeros(B, dtype=values.dtype, device=values.device)     # A_{t+1},    (B,)
    zeros = torch.zeros(B, dtype=values.dtype, device=values.device)
    advantages_reversed = []
    for t in reversed(range(N)):
        valid = m[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv_t = delta + gamma * lam * next_adv
        # Only valid positions advance the recursion; pads leave the carried state untouched.
        next_adv = torch.where(valid, adv_t, next_adv)
        next_value = torch.where(valid, values[:, t], next_value)
        advantages_reversed.append(torch.where(valid, adv_t, zeros))
    advantages = torch.stack(advantages_reversed[::-1], dim=1)                # (B, N)
    returns = torch.where(m, advantages + values, torch.zeros_like(advantages))
    # EXERCISE gae: end
    return advantages, returns


# ----------------------------------------------------------------------------------------------------------
# Critic-free baselines from a group of samples of the same question (alternatives to GAE; not ReFT's)
# ----------------------------------------------------------------------------------------------------------

ESTIMATORS = ("gae", "grpo", "rloo", "drgrpo")


def group_advantages(scores: Tensor, group_size: int, estimator: str, std: bool = True,
                     eps: float = 1e-4) -> Tensor:
    """Outcome advantage of each response from the scores of its group, (B,).

    scores (B,): rows g*k .. g*k+k-1 are the k = group_size samples of one question (the order
    train_ppo samples them in). Instead of a value head predicting each answer's outcome, the other
    answers to the same question serve as the baseline:
      grpo   (Shao et al. 2024, DeepSeekMath, Sec. 4.1.2, outcome supervision): score minus the group's
             mean, divided by the group's standard deviation when std=True (+ eps);
      rloo   (Ahmadian et al. 2024, "Back to Basics", REINFORCE leave-one-out): score minus the mean of
             the OTHER k - 1 scores of the group, i.e. k / (k - 1) * (score - group mean);
      drgrpo (Liu et al. 2025, "Understanding R1-Zero-Like Training", Dr. GRPO): score minus the group
             mean, never divided by the std (that division up-weights questions that are nearly always
             right or nearly always wrong); its loss also drops the per-answer length normalisation
             (policy_loss(..., reduction="budget")).
    A group whose scores are all equal carries no contrast: every member gets 0. A group of one sample
    has no other answer to compare with: it gets 0 too (so group_size 1 teaches nothing through the
    outcome; train_ppo asks for at least 2 samples per question with these estimators).
    The per-token KL penalty is added afterwards exactly as with GAE: put this advantage where the
    score would go (kl_shaped_rewards) and take the reward-to-go (gae with values 0 and lam 1).
    """
    if estimator not in ESTIMATORS[1:]:
        raise ValueError(f"unknown group estimator {estimator!r}: choose one of {ESTIMATORS[1:]}")
    B = scores.shape[0]
    if group_size < 1 or B % group_size:
        raise ValueError(f"{B} scores do not split into groups of {group_size}")
    s = scores.float().view(B // group_size, group_size)                 # (G, k)
    if group_size == 1:
        return torch.zeros_like(scores, dtype=s.dtype)
    mean = s.mean(dim=1, keepdim=True)                                    # (G, 1)
    if estimator == "rloo":
        adv = s - (s.sum(dim=1, keepdim=True) - s) / (group_size - 1)    # leave-one-out baseline
    else:
        adv = s - mean
        if estimator == "grpo" and std:
            adv = adv / (s.std(dim=1, keepdim=True) + eps)                # unbiased std, as DeepSeekMath's code
    return adv.reshape(B)


# ----------------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------------

def _reduce(per_token: Tensor, mask: Tensor, reduction: str) -> Tensor:
    """Average a (B, N) per-token loss over valid tokens.

    "seq_mean" [ReFT code]: mean over the tokens of each sequence, then mean over the sequences (each
    response weighs the same, however long). Rows with no valid token are left out of the batch mean.
    "token_mean": one mean over all valid tokens of the batch (long responses weigh more).
    "budget" (Dr. GRPO): the sum over valid tokens / (responses x N), N the padded response length.
    """
    m = _as_bool(mask)
    if reduction == "budget":
        # Dr. GRPO: the sum over every valid token divided by a constant (responses x the generation
        # budget, here the batch's padded length N), so a long answer is not averaged down.
        rows = m.any(dim=1).sum().clamp(min=1)
        return torch.where(m, per_token, torch.zeros((), dtype=per_token.dtype, device=per_token.device)).sum() \
            / (rows * m.shape[1]).to(per_token.dtype)
    if reduction == "seq_mean":
        per_seq = masked_mean(per_token, m, dim=1)        # (B,)
        return masked_mean(per_seq, m.any(dim=1))
    if reduction == "token_mean":
        return masked_mean(per_token, m)
    raise ValueError(f"unknown reduction {reduction!r} (use 'seq_mean', 'token_mean' or 'budget')")


def policy_loss(logp_new: Tensor, logp_old: Tensor, advantages: Tensor, mask: Tensor, clip: float,
                reduction: str = "seq_mean") -> tuple[Tensor, dict]:
    """PPO clipped surrogate loss (to minimise) and diagnostics.

    logp_new (B, N) log-probs of the sampled tokens under the policy being trained (carries the gradient);
    logp_old (B, N) the same under the policy that sampled them (detached); advantages (B, N) (whitened);
    clip: epsilon (ReFT: 0.2).

    Paper (Section 3), the PPO objective: maximise E[min(ratio * A, clip(ratio, 1-eps, 1+eps) * A)] with
    ratio = pi_theta(a_t|s_t) / pi_old(a_t|s_t). As a loss: max(-A * ratio, -A * clip(ratio)). Once the
    ratio has moved past 1 +- eps in the direction the advantage favours, the clipped term wins the max
    and is a constant, so that token's gradient is zero: no incentive to move further from pi_old.

    stats (python floats): clipfrac = fraction of valid tokens whose gradient the clip removed;
    approx_kl = masked mean of (ratio - 1) - log(ratio), an unbiased, non-negative estimate of
    KL(pi_old || pi_new) (Schulman's "k3"); ratio_mean = masked mean of the ratio. All three are exactly
    0, 0, 1 on the first PPO epoch of a rollout, where the new policy still equals the old one.
    """
    m = _as_bool(mask)
    # EXERCISE ppo_losses: begin
    # Zero the log-ratio at pads *before* exp, so padding garbage can neither overflow nor leak nan grads.
    log_ratio = torch.where(m, logp_new - logp_old, torch.zeros_like(logp_new))
    ratio = torch.exp(log_ratio)                                             # (B, N)
    loss_unclipped = -advantages * ratio
    loss_clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    per_token = torch.maximum(loss_unclipped, loss_clipped)                 # pessimistic bound, (B, N)
    loss = _reduce(per_token, m, reduction)
    # EXERCISE ppo_losses: end
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((loss_clipped > loss_unclipped).float(), m).item(),
            "approx_kl": masked_mean((ratio - 1.0) - log_ratio, m).item(),
            "ratio_mean": masked_mean(ratio, m).item(),
        }
    return loss, stats


def value_loss(values_new: Tensor, values_old: Tensor, returns: Tensor, mask: Tensor, clip: float,
               reduction: str = "seq_mean") -> tuple[Tensor, dict]:
    """Clipped value loss 0.5 * max((V - R)^2, (V_clip - R)^2) and diagnostics.

    values_new (B, N) value head now (carries the gradient); values_old (B, N) value head at rollout time;
    returns (B, N) GAE returns; clip: how far the value may move from values_old (ReFT: 0.2).

    Paper (Section 3) regresses the value head onto the returns with a clipped squared error.
    [ReFT code] V_clip = V_old + clip(V - V_old, -eps, +eps) and the loss takes the larger (pessimistic)
    of the unclipped and clipped errors, times 0.5; ReFT then weighs it by a value-loss coefficient (5)
    in the total loss (that weighting is the training loop's business, not this function's).

    stats (python floats): vf_clipfrac = fraction of valid tokens where the clipped error was the larger
    one (so the gradient is zero there).
    """
    m = _as_bool(mask)
    # EXERCISE value_loss: begin
    v_clipped = values_old + torch.clamp(values_new - values_old, -clip, clip)
    err_unclipped = (values_new - returns) ** 2
    err_clipped = (v_clipped - returns) ** 2
    per_token = 0.5 * torch.maximum(err_unclipped, err_clipped)             # (B, N)
    loss = _reduce(per_token, m, reduction)
    # EXERCISE value_loss: end
    with torch.no_grad():
        stats = {"vf_clipfrac": masked_mean((err_clipped > err_unclipped).float(), m).item()}
    return loss, stats


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> float:
    """1 - Var[R - V] / Var[R] over valid tokens (a python float): how much of the returns' variance the
    value head explains. 1 = perfect, 0 = no better than a constant, negative = worse; nan when the
    returns have zero variance. A standard PPO diagnostic (CleanRL logs it too)."""
    m = _as_bool(mask)
    with torch.no_grad():
        var_r = masked_var(returns, m)
        if var_r.item() == 0.0:
            return float("nan")
        return (1.0 - masked_var(returns - values, m) / var_r).item()
