# Log-probabilities (and entropies) of chosen tokens under the language-model head, without ever holding
# the full (B, T, V) logits in memory: the hot loop of PPO.
#
# Where it sits in ReFT (arXiv 2401.08967, Section 3): every PPO step needs log pi(a_t | s_t) of each
# sampled token under the current policy (for the ratio), and each rollout needs it under the old policy
# and the frozen reference model (for the KL penalty). The plain way, logits = h @ W^T then log_softmax
# then gather, builds a (B, T, V) float32 tensor (B=64 sequences x T=128 tokens x V=50257 is 1.6 GB) and
# autograd keeps two or three of those alive for the backward pass. Out-of-memory from full-vocabulary
# log-softmax over long responses is a known complaint about RL fine-tuning code.
#
# The fused version below works on `chunk_size` positions at a time. Forward: per chunk, compute the
# (chunk, V) logits, reduce them to a few numbers per position (logsumexp, target log-prob, entropy)
# and throw them away. Backward (a custom torch.autograd.Function): recompute each chunk's logits from the
# saved hidden states and weight, form d(loss)/d(logits) for the chunk, and accumulate the gradients of
# hidden and weight chunk by chunk. Peak extra memory is O(chunk_size * V) instead of O(B * T * V); the
# price is one extra matmul (the logits are computed twice).
#
# The per-chunk math can be compiled with torch.compile, which fuses the elementwise work (exp, the
# reductions, the gradient formula) into a few loops over each (chunk, V) block instead of one pass per
# operation. Compilation is lazy (first call; a few seconds on a 2-core CPU, cached on disk by PyTorch
# afterwards) and any failure falls back to the eager code with a single warning. It is off unless a
# call passes compile=True (the scripts' --compile flag).
#
# Math (z = logits / temperature for one position, p = softmax(z), y = target id, lse = logsumexp(z),
# l_j = log p_j = z_j - lse):
#   log p(y)  = l_y = z_y - lse
#   entropy H = -sum_j p_j l_j          (computed exactly like this, from l, for float32 accuracy)
# Gradients with respect to the (temperature-scaled) logits z_k:
#   d lse / d z_k = p_k,    d l_j / d z_k = [j == k] - p_k,    d p_j / d z_k = p_j ([j == k] - p_k)
#   d log p(y) / d z_k = [k == y] - p_k                                   (one-hot minus softmax)
#   d H / d z_k = -sum_j (d p_j / d z_k) l_j - sum_j p_j (d l_j / d z_k)
#              = -(p_k l_k - p_k sum_j p_j l_j) - (p_k - p_k sum_j p_j)
#              = -p_k l_k - p_k H - 0          (sum_j p_j = 1, sum_j p_j l_j = -H)
#              = -p_k (l_k + H)
# With upstream gradients g (for log p(y)) and e (for H) of one position:
#   dL/dz_k = g [k == y] - p_k (g + e (l_k + H))
# Temperature: z = h' @ W^T with h' = h / temperature (scaling the (m, C) hidden chunk is much cheaper
# than scaling the (m, V) logits, and keeps the temperature out of the compiled code). With G = dL/dz:
#   dL/dh' = G @ W  (m, C)  ->  dL/dh = (G @ W) / temperature
#   dL/dW  = G^T @ h'  (V, C), summed over all chunks (h' already carries the 1/temperature)
# The backward needs lse and H per position, saved by the forward as two (M,) vectors.

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

# Default chunk: as many positions as make one (chunk, V) float32 block about 32 MiB (V = 50257 -> 166
# positions; a small vocabulary gets large chunks). Blocks under 32 MiB also stay below glibc's mmap
# threshold, so they are recycled from the heap instead of being freshly page-faulted for every chunk.
# Measured on a 2-core CPU at V = 50257, M = 8192 (forward + backward): at C = 128 chunks of 166 and
# 1024 positions ran equally fast compiled (eagerly 166 was 20% faster); at C = 768, 166 and 512 were
# equal and 2048 was 25% slower. Peak extra memory grows with the chunk (a few blocks are alive at once).
CHUNK_BYTES = 32 * 2**20


