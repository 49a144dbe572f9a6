"""Batched generation with a KV cache: how ReFT's policy writes its chains of thought.

In ReFT's RL stage (Luong et al., 2024, Sec. 3) every iteration samples a chain of thought for each
training question from the current policy (temperature 1.0, no top-k/top-p in the paper), and PPO later
needs the log-probability the sampler gave to each token ("old" log-probs) and the value of each state:
the sampler keeps the hidden state that predicted each token (`Samples.hidden`), so PPO need not run
the policy over the rollout again. Evaluation uses the same function greedily (temperature 0) and for
majority voting (temperature 1, k samples).

Layout of a batch (B prompts of different lengths, P = longest prompt, N = longest response):

    prompt   (B,P)  LEFT-padded:   [pad pad q1 q2 q3]      every prompt ends in the last column, so
                                   [ q1 q2 q3 q4 q5 ]      all rows take their next step together
    response (B,N)  RIGHT-padded:  [a1 a2 EOT pad pad]     generation stops per row at EOT
                                   [a1 a2 a3 a4 a5]        (or at max_new_tokens: `ended` is False)

Padding never changes the numbers: the model masks pad keys and counts positions over real tokens
only, so a prompt sampled in a batch gets the same tokens and hidden states as sampled alone (tested).

RL samples k chains of thought per question. With `samples_per_prompt=k` each prompt is read once and
its keys/values stay in the cache once, shared by its k rows (model.KVCache.share_prefix): the same
numbers as passing the prompt k times (tested), without computing or re-reading it k times. Rows
p*k .. p*k+k-1 of the result belong to prompt p.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Samples:
    prompt: torch.Tensor         # (B,P) long, left-padded prompts (pad id = EOT)
    prompt_mask: torch.Tensor    # (B,P) bool, True on real prompt tokens
    response: torch.Tensor       # (B,N) long, generated tokens, right-padded after the EOT
    response_mask: torch.Tensor  # (B,N) bool, True on generated tokens, including the EOT that ended it
    ended: torch.Tensor          # (B,) bool, True when the row emitted EOT before max_new_tokens
    hidden: torch.Tensor | None = None  # (B,N,C) final hidden state that *predicted* each response token

    def sequences(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt and response side by side, (B,P+N), with the matching attention mask."""
        return torch.cat([self.prompt, self.response], 1), torch.cat([self.prompt_mask, self.response_mask], 1)


