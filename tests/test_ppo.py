"""Tests for reft_mini/ppo.py: every expected number below is worked out by hand in the comments."""
import math

import pytest
import torch

from reft_mini.ppo import (explained_variance, gae, group_advantages, kl_shaped_rewards, masked_mean, masked_var,
                           masked_whiten, policy_loss, value_loss)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


# ------------------------------------------------------------------------------------------ masked stats

def test_masked_mean_ignores_pads_even_nan():
    x = t([1.0, 2.0, 3.0, float("nan")], [4.0, float("inf"), 0.0, 0.0])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    # whole: (1 + 2 + 3 + 4) / 4 = 2.5
    assert masked_mean(x, mask).item() == pytest.approx(2.5)
    # per row: (1+2+3)/3 = 2 ; 4/1 = 4
    assert torch.allclose(masked_mean(x, mask, dim=1), t(2.0, 4.0))
    # a float 0/1 mask works the same
    assert masked_mean(x, mask.float()).item() == pytest.approx(2.5)


def test_masked_var_unbiased_and_biased():
    x = t([1.0, 2.0, 3.0, 100.0])
    mask = torch.tensor([[True, True, True, False]])
    # mean 2, squared deviations 1 + 0 + 1 = 2 -> biased 2/3, unbiased 2/2 = 1
    assert masked_var(x, mask).item() == pytest.approx(1.0)
    assert masked_var(x, mask, unbiased=False).item() == pytest.approx(2.0 / 3.0)


