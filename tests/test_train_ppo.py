"""train_ppo.py: sampler and learner agree, PPO optimises a toy reward, the script runs and resumes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train_ppo
from reft_mini import dist, ppo
from reft_mini.kernels import token_logprobs
from reft_mini.model import GPT, GPTConfig, PRESETS
from reft_mini.sampling import generate

REPO = Path(__file__).resolve().parents[1]
V, EOT = 50, 49


def tiny_policy(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{**PRESETS["tiny"], "vocab_size": V}))


def cfg(**kw):
    # One sample per question unless a test says otherwise: PROMPTS are six separate questions.
    base = dict(cot="nl", kl_coef=0.05, value_warmup_iters=0, lr_warmup_iters=1, minibatch_size=16, lr=3e-3,
                samples_per_question=1)
    return train_ppo.Config(**{**base, **kw})


PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8], [9]] * 2


def test_learner_recomputes_the_samplers_logprobs_and_the_first_ratio_is_one():
    policy = tiny_policy()
    for temperature in (1.0, 0.7):
        s = generate(policy, PROMPTS, 12, EOT, temperature=temperature, generator=torch.Generator().manual_seed(0))
        c = cfg(temperature=temperature)
        r = train_ppo.evaluate_rollout(policy, tiny_policy(), s, torch.ones(len(PROMPTS)), c, dist.DistInfo())
        # log pi_old comes from the sampler's kept states; the learner's fresh forward agrees.
        m = s.response_mask
        with torch.no_grad():
            h = train_ppo.response_states(policy, s.prompt, s.prompt_mask, s.response, m, 1)
            fresh, _ = token_logprobs(h, policy.lm_weight(), s.response, temperature)
        assert (r["logp_old"][m] - fresh[m]).abs().max() < 1e-5
        # The first minibatch of the first PPO epoch sees exactly the rollout's policy: ratio 1, no clipping.
        # Both learning rates 0, so nothing moves (ppo_update sets the backbone's lr from cfg.lr).
        c1 = cfg(temperature=temperature, minibatch_size=len(PROMPTS), ppo_epochs=1, lr=0.0, value_lr=0.0)
        before = [p.detach().clone() for p in policy.parameters()]
        stats = train_ppo.ppo_update(policy, train_ppo.make_optimizer(policy, c1), r, c1, dist.DistInfo(), it=0)
        assert stats[0]["ratio_mean"] == pytest.approx(1.0, abs=1e-6)
        assert stats[0]["approx_kl"] == pytest.approx(0.0, abs=1e-7) and stats[0]["clipfrac"] == 0.0
        assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_flat_share_counts_questions_whose_samples_all_scored_the_same():
    scores = torch.tensor([1.0, 1.0, 0.0, 0.1, 0.0, 0.0, 0.1, 0.1])   # 4 questions x 2 samples
    assert train_ppo.flat_share(scores, 2) == 0.75                      # [1,1], [0,0.1] spread, [0,0], [0.1,0.1]
    assert train_ppo.flat_share(scores, 1) == 1.0                       # groups of one never spread
    assert train_ppo.flat_share(scores, 4) == 0.0                       # [1,1,0,0.1] and [0,0,0.1,0.1] spread


def test_skipping_flat_groups_keeps_whole_questions_with_a_spread_in_score():
    policy = tiny_policy()
    s = generate(policy, PROMPTS[:3], 6, EOT, generator=torch.Generator().manual_seed(1), samples_per_prompt=2)
    scores = torch.tensor([1.0, 1.0, 0.1, 1.0, 0.0, 0.0])               # question 2 has a spread, 1 and 3 do not
    kept, kept_scores = train_ppo.keep_groups_with_spread(s, scores, 2)
    assert kept_scores.tolist() == pytest.approx([0.1, 1.0])
    for name in ("prompt", "prompt_mask", "response", "response_mask", "ended", "hidden"):
        assert torch.equal(getattr(kept, name), getattr(s, name)[2:4]), name
    # the learner takes the smaller rollout as it is: one question of 2 samples
    c = cfg(estimator="rloo", samples_per_question=2)
    r = train_ppo.evaluate_rollout(policy, tiny_policy(1), kept, kept_scores, c, dist.DistInfo())
    stats = train_ppo.ppo_update(policy, train_ppo.make_optimizer(policy, c), r, c, dist.DistInfo(), it=0)
    assert len(stats) == 1 and r["advantages"].shape[0] == 2


def test_policy_lr_is_zero_in_the_value_warmup_then_ramps_then_falls_linearly_to_zero_or_stays_constant():
    c = cfg(lr=1.0, iters=10, value_warmup_iters=2, lr_warmup_iters=2, lr_decay=False)
    assert [train_ppo.policy_lr(c, it) for it in range(5)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert train_ppo.policy_lr(c, 9) == 1.0                                    # constant: the paper's
    d = cfg(lr=1.0, iters=10, value_warmup_iters=2, lr_warmup_iters=2)         # the default decays
    # after the warm-up (it = 2..9, 8 iterations) the factor falls 1, 7/8, ..., 1/8; times the ramp
    assert [train_ppo.policy_lr(d, it) for it in (0, 1, 2, 3, 9)] == pytest.approx([0, 0, 0.5, 7 / 8, 1 / 8])
    # critic-free estimators have no value warm-up: the ramp starts at iteration 0
    g = cfg(lr=1.0, iters=4, estimator="rloo", value_warmup_iters=2, lr_warmup_iters=1, lr_decay=True)
    assert [train_ppo.policy_lr(g, it) for it in range(4)] == pytest.approx([1, 3 / 4, 1 / 2, 1 / 4])


def test_learner_reads_each_prompt_once_and_gets_the_per_sample_forwards_states_and_gradients():
    # response_states computes each question's prompt once and shares it with its k samples through the
    # KV cache. It must give what one plain forward over each sample's prompt + response gives -- the
    # states, and the gradients, which flow back into the shared prompt from all k rows.
    policy = tiny_policy()
    k, prompts = 3, [[1, 2, 3], [4, 5, 6, 7, 8], [9]]                 # different lengths: left padding
    s = generate(policy, prompts, 10, EOT, generator=torch.Generator().manual_seed(4), samples_per_prompt=k)
    m, P = s.response_mask, s.prompt.shape[1]
    assert len(set(m.sum(1).tolist())) > 1                               # responses of different lengths too
    seq, mask = s.sequences()

    def loss_and_grads(shared: bool):
        policy.zero_grad(set_to_none=True)
        if shared:
            h = train_ppo.response_states(policy, s.prompt, s.prompt_mask, s.response, m, k)
        else:
            h = policy(seq, attention_mask=mask)[:, P - 1:-1]           # one forward per sample
        lp, _ = token_logprobs(h, policy.lm_weight(), s.response)
        (lp * m).sum().backward()
        return h.detach(), [p.grad.clone() for p in policy.parameters() if p.grad is not None]

    h_shared, g_shared = loss_and_grads(True)
    h_plain, g_plain = loss_and_grads(False)
    assert (h_shared[m] - h_plain[m]).abs().max() < 1e-5
    assert len(g_shared) == len(g_plain) > 0
    for a, b in zip(g_shared, g_plain):
        assert (a - b).abs().max() <= 1e-5 * (1 + b.abs().max())
    # The rows of a group must share their prompt: anything else is refused, not silently wrong.
    with pytest.raises(AssertionError, match="share one prompt"):
        bad = generate(policy, prompts, 4, EOT, generator=torch.Generator().manual_seed(4))
        train_ppo.response_states(policy, bad.prompt, bad.prompt_mask, bad.response, bad.response_mask, 3)


def test_bf16_autocast_path_gives_the_fp32_numbers_within_bf16_tolerance():
    # The CUDA path runs sampling, the reference forward and the learner under bf16 autocast; on CPU the
    # same branch runs under torch.autocast("cpu", bfloat16) when cfg.bf16 is True. Log-probs, KL, GAE and
    # losses stay float32 (token_logprobs upcasts), so only the forwards' rounding differs.
    policy, reference = tiny_policy(), tiny_policy(1)
    s = generate(policy, PROMPTS, 12, EOT, generator=torch.Generator().manual_seed(0))
    scores = torch.arange(len(PROMPTS), dtype=torch.float32) / len(PROMPTS)
    fp32 = train_ppo.evaluate_rollout(policy, reference, s, scores, cfg(bf16=False), dist.DistInfo())
    bf16 = train_ppo.evaluate_rollout(policy, reference, s, scores, cfg(bf16=True), dist.DistInfo())
    m = s.response_mask
    for key in ("logp_old", "kl", "advantages", "returns"):
        assert bf16[key].dtype == torch.float32, key
    assert torch.equal(bf16["logp_old"], fp32["logp_old"])          # the sampler's states: no new forward
    assert (bf16["kl"][m] - fp32["kl"][m]).abs().max() < 0.05        # the reference forward ran in bf16
    assert not torch.equal(bf16["kl"], fp32["kl"])                   # ... and it really did
    stats32 = train_ppo.ppo_update(tiny_policy(), torch.optim.SGD(tiny_policy().parameters(), lr=0.0), fp32,
                                   cfg(bf16=False, minibatch_size=len(PROMPTS), lr=0.0, value_lr=0.0),
                                   dist.DistInfo(), it=0)
    stats16 = train_ppo.ppo_update(tiny_policy(), torch.optim.SGD(tiny_policy().parameters(), lr=0.0), fp32,
                                   cfg(bf16=True, minibatch_size=len(PROMPTS), lr=0.0, value_lr=0.0),
                                   dist.DistInfo(), it=0)
    assert stats32[0]["ratio_mean"] == pytest.approx(1.0, abs=1e-5)
    assert stats16[0]["ratio_mean"] == pytest.approx(1.0, abs=2e-2)   # the learner's forward in bf16
    assert stats16[0]["pg_loss"] == pytest.approx(stats32[0]["pg_loss"], abs=2e-2)


def test_rollout_scores_sit_on_the_last_token_and_kl_is_zero_against_itself():
    policy = tiny_policy()
    s = generate(policy, PROMPTS, 6, EOT, generator=torch.Generator().manual_seed(1))
    scores = torch.arange(len(PROMPTS), dtype=torch.float32)
    r = train_ppo.evaluate_rollout(policy, tiny_policy(), s, scores, cfg(), dist.DistInfo())
    assert r["kl"].abs().max() < 1e-5  # reference == policy at the start of RL (sampler states vs a fresh forward)
    lengths = s.response_mask.sum(1)
    # With gamma = 1 and no KL, the return at every token is the score (up to the GAE/value mix at lambda).
    assert torch.allclose(r["returns"][torch.arange(len(PROMPTS)), lengths - 1], scores)


def test_unfinished_responses_get_the_configured_score():
    policy = tiny_policy()
    s = generate(policy, PROMPTS, 2, EOT, generator=torch.Generator().manual_seed(2))
    assert not s.ended.all()
    r = train_ppo.evaluate_rollout(policy, tiny_policy(), s, torch.ones(len(PROMPTS)), cfg(unfinished_score=-1.0),
                                   dist.DistInfo())
    assert torch.equal(r["scores"], torch.where(s.ended, 1.0, -1.0))


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["gae", "grpo", "rloo", "drgrpo"])
def test_ppo_raises_a_toy_reward_from_chance_to_above_ninety_percent(estimator):
    # Reward 1 when the first generated token is 7 (chance: 1 in 50), else 0. The optimum is known: always
    # start with 7. The loop below is train_ppo's own iteration (rollout, evaluate_rollout, ppo_update),
    # with the paper's value head and GAE and with each critic-free group baseline (8 questions x 4).
    torch.manual_seed(0)
    policy, reference = tiny_policy(1), tiny_policy(1)
    c = cfg(lr=1e-2, kl_coef=0.0, minibatch_size=32, value_lr=1e-2, estimator=estimator, samples_per_question=4)
    opt = train_ppo.make_optimizer(policy, c)
    prompts = [[1, 2, 3]] * 8
    means = []
    for it in range(60):
        s = generate(policy, prompts, 3, EOT, generator=torch.Generator().manual_seed(it), samples_per_prompt=4)
        scores = (s.response[:, 0] == 7).float()
        means.append(float(scores.mean()))
        if len(means) >= 3 and sum(means[-3:]) / 3 > 0.9:
            break
        r = train_ppo.evaluate_rollout(policy, reference, s, scores, c, dist.DistInfo())
        train_ppo.ppo_update(policy, opt, r, c, dist.DistInfo(), it)
    assert means[0] < 0.2, means
    assert sum(means[-3:]) / 3 > 0.9, f"mean reward per iteration: {means}"


@pytest.mark.slow
def test_train_ppo_runs_end_to_end_and_resumes_exactly(tmp_path):
    env = {**os.environ, "REFT_THREADS": "1", "OMP_NUM_THREADS": "1"}
    warm = ["--model=tiny", "--init=none", "--cot=nl", "--max_train=64", "--batch_size=8", "--eval_questions=4", "--max_new_tokens=8",
            "--progress=false", "--epochs=1", f"--out_dir={tmp_path / 'w'}"]
    subprocess.run([sys.executable, "train_warmup.py", *warm], cwd=REPO, env=env, check=True, capture_output=True)
    common = [f"--init={tmp_path / 'w' / 'latest.pt'}", "--questions_per_iter=4", "--samples_per_question=2",
              "--max_new_tokens=8", "--eval_questions=4", "--eval_every=2", "--value_warmup_iters=1",
              "--lr_warmup_iters=1", "--minutes=none", "--progress=false"]

    def ppo(*args):
        p = subprocess.run([sys.executable, "train_ppo.py", *common, *args], cwd=REPO, env=env, capture_output=True,
                           text=True)
        assert p.returncode == 0, p.stderr
        return p

    ppo("--iters=4", f"--out_dir={tmp_path / 'full'}")
    ppo("--iters=2", "--estimator=rloo", "--skip_flat_groups=true", f"--out_dir={tmp_path / 'skip'}")
    ppo("--iters=2", f"--out_dir={tmp_path / 'cut'}")
    ppo("--iters=4", "--resume", f"--out_dir={tmp_path / 'cut'}")

    def rows(d):
        return {r["iter"]: r for r in map(json.loads, (tmp_path / d / "metrics.jsonl").read_text().splitlines())
                if "pg_loss" in r}
    full, cut = rows("full"), rows("cut")
    assert all(0 <= r["flat"] <= 1 for r in rows("skip").values()) and len(rows("skip")) == 2
    assert sorted(full) == sorted(cut) == [1, 2, 3, 4]
    for i in full:
        for key in ("score", "pg_loss", "vf_loss", "kl"):
            assert cut[i][key] == pytest.approx(full[i][key], abs=1e-6), (i, key)
    try:
        import matplotlib  # noqa: F401 -- the plot is drawn only when matplotlib is installed
        assert (tmp_path / "full" / "curves.png").is_file()
    except ImportError:
        pass
    ck = torch.load(tmp_path / "full" / "latest.pt", weights_only=True)
    assert ck["kind"] == "ppo" and ck["iter"] == 4


def test_program_style_gets_the_papers_smaller_kl_coefficient():
    c = train_ppo.resolve_defaults(train_ppo.Config(), {"cot": "program"})
    assert c.cot == "program" and c.kl_coef == 0.01
    c = train_ppo.resolve_defaults(train_ppo.Config(), {})
    assert c.cot == "nl" and c.kl_coef == 0.05 and c.dataset == "synthetic"


def _whiten_worker(rank, world, port, x, mask, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    info = dist.DistInfo(rank=rank, world_size=world)
    half = x.shape[0] // world
    mine = slice(rank * half, (rank + 1) * half)
    out[rank] = ppo.masked_whiten(x[mine], mask[mine], all_sum=lambda t: dist.all_reduce_sum(t, info))
    torch.distributed.destroy_process_group()


def test_advantages_are_whitened_over_all_ranks_not_per_rank():
    # Two gloo processes each hold half of the batch; whitening must use the global mean and variance,
    # so the result equals whitening the whole batch in one process.
    import torch.multiprocessing as mp
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 5, generator=g) + torch.tensor([[0.0], [0.0], [3.0], [3.0]])  # ranks differ in mean
    mask = torch.rand(4, 5, generator=g) > 0.3
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_whiten_worker, args=(2, 29541, x, mask, out), nprocs=2, join=True)
    together = torch.cat([out[0], out[1]])
    assert torch.allclose(together, ppo.masked_whiten(x, mask), atol=1e-5)


@pytest.mark.slow
def test_train_ppo_runs_under_torchrun_with_two_processes(tmp_path):
    env = {**os.environ, "REFT_THREADS": "1", "OMP_NUM_THREADS": "1"}
    warm = ["--model=tiny", "--init=none", "--cot=nl", "--max_train=64", "--batch_size=8", "--eval_questions=2",
            "--max_new_tokens=8", "--progress=false", "--epochs=1", f"--out_dir={tmp_path / 'w'}"]
    subprocess.run([sys.executable, "train_warmup.py", *warm], cwd=REPO, env=env, check=True, capture_output=True)
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29543",
                        "train_ppo.py", f"--init={tmp_path / 'w' / 'latest.pt'}", "--questions_per_iter=4",
                        "--samples_per_question=2", "--max_new_tokens=8", "--eval_questions=2", "--iters=3",
                        "--value_warmup_iters=1", "--lr_warmup_iters=1", "--minutes=none", "--progress=false",
                        f"--out_dir={tmp_path / 'p'}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[:4000] + '\n...\n' + p.stderr[-2000:]
    rows = [json.loads(x) for x in (tmp_path / "p" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in rows if "pg_loss" in r] == [1, 2, 3]  # rank 0 logs once per iteration
    ck = torch.load(tmp_path / "p" / "latest.pt", weights_only=True)
    assert ck["iter"] == 3


def test_critic_free_advantages_are_the_group_baselined_reward_to_go_and_skip_the_value_head():
    policy, reference = tiny_policy(), tiny_policy(1)
    s = generate(policy, PROMPTS[:3], 6, EOT, generator=torch.Generator().manual_seed(1), samples_per_prompt=2)
    scores = torch.tensor([1.0, 0.0, 0.1, 1.0, 1.0, 1.0])               # 3 questions x 2 samples
    c = cfg(estimator="rloo", samples_per_question=2)
    r = train_ppo.evaluate_rollout(policy, reference, s, scores, c, dist.DistInfo())
    outcome = ppo.group_advantages(scores, 2, "rloo")                    # [1, -1, -0.9, 0.9, 0, 0]
    rewards, _ = ppo.kl_shaped_rewards(outcome, r["logp_old"], r["logp_old"] - r["kl"], r["rmask"], c.kl_coef)
    rtg = rewards.flip(1).cumsum(1).flip(1) * r["rmask"]                 # reward-to-go, gamma = 1
    assert torch.allclose(r["advantages"], rtg, atol=1e-6)
    assert (r["returns"] == 0).all()
    # The value head is not trained: its weights do not move, the backbone's do.
    opt = train_ppo.make_optimizer(policy, c)
    head = [p.detach().clone() for p in policy.value_head.parameters()]
    body = policy.transformer.wte.weight.detach().clone()
    train_ppo.ppo_update(policy, opt, r, c, dist.DistInfo(), it=0)
    assert all(torch.equal(a, b) for a, b in zip(head, policy.value_head.parameters()))
    assert not torch.equal(body, policy.transformer.wte.weight)


def test_critic_free_estimators_need_two_samples_per_question(tmp_path):
    init = tmp_path / "w.pt"
    init.write_bytes(b"")
    with pytest.raises(train_ppo.UserError, match="samples_per_question of at least 2"):
        train_ppo.validate(train_ppo.Config(init=str(init), estimator="grpo", samples_per_question=1,
                                            out_dir=str(tmp_path / "p")))


def test_value_loss_trains_the_backbone_only_when_value_backbone_is_on():
    # With zero advantages the policy loss has no gradient, so whatever moves the backbone is the value
    # loss: it must with --value_backbone (the paper's shared critic) and must not without it.
    for shared in (True, False):
        policy = tiny_policy()
        with torch.no_grad():   # a head that already predicts something (a zero head passes back no gradient)
            policy.value_head[1].weight.normal_(generator=torch.Generator().manual_seed(0))
        s = generate(policy, PROMPTS, 6, EOT, generator=torch.Generator().manual_seed(1))
        c = cfg(value_backbone=shared, value_lr=1e-2)
        r = train_ppo.evaluate_rollout(policy, tiny_policy(), s, torch.ones(len(PROMPTS)), c, dist.DistInfo())
        r["advantages"] = torch.zeros_like(r["advantages"])
        body = policy.transformer.h[0].mlp.c_fc.weight.detach().clone()
        head = policy.value_head[1].weight.detach().clone()
        train_ppo.ppo_update(policy, train_ppo.make_optimizer(policy, c), r, c, dist.DistInfo(), it=5)
        assert not torch.equal(head, policy.value_head[1].weight)
        assert torch.equal(body, policy.transformer.h[0].mlp.c_fc.weight) != shared
