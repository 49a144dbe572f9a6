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

    def packed(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The same tokens with every row's padding moved to its end: (B,P+N) ids, (B,N) state index.

            sequences(): [pad pad q1 q2 | a1 a2 EOT pad]      packed(): [q1 q2 a1 a2 EOT pad pad pad]

        With no padding before or between real tokens, a plain causal forward (no attention mask,
        positions 0,1,2,...) computes exactly what the masked forward computes for every real token,
        and it takes PyTorch's fused causal-attention path, which is faster (forward and backward)
        than attention with an explicit (B,1,T,S) mask. Trailing pads only see what comes before them
        and no real token sees them. index[b, t] is the position whose state predicts response token t
        (the last prompt token for t = 0): gather the states there.
        """
        B, P = self.prompt.shape
        N = self.response.shape[1]
        lens = self.prompt_mask.sum(1)                                      # (B,) real prompt tokens
        seq = torch.cat([self.prompt, self.response], 1)                    # (B,P+N)
        # Row b starts at column P - lens[b]; rotating it left by that much brings the pads to the end.
        cols = (torch.arange(P + N, device=seq.device)[None] + (P - lens)[:, None]) % (P + N)
        index = lens[:, None] - 1 + torch.arange(N, device=seq.device)[None]  # (B,N)
        return seq.gather(1, cols), index


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


@torch.no_grad()
def generate(model, prompts: list[list[int]], max_new_tokens: int, eot_id: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | None = None, drop_finished: bool = True) -> Samples:
    """Sample continuations of `prompts` until EOT or `max_new_tokens`.

    drop_finished=False keeps finished rows in the batch to the end (slower, same numbers: for the
    benchmark and the tests).

    temperature 0 means greedy decoding. The sampler returns no log-probs of its own: PPO computes
    log pi_old from `Samples.hidden` with the same kernel (kernels.token_logprobs) it later uses for the
    ratio, under the *temperature-scaled full* distribution (top-k/top-p only restrict which tokens may
    be drawn), so the two can never be computed differently.
    """
    device = model.lm_weight().device
    prompt, prompt_mask = left_pad(prompts, eot_id, device)
    B, P = prompt.shape
    if P + max_new_tokens > model.config.block_size:
        max_new_tokens = model.config.block_size - P  # never run past the position table
        if max_new_tokens <= 0:
            raise ValueError(f"prompt of {P} tokens does not fit block_size={model.config.block_size}")
    was_training = model.training
    model.eval()  # sampling never uses dropout (ReFT's rollouts run the model in eval mode)

    cache = model.new_kv_cache(B, P + max_new_tokens)
    mask = torch.zeros((B, P + max_new_tokens), dtype=torch.bool, device=device)  # grows as we go
    mask[:, :P] = prompt_mask
    response = torch.full((B, max_new_tokens), eot_id, dtype=torch.long, device=device)
    response_mask = torch.zeros((B, max_new_tokens), dtype=torch.bool, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    next_pos = prompt_mask.sum(1)                                          # (B,) position of the next token

    h = model(prompt, attention_mask=mask[:, :P], kv_cache=cache)[:, -1]   # (B,C) state after the prompt
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
            token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
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