def test_masked_whiten_mean0_var1_zero_pads_and_pad_values_irrelevant():
    x = t([1.0, 2.0, 3.0, 7.0], [5.0, 9.0, -3.0, -8.0])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    w = masked_whiten(x, mask)
    # valid values 1, 2, 3, 5, 9: mean 4, deviations -3 -2 -1 1 5, squares sum 9+4+1+1+25 = 40,
    # unbiased var 40/4 = 10 -> whitened = deviation / sqrt(10)
    s = math.sqrt(10.0)
    expected = t([-3 / s, -2 / s, -1 / s, 0.0], [1 / s, 5 / s, 0.0, 0.0])
    assert torch.allclose(w, expected, atol=1e-6)
    assert masked_mean(w, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert masked_var(w, mask).item() == pytest.approx(1.0, abs=1e-5)
    # Changing the padding (even to inf / nan) changes nothing.
    x2 = x.clone()
    x2[0, 3] = float("inf")
    x2[1, 2] = float("nan")
    x2[1, 3] = 1e6
    assert torch.equal(masked_whiten(x2, mask), w)
    # shift_mean=False puts the mean (4) back on valid positions only
    w_noshift = masked_whiten(x, mask, shift_mean=False)
    assert torch.allclose(w_noshift, torch.where(mask, expected + 4.0, torch.zeros(())), atol=1e-6)


# ------------------------------------------------------------------------------------------ KL rewards

def test_kl_shaped_rewards_score_on_eos_and_on_last_token_at_length_limit():
    # Row 0 ended: 3 real tokens (the 3rd is EOS) + 1 pad. Row 1 hit the length limit: all 4 tokens real.
    # Row 2 is empty (no valid token): it gets nothing at all.
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    logp_old = t([-1.0, -2.0, -0.5, -9.0], [-1.0, -1.0, -1.0, -1.0], [-1.0, -1.0, -1.0, -1.0])
    logp_ref = t([-1.5, -1.0, -0.5, 0.0], [-2.0, -1.0, -0.5, -1.0], [-3.0, -3.0, -3.0, -3.0])
    scores = torch.tensor([1.0, 0.1, 1.0])
    rewards, kl = kl_shaped_rewards(scores, logp_old, logp_ref, mask, kl_coef=0.1)
    # kl = old - ref on valid tokens:
    #   row 0: -1-(-1.5)=0.5, -2-(-1)=-1, -0.5-(-0.5)=0, pad 0
    #   row 1: -1-(-2)=1, 0, -1-(-0.5)=-0.5, 0
    #   row 2: all pad -> 0
    assert torch.allclose(kl, t([0.5, -1.0, 0.0, 0.0], [1.0, 0.0, -0.5, 0.0], [0.0, 0.0, 0.0, 0.0]))
    # rewards = -0.1 * kl, + score on the last valid token:
    #   row 0: -0.05, 0.1, 0 + 1.0 (EOS at index 2), pad 0
    #   row 1: -0.1, 0, 0.05, 0 + 0.1 (length limit: last generated token, index 3)
    #   row 2: nothing
    expected = t([-0.05, 0.1, 1.0, 0.0], [-0.1, 0.0, 0.05, 0.1], [0.0, 0.0, 0.0, 0.0])
    assert torch.allclose(rewards, expected, atol=1e-7)


# ------------------------------------------------------------------------------------------ GAE

def test_gae_hand_computed_with_pad():
    # 3 valid tokens + 1 pad, gamma 0.9, lambda 0.8 (gamma*lambda = 0.72).
    rewards = t([0.0, 0.0, 1.0, 5.0])      # the pad's reward 5 must be ignored
    values = t([0.5, 0.6, 0.7, 3.0])       # ... and so must the pad's value 3
    mask = torch.tensor([[True, True, True, False]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # t=2 (last valid, next value 0): delta2 = 1 + 0.9*0 - 0.7 = 0.3;            A2 = 0.3
    # t=1: delta1 = 0 + 0.9*0.7 - 0.6 = 0.03;   A1 = 0.03 + 0.72*0.3  = 0.246
    # t=0: delta0 = 0 + 0.9*0.6 - 0.5 = 0.04;   A0 = 0.04 + 0.72*0.246 = 0.21712
    assert torch.allclose(adv, t([0.21712, 0.246, 0.3, 0.0]), atol=1e-6)
    # returns = A + V: 0.71712, 0.846, 1.0, and 0 at the pad
    assert torch.allclose(ret, t([0.71712, 0.846, 1.0, 0.0]), atol=1e-6)


def test_gae_gamma_lambda_one_is_reward_to_go_minus_value():
    rewards = t([0.1, -0.2, 0.3, 1.0, 0.0], [0.5, 0.0, 2.0, 0.0, 0.0])
    values = t([0.3, 0.1, 0.4, 0.2, 9.0], [1.0, -1.0, 0.5, 9.0, 9.0])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # With gamma = lambda = 1 the deltas telescope: A_t = (sum of rewards from t to the end) - V_t.
    # row 0 reward-to-go: 1.2, 1.1, 1.3, 1.0 -> minus values 0.3 0.1 0.4 0.2 -> 0.9, 1.0, 0.9, 0.8
    # row 1 reward-to-go: 2.5, 2.0, 2.0     -> minus values 1.0 -1.0 0.5    -> 1.5, 3.0, 1.5
    assert torch.allclose(adv, t([0.9, 1.0, 0.9, 0.8, 0.0], [1.5, 3.0, 1.5, 0.0, 0.0]), atol=1e-6)
    # returns = reward-to-go on valid positions
    assert torch.allclose(ret, t([1.2, 1.1, 1.3, 1.0, 0.0], [2.5, 2.0, 2.0, 0.0, 0.0]), atol=1e-6)


def test_gae_float_mask_and_hole_is_skipped():
    # A hole in the middle is skipped: valid tokens (0, 2) act as one 2-step episode.
    rewards = t([0.0, 7.0, 1.0])
    values = t([0.5, 7.0, 0.25])
    mask = t([1.0, 0.0, 1.0])
    adv, _ = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # t=2: delta = 1 - 0.25 = 0.75, A = 0.75.  t=1 skipped (A=0).
    # t=0: delta = 0 + 1*0.25 - 0.5 = -0.25, A = -0.25 + 0.5*0.75 = 0.125
    assert torch.allclose(adv, t([0.125, 0.0, 0.75]), atol=1e-7)


# ------------------------------------------------------------------------------------------ policy loss

def test_policy_loss_clipping_values_and_gradients():
    # One sequence, 4 valid tokens, clip 0.2. Ratios set through logp_new = log(ratio), logp_old = 0.
    #   tok 0: A=+1, ratio 1.1 (inside)          -> loss = max(-1.1, -1.1) = -1.1, grad d/dratio = -1
    #   tok 1: A=+1, ratio 1.5 (above 1.2)       -> max(-1.5, -1.2) = -1.2 (clipped), grad 0
    #   tok 2: A=-1, ratio 0.5 (below 0.8)       -> max(0.5, 0.8)   =  0.8 (clipped), grad 0
    #   tok 3: A=-1, ratio 1.5 (above, but A<0)  -> max(1.5, 1.2)   =  1.5 (unclipped), grad d/dratio=+1
    ratios = torch.tensor([[1.1, 1.5, 0.5, 1.5]])
    logp_new = ratios.log().requires_grad_(True)
    logp_old = torch.zeros(1, 4)
    adv = t([1.0, 1.0, -1.0, -1.0])
    mask = torch.ones(1, 4, dtype=torch.bool)
    loss, stats = policy_loss(logp_new, logp_old, adv, mask, clip=0.2)
    # token mean: (-1.1 - 1.2 + 0.8 + 1.5) / 4 = 0.0 / 4 = 0
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    # d loss / d logp_new = (1/4) * d per_token / d ratio * ratio  (d ratio / d logp = ratio)
    #   tok 0: 0.25 * (-1) * 1.1 = -0.275;  tok 1: 0;  tok 2: 0;  tok 3: 0.25 * (+1) * 1.5 = 0.375
    assert torch.allclose(logp_new.grad, t([-0.275, 0.0, 0.0, 0.375]), atol=1e-6)
    assert stats["clipfrac"] == pytest.approx(0.5)            # tokens 1 and 2
    # approx_kl = mean((r-1) - log r): 0.1-ln1.1, 0.5-ln1.5, -0.5-ln0.5, 0.5-ln1.5
    expected_kl = ((0.1 - math.log(1.1)) + 2 * (0.5 - math.log(1.5)) + (-0.5 - math.log(0.5))) / 4
    assert stats["approx_kl"] == pytest.approx(expected_kl, rel=1e-5)
    assert stats["ratio_mean"] == pytest.approx((1.1 + 1.5 + 0.5 + 1.5) / 4, rel=1e-6)


def test_policy_loss_seq_mean_vs_token_mean_and_pads():
    # Row 0: 1 valid token with loss -A*ratio = -2 (ratio 1); row 1: 3 valid tokens with A = 1, 1, 1 -> -1 each.
    logp = torch.zeros(2, 3)
    logp_new = logp.clone()
    logp_new[0, 1:] = float("nan")                               # garbage on pads must not matter
    adv = t([2.0, 100.0, 100.0], [1.0, 1.0, 1.0])
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]], dtype=torch.bool)
    seq, _ = policy_loss(logp_new, logp, adv, mask, clip=0.2)
    tok, _ = policy_loss(logp_new, logp, adv, mask, clip=0.2, reduction="token_mean")
    # seq_mean: row means -2 and -1, batch mean -1.5.   token_mean: (-2 - 1 - 1 - 1) / 4 = -1.25
    assert seq.item() == pytest.approx(-1.5)
    assert tok.item() == pytest.approx(-1.25)


