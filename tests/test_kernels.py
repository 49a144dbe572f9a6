"""Tests for reft_mini/kernels.py: the chunked fused log-prob/entropy kernel must give the same values and
gradients as the plain log_softmax + gather reference, eagerly and under torch.compile."""
import warnings

import pytest
import torch

from reft_mini import kernels
from reft_mini.kernels import reference_token_logprobs, token_logprobs

# Odd sizes on purpose: M = B*T = 21 positions in chunks of 5 -> 5, 5, 5, 5, 1 (uneven last chunk).
B, T, C, V, CHUNK = 3, 7, 16, 101, 5


def make_inputs(seed=0, dtype=torch.float32, h_grad=True, w_grad=True):
    g = torch.Generator().manual_seed(seed)
    # Scales chosen so the logits have std ~2 (like a trained LM head), not the std 4 of raw randn.
    hidden = (torch.randn(B, T, C, generator=g) * 0.7).to(dtype).requires_grad_(h_grad)
    weight = (torch.randn(V, C, generator=g) * 0.7).to(dtype).requires_grad_(w_grad)
    targets = torch.randint(0, V, (B, T), generator=g)
    g_logp = torch.randn(B, T, generator=g)      # random upstream gradients
    g_ent = torch.randn(B, T, generator=g)
    return hidden, weight, targets, g_logp, g_ent


def run(fn, hidden, weight, targets, g_logp, g_ent, temperature, with_entropy, **kw):
    """Forward, backward with the given upstream grads; return (logp, entropy, grad_h, grad_w)."""
    hidden.grad = weight.grad = None
    logp, ent = fn(hidden, weight, targets, temperature=temperature, with_entropy=with_entropy, **kw)
    loss = (logp * g_logp).sum()
    if with_entropy:
        loss = loss + (ent * g_ent).sum()
    loss.backward()
    return logp.detach(), None if ent is None else ent.detach(), hidden.grad, weight.grad


def check_against_reference(use_compile, temperature, with_entropy):
    hidden, weight, targets, g_logp, g_ent = make_inputs()
    ref = run(reference_token_logprobs, hidden, weight, targets, g_logp, g_ent, temperature, with_entropy)
    fused = run(token_logprobs, hidden, weight, targets, g_logp, g_ent, temperature, with_entropy,
                chunk_size=CHUNK, compile=use_compile)
    assert fused[0].dtype == torch.float32 and fused[0].shape == (B, T)
    torch.testing.assert_close(fused[0], ref[0], atol=1e-5, rtol=0)           # logp
    if with_entropy:
        torch.testing.assert_close(fused[1], ref[1], atol=1e-5, rtol=0)       # entropy
    else:
        assert fused[1] is None
    torch.testing.assert_close(fused[2], ref[2], atol=1e-5, rtol=1e-5)        # d/d hidden
    torch.testing.assert_close(fused[3], ref[3], atol=1e-5, rtol=1e-5)        # d/d weight


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("with_entropy", [True, False])
def test_fused_eager_matches_reference(temperature, with_entropy):
    check_against_reference(False, temperature, with_entropy)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("with_entropy", [True, False])