def left_pad(prompts: list[list[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """List of token-id lists -> (B,P) left-padded ids and (B,P) bool mask."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    P = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), P), dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids[i, P - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, P - len(p):] = True
    return ids.to(device), mask.to(device)


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set logits outside the top-k / nucleus (top-p) set to -inf. logits: (B,V)."""
    # EXERCISE sampling: begin
    if top_k is not None and 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]       # (B,1) the k-th largest logit
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens strictly more likely than it already cover top_p of the mass;
        # the most likely token is therefore always kept.
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    # EXERCISE sampling: end
    return logits


def draw(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row from probs (A,V), by inverting the cumulative distribution: (A,) token ids.

    A uniform u in [0, total) falls into exactly one token's interval [cdf[j-1], cdf[j]), whose length is
    that token's probability; a token of probability 0 has an empty interval and is never drawn (in float
    arithmetic too: adding 0 leaves the running sum unchanged, and u < total always). This is what
    torch.multinomial does for one sample, but multinomial took 4.3 ms per (128, 2048) call on the
    development CPU against 0.2 ms here, which was 8% of a whole PPO iteration.
    """
    cdf = probs.cumsum(-1)                                                 # (A,V) running sums
    total = cdf[:, -1:]                                                    # (A,1), 1 up to rounding
    if not bool(torch.isfinite(total).all() and (total > 0).all()):
        # The message train_ppo.py recognises (it is torch.multinomial's own) to stop a diverged run.
        raise RuntimeError("probability tensor contains either inf, nan or element < 0")
    u = torch.rand(total.shape, generator=generator, device=probs.device, dtype=probs.dtype) * total
    return torch.searchsorted(cdf, u, right=True).squeeze(1)               # first j with cdf[j] > u


@torch.no_grad()
def generate(model, prompts: list[list[int]], max_new_tokens: int, eot_id: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | None = None, drop_finished: bool = True,
             samples_per_prompt: int = 1) -> Samples:
    """Sample continuations of `prompts` until EOT or `max_new_tokens`.

    samples_per_prompt=k: k continuations of each prompt, in rows p*k .. p*k+k-1 of the result (B = k x
    the number of prompts). The prompt is read once and its keys/values are copied to its k rows, which
    gives the same numbers as passing each prompt k times, without computing the prompt k times.

    drop_finished=False keeps finished rows in the batch to the end (slower, same numbers: for the
    benchmark and the tests).

    temperature 0 means greedy decoding. The sampler returns no log-probs of its own: PPO computes
    log pi_old from `Samples.hidden` with the same kernel (kernels.token_logprobs) it later uses for the
    ratio, under the *temperature-scaled full* distribution (top-k/top-p only restrict which tokens may
    be drawn), so the two can never be computed differently.
    """
    device = model.lm_weight().device
    prompt, prompt_mask = left_pad(prompts, eot_id, device)                # (G,P), one row per prompt
    G, P = prompt.shape
    B = G * samples_per_prompt
    if P + max_new_tokens > model.config.block_size:
        max_new_tokens = model.config.block_size - P  # never run past the position table
        if max_new_tokens <= 0:
            raise ValueError(f"prompt of {P} tokens does not fit block_size={model.config.block_size}")
    was_training = model.training
    model.eval()  # sampling never uses dropout (ReFT's rollouts run the model in eval mode)

    cache = model.new_kv_cache(G, P + max_new_tokens)
    h = model(prompt, attention_mask=prompt_mask, kv_cache=cache)[:, -1]   # (G,C) state after each prompt
    if samples_per_prompt > 1:  # k rows per prompt, which all read the prompt's one copy in the cache
        cache.share_prefix(samples_per_prompt, prompt_mask)
        copies = torch.arange(G, device=device).repeat_interleave(samples_per_prompt)   # (B,) 0,0,..,1,1,..
        h, prompt, prompt_mask = h[copies], prompt[copies], prompt_mask[copies]
    mask = torch.zeros((B, P + max_new_tokens), dtype=torch.bool, device=device)  # grows as we go
    mask[:, :P] = prompt_mask
    response = torch.full((B, max_new_tokens), eot_id, dtype=torch.long, device=device)
    response_mask = torch.zeros((B, max_new_tokens), dtype=torch.bool, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    next_pos = prompt_mask.sum(1)                                          # (B,) position of the next token

    hidden = h.new_zeros((B, max_new_tokens, h.shape[-1]))                 # PPO reuses these states
    # The cache holds A <= B rows: `rows` (A,) says which batch row each one is, `alive` (A,) which of
    # them still write. Finished rows are dropped from the cache now and then (below).
    rows = torch.arange(B, device=device)
    alive = torch.ones(B, dtype=torch.bool, device=device)
    n = 0
    for n in range(max_new_tokens):
        hidden[rows, n] = h
        logits = model.logits(h).float()                                   # (A,V)
        scaled = logits / temperature if temperature > 0 else logits
        if temperature > 0:
            probs = torch.softmax(filter_logits(scaled, top_k, top_p), dim=-1)
            token = draw(probs, generator)
        else:
            token = logits.argmax(-1)
        token = torch.where(alive, token, torch.full_like(token, eot_id))  # finished rows only pad
        response[rows, n] = token
        response_mask[rows, n] = alive
        done[rows] |= token == eot_id
        alive = alive & (token != eot_id)
        if not bool(alive.any()) or n == max_new_tokens - 1:
            break
        if drop_finished and 4 * int((~alive).sum()) >= len(rows):
            # A finished row would still cost a full step of compute (its attention reads the whole
            # cache) until the longest row ends. Drop finished rows once they are a quarter of the
            # cache: copying the cache costs too, so not at every step. Each row's numbers stay what
            # they are in any batch (padding-invariance, tested); only the random stream's order changes.
            keep = alive.nonzero().squeeze(1)
            cache.reorder(keep)
            rows, alive, token, mask, next_pos = rows[keep], alive[keep], token[keep], mask[keep], next_pos[keep]
        mask[:, P + n] = alive
        h = model(token[:, None], attention_mask=mask[:, :P + n + 1], positions=next_pos[:, None],
                  kv_cache=cache)[:, -1]
        next_pos = next_pos + 1
    model.train(was_training)
    N = n + 1
    return Samples(prompt, prompt_mask, response[:, :N], response_mask[:, :N], done.clone(), hidden[:, :N])