def test_first_epoch_ratio_one_gives_zero_kl_and_clipfrac():
    torch.manual_seed(0)
    logp = -torch.rand(3, 5) * 3
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    adv = torch.randn(3, 5)
    loss, stats = policy_loss(logp.clone().requires_grad_(True), logp, adv, mask, clip=0.2)
    assert stats["approx_kl"] == 0.0
    assert stats["clipfrac"] == 0.0
    assert stats["ratio_mean"] == pytest.approx(1.0)
    # ratio 1: loss = seq_mean of -A
    assert loss.item() == pytest.approx((-(masked_mean(adv, mask, dim=1))).mean().item(), rel=1e-6)


# ------------------------------------------------------------------------------------------ value loss

def test_value_loss_clipped_vs_unclipped():
    # clip 0.2, old values 0 everywhere, returns R:
    #   tok 0: V=0.1, R=1.0: unclipped (0.1-1)^2 = 0.81; Vclip = 0.1 -> same 0.81 -> 0.5*0.81 = 0.405
    #   tok 1: V=0.5, R=1.0: unclipped 0.25; Vclip = 0.2 -> 0.64 (larger, clipped wins) -> 0.32, grad 0
    #   tok 2: V=0.5, R=0.4: unclipped 0.01; Vclip = 0.2 -> 0.04 (clipped wins) -> 0.02, grad 0
    #   tok 3: V=-0.5, R=1.0: unclipped 2.25; Vclip = -0.2 -> 1.44 (unclipped wins) -> 1.125
    values_new = t([0.1, 0.5, 0.5, -0.5]).requires_grad_(True)
    values_old = torch.zeros(1, 4)
    returns = t([1.0, 1.0, 0.4, 1.0])
    mask = torch.ones(1, 4)
    loss, stats = value_loss(values_new, values_old, returns, mask, clip=0.2)
    # mean: (0.405 + 0.32 + 0.02 + 1.125) / 4 = 1.87 / 4 = 0.4675
    assert loss.item() == pytest.approx(0.4675, rel=1e-6)
    assert stats["vf_clipfrac"] == pytest.approx(0.5)
    loss.backward()
    # d/dV of 0.5*(V-R)^2 / 4 = (V-R)/4: tok 0 -> -0.9/4 = -0.225; tok 3 -> -1.5/4 = -0.375; clipped 0
    assert torch.allclose(values_new.grad, t([-0.225, 0.0, 0.0, -0.375]), atol=1e-6)