def default_chunk_size(vocab_size: int) -> int:
    return max(1, CHUNK_BYTES // (4 * vocab_size))

# ----------------------------------------------------------------------------------------------------------
# The plain reference (for reading and for tests)
# ----------------------------------------------------------------------------------------------------------


def reference_token_logprobs(hidden: Tensor, weight: Tensor, targets: Tensor, temperature: float = 1.0,
                             with_entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """log p(targets) (and the entropy) under softmax(hidden @ weight^T / temperature), the plain way.

    hidden (B, T, C) final hidden states (after ln_f); weight (V, C) output embedding; targets (B, T) long.
    Returns logp (B, T) float32 and entropy (B, T) float32 (or None). Materialises (B, T, V) float32
    logits: fine for small tests, the memory problem token_logprobs avoids.
    """
    # EXERCISE logprob: begin
    logits = (hidden.float() @ weight.float().t()) / temperature        # (B, T, V) float32
    logp_all = F.log_softmax(logits, dim=-1)                              # (B, T, V)
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)        # (B, T)
    entropy = None
    if with_entropy:
        entropy = -(logp_all.exp() * logp_all).sum(-1)                    # (B, T)
    # EXERCISE logprob: end
    return logp, entropy


# ----------------------------------------------------------------------------------------------------------
# Per-chunk math (the part torch.compile may fuse)
# ----------------------------------------------------------------------------------------------------------


# Both functions work in place on their (m, V) intermediates (sub_, exp_, mul_): in eager mode every
# out-of-place op would allocate and page in a fresh (m, V) buffer, and these passes are memory-bound.
# torch.compile rewrites in-place ops into its own fused loops, so the same code serves both paths.

def _chunk_forward(h: Tensor, w: Tensor, y: Tensor, with_entropy: bool) -> tuple[Tensor, Tensor, Tensor]:
    """One chunk of the forward. h (m, C) float32, already divided by the temperature; w (V, C) float32;
    y (m,) long. Returns (logp (m,), lse (m,), entropy (m,) or an empty tensor), all float32."""
    z = h @ w.t()                                                         # (m, V) scaled logits
    lse = torch.logsumexp(z, dim=-1)                                      # (m,)
    logp = z.gather(1, y[:, None]).squeeze(1) - lse                       # (m,) log p(y) = z_y - lse
    if with_entropy:
        logp_all = z.sub_(lse[:, None])                                   # l = log-softmax, (m, V), in z
        entropy = -(logp_all.exp() * logp_all).sum(-1)                    # H = -sum p l, (m,)
    else:
        entropy = lse.new_empty(0)
    return logp, lse, entropy


def _chunk_grad_logits(h: Tensor, w: Tensor, y: Tensor, lse: Tensor, entropy: Tensor | None,
                       g_logp: Tensor | None, g_ent: Tensor | None) -> Tensor:
    """One chunk of the backward: recompute the logits from h (m, C) (scaled, float32) and w (V, C), and
    return G = dL/dz = g [k == y] - p_k (g + e (l_k + H)), (m, V) float32 (derivation at the top of this
    file). g_logp / g_ent (m,) are the upstream gradients; either may be None (output unused)."""
    logp_all = (h @ w.t()).sub_(lse[:, None])                             # l = z - lse, (m, V), recomputed
    if g_ent is not None:
        p = logp_all.exp()                                                # (m, V)
        coef = logp_all.add_(entropy[:, None]).mul_(g_ent[:, None])       # e (l_k + H), reusing l's buffer
        if g_logp is not None:
            coef = coef.add_(g_logp[:, None])                             # g + e (l_k + H)
        grad = p.mul_(coef).neg_()                                        # -p_k (g + e (l_k + H))
    else:
        grad = logp_all.exp_().mul_(-g_logp[:, None])                     # -p_k g
    if g_logp is not None:
        grad = grad.scatter_add_(1, y[:, None], g_logp[:, None])          # + g [k == y]
    return grad


# ----------------------------------------------------------------------------------------------------------
# torch.compile switch (lazy, with eager fallback)
# ----------------------------------------------------------------------------------------------------------

# Compiling is asked for per call (`token_logprobs(..., compile=True)`; the scripts pass their --compile
# flag), never through a module-level switch, so what a call does is visible where it is made. It pays
# on CUDA, where fusing the elementwise work saves memory traffic; on CPU the first compile costs 5-15 s
# per process for a small gain at the demo's vocabulary, so the scripts' default is off. The compiled
# functions are built lazily on first use; if compiling fails we warn once and stay eager.
_compiled: dict[str, object] = {}
_compile_broken = False


def compile_available() -> bool:
    """True unless torch.compile is missing or an earlier compile attempt failed."""
    return hasattr(torch, "compile") and not _compile_broken


_EAGER = {"forward": _chunk_forward, "grad_logits": _chunk_grad_logits}


def _call(name: str, use_compile: bool, *args):
    """Run the per-chunk function `name`, compiled (built lazily on first use) when asked and available.
    On any compile failure: warn once, disable compilation for the process, and run the eager code."""
    global _compile_broken
    if use_compile and compile_available():
        if name not in _compiled:
            # dynamic=None: the first call compiles for its exact shapes; a second shape (typically the
            # shorter last chunk) recompiles once with symbolic sizes, which then serves every later shape.
            _compiled[name] = torch.compile(_EAGER[name], dynamic=None)
        try:
            return _compiled[name](*args)
        except Exception as exc:  # compile errors surface at call time, with many exception types
            _compile_broken = True
            warnings.warn(f"reft_mini.kernels: torch.compile failed ({type(exc).__name__}: {exc}); "
                          "using the eager per-chunk code from now on", RuntimeWarning, stacklevel=3)
    return _EAGER[name](*args)


# ----------------------------------------------------------------------------------------------------------
# The fused autograd function
# ----------------------------------------------------------------------------------------------------------


class _FusedTokenLogprobs(torch.autograd.Function):
    """(M, C) hidden, (V, C) weight, (M,) targets -> (M,) logp [, (M,) entropy], chunked both ways."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, temperature, with_entropy, chunk_size, use_compile):
        M = hidden.shape[0]
        inv_temp = 1.0 / temperature
        w32 = weight.float()          # upcast once (no copy if already float32), shared by all chunks
        logp = torch.empty(M, dtype=torch.float32, device=hidden.device)
        lse = torch.empty(M, dtype=torch.float32, device=hidden.device)
        entropy = torch.empty(M if with_entropy else 0, dtype=torch.float32, device=hidden.device)
        for s in range(0, M, chunk_size):
            e = min(s + chunk_size, M)
            h = hidden[s:e].float() * inv_temp                              # (m, C) float32, h / T
            lp, ls, ent = _call("forward", use_compile, h, w32, targets[s:e], with_entropy)
            logp[s:e] = lp
            lse[s:e] = ls
            if with_entropy:
                entropy[s:e] = ent
        # Saved for backward: references to the inputs (no copies) and two (M,) vectors. Never (M, V).
        ctx.save_for_backward(hidden, weight, targets, lse, entropy)
        ctx.inv_temp, ctx.chunk_size, ctx.use_compile = inv_temp, chunk_size, use_compile
        ctx.with_entropy = with_entropy
        ctx.set_materialize_grads(False)   # unused outputs arrive as None: skip their gradient terms
        if with_entropy:
            return logp, entropy
        return logp

    @staticmethod
    def backward(ctx, *grads):
        hidden, weight, targets, lse, entropy = ctx.saved_tensors
        g_logp = grads[0]
        g_ent = grads[1] if ctx.with_entropy else None
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if (g_logp is None and g_ent is None) or not (need_h or need_w):
            return None, None, None, None, None, None, None
        M, C = hidden.shape
        inv_temp = ctx.inv_temp
        w32 = weight.float()
        grad_h = torch.empty(M, C, dtype=torch.float32, device=hidden.device) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        for s in range(0, M, ctx.chunk_size):
            e = min(s + ctx.chunk_size, M)
            h = hidden[s:e].float() * inv_temp                              # (m, C), h / T as in forward
            G = _call("grad_logits", ctx.use_compile, h, w32, targets[s:e], lse[s:e],
                      None if g_ent is None else entropy[s:e],
                      None if g_logp is None else g_logp[s:e].float(),
                      None if g_ent is None else g_ent[s:e].float())        # (m, V) = dL/dz
            if need_h:
                torch.mm(G, w32, out=grad_h[s:e])                            # dL/dh' (m, C)
            if need_w:
                grad_w.addmm_(G.t(), h)                                      # (V, C) += (V, m) @ (m, C)
        if need_h:
            grad_h.mul_(inv_temp)                                            # dL/dh = dL/dh' / T
        return (None if grad_h is None else grad_h.to(hidden.dtype),
                None if grad_w is None else grad_w.to(weight.dtype),
                None, None, None, None, None)


def token_logprobs(hidden: Tensor, weight: Tensor, targets: Tensor, temperature: float = 1.0,
                   with_entropy: bool = False, chunk_size: int | None = None,
                   compile: bool = False) -> tuple[Tensor, Tensor | None]:
    """log p(targets) (and the entropy) under softmax(hidden @ weight^T / temperature), chunked.

    hidden (B, T, C) (any float dtype; bf16/fp16 are upcast to float32 chunk by chunk); weight (V, C);
    targets (B, T) long, valid ids in [0, V). Returns logp (B, T) float32 and entropy (B, T) float32 (or
    None), with the same values and gradients as reference_token_logprobs, but memory O(chunk_size * V)
    instead of O(B * T * V). Gradients flow to hidden and/or weight, whichever requires grad, and come
    back in their own dtypes. chunk_size = positions per chunk (None: default_chunk_size(V), a ~32 MiB
    float32 block of logits). compile: run the per-chunk code through torch.compile (eager when False).
    """
    if temperature <= 0:
        raise ValueError("temperature must be > 0 (greedy decoding has no log-probabilities to train on)")
    B, T, C = hidden.shape
    if chunk_size is None:
        chunk_size = default_chunk_size(weight.shape[0])
    flat_h = hidden.reshape(B * T, C)
    if not flat_h.is_contiguous():
        flat_h = flat_h.contiguous()
    flat_y = targets.reshape(B * T).long()
    # Autocast off inside: a caller's bf16 autocast (the warm-up's forward runs under it on CUDA) would
    # otherwise turn the logits matmul into bfloat16 (log-probs off by ~0.08 nats, measured with CPU bf16
    # autocast), and the backward, which recomputes the logits in float32, would disagree with the forward.
    with torch.autocast(hidden.device.type, enabled=False):
        out = _FusedTokenLogprobs.apply(flat_h, weight, flat_y, float(temperature), bool(with_entropy),
                                        int(chunk_size), bool(compile))
    if with_entropy:
        logp, entropy = out
        return logp.view(B, T), entropy.view(B, T)
    return out.view(B, T), None
