"""Batched KV-cache sampling: padding-invariant, stops at EOT, log-probs that PPO can recompute."""
import pytest
import torch

from reft_mini.kernels import token_logprobs
from reft_mini.model import GPT, GPTConfig, KVCache, PRESETS
from reft_mini.sampling import filter_logits, generate, left_pad

EOT = 96


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{**PRESETS["tiny"], "vocab_size": 97})).eval()


def force_token(model, token, logit):
    """Make every hidden state the same vector u, and give `token` the logit `logit` against it."""
    with torch.no_grad():
        ln = model.transformer.ln_f
        ln.weight.zero_()
        ln.bias.normal_()
        u = ln.bias
        model.transformer.wte.weight[token] = logit * u / u.dot(u)


PROMPTS = [[5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8], [9]]


def sampler_logprobs(model, s, temperature=1.0):
    """log p(token) from the states the sampler kept (what PPO uses as log pi_old); 0 on pads. (B,N)"""
    with torch.no_grad():
        lp, _ = token_logprobs(s.hidden, model.lm_weight(), s.response, temperature)
    return lp * s.response_mask


def test_batched_greedy_matches_each_prompt_sampled_alone():
    model = tiny_model()
    batch = generate(model, PROMPTS, max_new_tokens=12, eot_id=EOT, temperature=0)
    for i, p in enumerate(PROMPTS):
        alone = generate(model, [p], max_new_tokens=12, eot_id=EOT, temperature=0)
        n = int(alone.response_mask.sum())
        assert batch.response[i, :n].tolist() == alone.response[0, :n].tolist()
        assert torch.allclose(sampler_logprobs(model, batch)[i, :n], sampler_logprobs(model, alone)[0, :n], atol=1e-5)
        assert int(batch.response_mask[i].sum()) == n


def test_right_padded_prompts_are_accepted_after_stripping_their_pads():
    # A caller holding a right-padded (B,P) batch passes the real tokens of each row; the sampler
    # re-pads on the left, so the result equals the left-padded batch.
    model = tiny_model()
    right = torch.full((3, 8), EOT)
    rmask = torch.zeros(3, 8, dtype=torch.bool)
    for i, p in enumerate(PROMPTS):
        right[i, :len(p)] = torch.tensor(p)
        rmask[i, :len(p)] = True
    stripped = [row[m].tolist() for row, m in zip(right, rmask)]
    a = generate(model, stripped, max_new_tokens=6, eot_id=EOT, temperature=0)
    b = generate(model, PROMPTS, max_new_tokens=6, eot_id=EOT, temperature=0)
    assert torch.equal(a.response, b.response)


def test_sampler_logprobs_equal_a_full_forward_recomputation():
    model = tiny_model()
    s = generate(model, PROMPTS, max_new_tokens=10, eot_id=EOT, temperature=0.7,
                 generator=torch.Generator().manual_seed(0))
    seq, mask = s.sequences()
    P = s.prompt.shape[1]
    h = model(seq, attention_mask=mask)
    logits = model.logits(h[:, P - 1:-1]).float() / 0.7                 # states that predict the response
    lp = torch.log_softmax(logits, -1).gather(-1, s.response[..., None]).squeeze(-1)
    assert torch.allclose(lp * s.response_mask, sampler_logprobs(model, s, 0.7), atol=1e-5)


def test_k_samples_per_prompt_read_the_prompt_once_and_equal_passing_it_k_times():
    # generate(..., samples_per_prompt=k) computes each prompt once and copies its cache to k rows; the
    # tokens, masks and kept states must be those of passing every prompt k times (same random stream),
    # also when rows finish at different steps and leave the cache (the second model: EOT made likely).
    k = 3
    eager = tiny_model()
    with torch.no_grad():
        u = eager.transformer.ln_f.bias.normal_()
        eager.transformer.wte.weight[EOT] += 2.5 * u / u.dot(u)
    for model in (tiny_model(), eager):
        once = generate(model, PROMPTS, max_new_tokens=10, eot_id=EOT, temperature=1.0,
                        generator=torch.Generator().manual_seed(3), samples_per_prompt=k)
        repeated = generate(model, [p for p in PROMPTS for _ in range(k)], max_new_tokens=10, eot_id=EOT,
                            temperature=1.0, generator=torch.Generator().manual_seed(3))
        assert once.response.shape[0] == k * len(PROMPTS)
        for field in ("prompt", "prompt_mask", "response", "response_mask", "ended"):
            assert torch.equal(getattr(once, field), getattr(repeated, field)), field
        m = once.response_mask
        assert (once.hidden[m] - repeated.hidden[m]).abs().max() < 1e-5
        # rows p*k .. p*k+k-1 continue prompt p, and they differ from each other (independent samples)
        assert len({tuple(r) for r in once.response[:k].tolist()}) > 1
    lengths = once.response_mask.sum(1)
    assert lengths.min() < lengths.max()                  # the eager model's rows ended apart, and left the cache