def test_value_loss_unclipped_when_close_to_old():
    # |V - V_old| <= clip everywhere -> plain 0.5 * MSE. (0.5*(0.1-0.3)^2 + 0.5*(0-(-0.1))^2)/2
    # = (0.02 + 0.005) / 2 = 0.0125
    loss, stats = value_loss(t([0.1, 0.0]), t([0.0, 0.1]), t([0.3, -0.1]), torch.ones(1, 2), clip=0.2)
    assert loss.item() == pytest.approx(0.0125, rel=1e-6)
    assert stats["vf_clipfrac"] == 0.0


# ------------------------------------------------------------------------------------------ explained var

def test_explained_variance():
    returns = t([1.0, 2.0, 3.0, 50.0])
    mask = torch.tensor([[1, 1, 1, 0]], dtype=torch.bool)
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    # constant prediction: Var[R - c] = Var[R] -> 0
    assert explained_variance(torch.full((1, 4), 2.0), returns, mask) == pytest.approx(0.0, abs=1e-6)
    # V = 1, 2, 2 -> residuals 0, 0, 1: var (unbiased) = (1/9+1/9+4/9)/2 = 1/3; Var[R] = 1 -> 1 - 1/3
    assert explained_variance(t([1.0, 2.0, 2.0, 0.0]), returns, mask) == pytest.approx(2 / 3, rel=1e-5)


# ---- critic-free group baselines (grpo, rloo, Dr. GRPO) ------------------------------------------------

def test_grpo_subtracts_the_group_mean_and_divides_by_its_std():
    # Two questions x 3 samples. Group 1: scores 1, 0, 0.1 -> mean 0.3667, unbiased std 0.5508.
    scores = torch.tensor([1.0, 0.0, 0.1, 1.0, 1.0, 0.0])
    adv = group_advantages(scores, 3, "grpo", eps=0.0)
    m1, s1 = 1.1 / 3, math.sqrt(((1 - 1.1 / 3) ** 2 + (1.1 / 3) ** 2 + (0.1 - 1.1 / 3) ** 2) / 2)
    m2, s2 = 2 / 3, math.sqrt(((1 / 3) ** 2 * 2 + (2 / 3) ** 2) / 2)
    want = [(1 - m1) / s1, -m1 / s1, (0.1 - m1) / s1, (1 - m2) / s2, (1 - m2) / s2, -m2 / s2]
    assert adv.tolist() == pytest.approx(want, abs=1e-6)
    # Without the std: only the mean goes.
    assert group_advantages(scores, 3, "grpo", std=False).tolist() == pytest.approx(
        [1 - m1, -m1, 0.1 - m1, 1 - m2, 1 - m2, -m2], abs=1e-6)