def test_fused_compiled_matches_reference(temperature, with_entropy):
    if not kernels.compile_available():
        pytest.skip("torch.compile unavailable (an earlier compile failed)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_against_reference(True, temperature, with_entropy)
    # a silent fallback to eager would make this test meaningless
    assert not [w for w in caught if "torch.compile failed" in str(w.message)]


def test_reference_is_log_softmax_of_scaled_logits():
    hidden, weight, targets, _, _ = make_inputs()
    logp, ent = reference_token_logprobs(hidden, weight, targets, temperature=0.5, with_entropy=True)
    logits = torch.einsum("btc,vc->btv", hidden.double(), weight.double()) / 0.5
    lp_all = torch.log_softmax(logits, -1)
    torch.testing.assert_close(logp.double(), lp_all.gather(-1, targets[..., None])[..., 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(ent.double(), -(lp_all.exp() * lp_all).sum(-1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("h_grad,w_grad", [(True, False), (False, True)])
def test_gradient_only_where_required(h_grad, w_grad):
    hidden, weight, targets, g_logp, g_ent = make_inputs(h_grad=h_grad, w_grad=w_grad)
    logp, ent = token_logprobs(hidden, weight, targets, with_entropy=True, chunk_size=CHUNK, compile=False)
    ((logp * g_logp).sum() + (ent * g_ent).sum()).backward()
    r_logp, r_ent = reference_token_logprobs(hidden.detach().requires_grad_(h_grad),
                                             weight.detach().requires_grad_(w_grad), targets, with_entropy=True)
    assert (hidden.grad is not None) == h_grad and (weight.grad is not None) == w_grad
    torch.testing.assert_close(logp, r_logp, atol=1e-5, rtol=0)


def test_unused_entropy_output_and_no_grad():
    hidden, weight, targets, g_logp, _ = make_inputs()
    # entropy requested but only logp used: its gradient arrives as None and must be skipped
    logp, ent = token_logprobs(hidden, weight, targets, with_entropy=True, chunk_size=CHUNK, compile=False)
    (logp * g_logp).sum().backward()
    gh, gw = hidden.grad.clone(), weight.grad.clone()
    _, _, rh, rw = run(reference_token_logprobs, hidden, weight, targets, g_logp, None, 1.0, False)
    torch.testing.assert_close(gh, rh, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gw, rw, atol=1e-5, rtol=1e-5)
    # under no_grad (rollout / reference scoring) it is a plain function
    with torch.no_grad():
        lp2, _ = token_logprobs(hidden, weight, targets, chunk_size=CHUNK, compile=False)
    torch.testing.assert_close(lp2, logp.detach())


@pytest.mark.parametrize("chunk_size", [1, 21, 1000])
def test_chunk_size_does_not_matter(chunk_size):
    hidden, weight, targets, _, _ = make_inputs(seed=3)
    ref, ref_ent = reference_token_logprobs(hidden, weight, targets, with_entropy=True)
    lp, ent = token_logprobs(hidden, weight, targets, with_entropy=True, chunk_size=chunk_size, compile=False)
    torch.testing.assert_close(lp, ref.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(ent, ref_ent.detach(), atol=1e-5, rtol=0)


def test_bf16_inputs_upcast_float32_outputs_grads_in_input_dtype():
    hidden, weight, targets, g_logp, g_ent = make_inputs(dtype=torch.bfloat16)
    lp, ent, gh, gw = run(token_logprobs, hidden, weight, targets, g_logp, g_ent, 1.0, True,
                          chunk_size=CHUNK, compile=False)
    assert lp.dtype == ent.dtype == torch.float32
    assert gh.dtype == gw.dtype == torch.bfloat16
    # The reference upcasts the same bf16 values, so values agree to float32 accuracy; the gradients
    # only to bf16 accuracy (they are rounded to bf16 on the way out).
    r_lp, r_ent, r_gh, r_gw = run(reference_token_logprobs, hidden, weight, targets, g_logp, g_ent, 1.0, True)
    torch.testing.assert_close(lp, r_lp, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent, r_ent, atol=1e-5, rtol=0)
    torch.testing.assert_close(gh.float(), r_gh.float(), atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(gw.float(), r_gw.float(), atol=2e-2, rtol=2e-2)


def test_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch):
    def broken_compile(fn, **kw):
        def raiser(*args):
            raise RuntimeError("no compiler here")
        return raiser
    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(kernels, "_compiled", {})
    monkeypatch.setattr(kernels, "_compile_broken", False)
    hidden, weight, targets, g_logp, g_ent = make_inputs()
    ref = run(reference_token_logprobs, hidden, weight, targets, g_logp, g_ent, 1.0, True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            out = run(token_logprobs, hidden, weight, targets, g_logp, g_ent, 1.0, True,
                      chunk_size=CHUNK, compile=True)
    assert len([w for w in caught if "torch.compile failed" in str(w.message)]) == 1
    assert not kernels.compile_available()
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_log_probs_stay_float32_inside_a_callers_bf16_autocast():
    # The warm-up calls the kernel inside bf16 autocast (CUDA); the kernel switches autocast off for its
    # own matmuls, so its values and gradients are the float32 ones. (CPU autocast runs the same code.)
    torch.manual_seed(0)
    hidden = torch.randn(2, 16, 32, requires_grad=True)
    weight = torch.randn(97, 32, requires_grad=True)
    targets = torch.randint(0, 97, (2, 16))
    want, _ = reference_token_logprobs(hidden, weight, targets)
    g_want = torch.autograd.grad(want.sum(), (hidden, weight))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = token_logprobs(hidden, weight, targets, chunk_size=CHUNK)
    assert got.dtype == torch.float32 and (got - want).abs().max() < 1e-5
    g_got = torch.autograd.grad(got.sum(), (hidden, weight))
    for a, b in zip(g_got, g_want):
        assert (a - b).abs().max() < 1e-5
