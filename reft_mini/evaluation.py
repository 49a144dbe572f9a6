"""Answering held-out questions with a model: the shared path of training-time and final evaluation.

ReFT reports greedy accuracy (Sec. 4); majority voting and reranking sample k answers per question.
Both the training scripts (periodic accuracy) and evaluate.py go through `complete`, and every answer
is scored by reward.py, with the prompt built by data.py: one prompt format, one answer format, in one
place each, so training and evaluation can never disagree on what "correct" means.
"""

from __future__ import annotations

import torch

from reft_mini import data, reward
from reft_mini.sampling import generate


@torch.no_grad()
def complete(model, enc, problems, style: str, max_new_tokens: int, temperature: float = 0.0, k: int = 1,
             batch_size: int = 64, generator: torch.Generator | None = None, progress=None) -> list[list[str]]:
    """k completions (decoded text) per problem; temperature 0 = greedy (then k should be 1)."""
    prompts = [enc.encode_ordinary(data.format_prompt(p.question, style)) for p in problems]
    jobs = [(i, ids) for i, ids in enumerate(prompts) for _ in range(k)]
    # Similar lengths together waste less padding; the order is restored below.
    jobs.sort(key=lambda j: len(j[1]))
    out: list[list[str]] = [[] for _ in problems]
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        s = generate(model, [ids for _, ids in chunk], max_new_tokens, enc.eot_token, temperature=temperature,
                     generator=generator)
        for (i, _), row, m in zip(chunk, s.response.tolist(), s.response_mask.tolist()):
            toks = [t for t, keep in zip(row, m) if keep and t != enc.eot_token]
            out[i].append(enc.decode(toks))
        if progress is not None:
            progress.update(len(chunk))
    return out


def score(problems, completions: list[list[str]], style: str) -> list[list[float]]:
    """Reward (1 / partial / 0) of every completion, as in training."""
    return [[reward.reward(data.answer_text(p.question, c, style), p.answer, style) for c in cs]
            for p, cs in zip(problems, completions)]


def greedy_accuracy(model, enc, problems, style: str, max_new_tokens: int, batch_size: int = 64) -> float:
    """Share of problems whose greedy answer is right."""
    if not problems:
        return float("nan")
    comps = complete(model, enc, problems, style, max_new_tokens, temperature=0.0, batch_size=batch_size)
    rewards = score(problems, comps, style)
    return sum(r[0] == 1.0 for r in rewards) / len(problems)