def test_rows_dropped_from_the_cache_once_finished_keep_their_numbers(monkeypatch):
    # EOT gets a moderate head start, so rows end at different steps and the sampler drops finished
    # rows from its cache mid-way; every kept row's log-probs and states must still be exact.
    model = tiny_model()
    with torch.no_grad():
        u = model.transformer.ln_f.bias.normal_()
        model.transformer.wte.weight[EOT] += 2.5 * u / u.dot(u)
    prompts = [[(7 * i + j) % 90 + 1 for j in range(1 + i % 5)] for i in range(12)]
    kept = []
    reorder = KVCache.reorder
    monkeypatch.setattr(KVCache, "reorder", lambda self, index: (kept.append(len(index)), reorder(self, index)))
    s = generate(model, prompts, max_new_tokens=40, eot_id=EOT, temperature=1.0,
                 generator=torch.Generator().manual_seed(0))
    lengths = s.response_mask.sum(1)
    assert len(set(lengths.tolist())) >= 4 and int(lengths.min()) * 2 <= int(lengths.max())
    seq, mask = s.sequences()
    P = s.prompt.shape[1]
    h = model(seq, attention_mask=mask)[:, P - 1:-1]
    lp = torch.log_softmax(model.logits(h), -1).gather(-1, s.response[..., None]).squeeze(-1)
    m = s.response_mask
    assert (lp[m] - sampler_logprobs(model, s)[m]).abs().max() < 1e-5 and (h[m] - s.hidden[m]).abs().max() < 1e-5
    assert (s.response[~m] == EOT).all()
    assert kept and kept == sorted(kept, reverse=True) and kept[-1] < 12  # the cache did shrink


def test_generation_stops_at_eot_and_pads_after_it():
    model = tiny_model()
    force_token(model, EOT, 10.0)  # EOT overwhelmingly likely: every row ends at once
    s = generate(model, PROMPTS, max_new_tokens=10, eot_id=EOT, temperature=1.0,
                 generator=torch.Generator().manual_seed(0))
    assert s.ended.all()
    for i in range(3):
        n = int(s.response_mask[i].sum())
        assert s.response[i, n - 1] == EOT and (s.response[i, n:] == EOT).all()


def test_length_limit_marks_rows_as_not_ended():
    model = tiny_model()
    force_token(model, EOT, -10.0)  # EOT never wins greedily
    s = generate(model, PROMPTS, max_new_tokens=4, eot_id=EOT, temperature=0)
    assert s.response.shape == (3, 4) and not s.ended.any() and s.response_mask.all()


def test_same_generator_seed_gives_the_same_samples():
    model = tiny_model()
    a = generate(model, PROMPTS, 8, EOT, generator=torch.Generator().manual_seed(3))
    b = generate(model, PROMPTS, 8, EOT, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.response, b.response) and torch.equal(a.hidden, b.hidden)


def test_top_k_and_top_p_keep_the_expected_tokens():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    # probabilities ~ [0.64, 0.24, 0.09, 0.03]: the nucleus at 0.8 needs the first two tokens
    assert torch.isinf(filter_logits(logits, top_p=0.8)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.5)).tolist() == [[False, True, True, True]]


def test_left_pad_layout():
    ids, mask = left_pad([[1, 2], [3]], pad_id=0)
    assert ids.tolist() == [[1, 2], [0, 3]] and mask.tolist() == [[True, True], [False, True]]


def test_draw_follows_the_probabilities_and_never_picks_an_impossible_token():
    # sampling.draw replaces torch.multinomial (20x faster on CPU): its frequencies must match the
    # probabilities, a token of probability 0 must never come out, and broken numbers must raise.
    from reft_mini.sampling import draw
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2, 0.0]]).repeat(20000, 1)
    tokens = draw(probs, torch.Generator().manual_seed(0))
    freq = torch.bincount(tokens, minlength=5).float() / len(tokens)
    assert freq[1] == 0 and freq[4] == 0                       # zero probability, including the last token
    assert torch.allclose(freq, probs[0], atol=0.015), freq     # 3 standard errors is about 0.011
    # rows with different distributions; unnormalised weights work too (softmax output is only ~1)
    two = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    assert draw(two, torch.Generator().manual_seed(1)).tolist() == [0, 2]
    for bad in (float("nan"), float("inf")):
        with pytest.raises(RuntimeError, match="probability tensor"):
            draw(torch.tensor([[0.5, bad]]))