def test_rloo_baseline_is_the_mean_of_the_other_samples():
    scores = torch.tensor([1.0, 0.0, 0.1, 0.0])                 # one question, 4 samples
    adv = group_advantages(scores, 4, "rloo")
    # sample 0: 1 - (0 + 0.1 + 0)/3;  sample 1: 0 - (1 + 0.1 + 0)/3;  sample 2: 0.1 - 1/3;  sample 3: like 1
    assert adv.tolist() == pytest.approx([1 - 0.1 / 3, -1.1 / 3, 0.1 - 1 / 3, -1.1 / 3], abs=1e-6)
    # = k/(k-1) * (score - group mean)
    assert adv.tolist() == pytest.approx((4 / 3 * (scores - scores.mean())).tolist(), abs=1e-6)


def test_drgrpo_never_divides_by_the_std():
    scores = torch.tensor([1.0, 0.0, 1.0, 1.0])                 # two questions x 2 samples
    assert group_advantages(scores, 2, "drgrpo").tolist() == pytest.approx([0.5, -0.5, 0.0, 0.0])


@pytest.mark.parametrize("estimator", ["grpo", "rloo", "drgrpo"])
def test_groups_of_equal_scores_and_groups_of_one_carry_no_signal(estimator):
    equal = torch.tensor([0.1, 0.1, 0.1, 1.0, 1.0, 1.0])
    assert group_advantages(equal, 3, estimator).tolist() == pytest.approx([0.0] * 6, abs=1e-7)
    single = torch.tensor([1.0, 0.0, 0.1])
    assert group_advantages(single, 1, estimator).tolist() == [0.0] * 3
    with pytest.raises(ValueError):
        group_advantages(single, 2, estimator)                   # 3 scores do not split into pairs


def test_group_advantage_with_kl_is_the_reward_to_go_of_the_shaped_rewards():
    # The critic-free estimators keep ReFT's per-token KL penalty: the group advantage goes where the
    # score would, and the advantage of token t is the reward-to-go (GAE with V = 0 and lambda = 1).
    adv_seq = group_advantages(torch.tensor([1.0, 0.0]), 2, "drgrpo")          # [0.5, -0.5]
    logp_old = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, 0.0]])
    logp_ref = torch.tensor([[-1.5, -2.0, -0.4], [-0.5, -1.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    rewards, kl = kl_shaped_rewards(adv_seq, logp_old, logp_ref, mask, kl_coef=0.1)
    adv, _ = gae(rewards, torch.zeros_like(rewards), mask, gamma=1.0, lam=1.0)
    # row 0: kl = [0.5, 0, -0.1] -> rewards [-0.05, 0, 0.01 + 0.5]; reward-to-go [0.46, 0.51, 0.51]
    # row 1: kl = [-0.5, 0] -> rewards [0.05, 0 - 0.5]; reward-to-go [-0.45, -0.5]
    assert adv[0].tolist() == pytest.approx([0.46, 0.51, 0.51], abs=1e-6)
    assert adv[1, :2].tolist() == pytest.approx([-0.45, -0.5], abs=1e-6) and adv[1, 2] == 0


def test_budget_reduction_sums_tokens_over_a_constant_not_each_answers_length():
    per_token = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, True], [True, False, False, False]])
    logp = torch.zeros(2, 4, requires_grad=True)
    # With ratio 1 the per-token loss is -advantage: use the advantages as the per-token values.
    loss, _ = policy_loss(logp, torch.zeros(2, 4), -per_token, mask, clip=0.2, reduction="budget")
    assert loss.item() == pytest.approx((1 + 2 + 3 + 4 + 5) / (2 * 4))
    seq, _ = policy_loss(logp, torch.zeros(2, 4), -per_token, mask, clip=0.2, reduction="seq_mean")
    assert seq.item() == pytest.approx((2.5 + 5) / 2)            # the length-normalised mean differs
