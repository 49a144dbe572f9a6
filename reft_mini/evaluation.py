"""Answering held-out questions with a model: the one path of training-time and final evaluation.

ReFT reports greedy accuracy (Sec. 4); majority voting and reranking sample k answers per question.
The training scripts (periodic greedy accuracy) and evaluate.py (greedy, maj@k, pass@k, rerank@k) both
go through `complete`, and every answer -- PPO's training samples included -- is scored by
`score_completion`, with the prompt built by `data.encode_prompt`: one prompt format, one decoding, one
answer reader, each in one place, so training and evaluation can never disagree on what "correct" means.
"""

from __future__ import annotations

import torch

from reft_mini import data, dist, reward
from reft_mini.sampling import generate


def score_completion(question: str, gold: str, completion: str, style: str,
                     partial: float = 0.1) -> tuple[str | None, float]:
    """(extracted answer, ReFT's reward 1 / partial / 0) of one completion of one question.

    The reward reads what the model wrote after the prompt: N-CoT, the completion itself; P-CoT, the
    program header from the prompt plus the completion (data.answer_text), run by the safe interpreter.
    A gold answer that is a letter a-e switches on multiple-choice extraction (reward.py)."""
    answer = reward.extract_answer(data.answer_text(question, completion, style), style,
                                   choices=reward.is_choice_answer(gold))
    return answer, reward.score_answer(answer, gold, partial)


@torch.no_grad()
def complete(model, enc, problems, style: str, max_new_tokens: int, temperature: float = 0.0, k: int = 1,
             batch_size: int = 64, generator: torch.Generator | None = None, progress=None,
             with_values: bool = False) -> tuple[list[list[str]], list[list[float]] | None]:
    """k completions (decoded text) per problem, and with_values the value head's score of each.

    temperature 0 = greedy (then k should be 1). A problem whose prompt does not fit the model's context
    gets no completion at all (an empty list): callers count it as unanswered, so every checkpoint is
    scored on the same questions out of the same total. Returns (texts, values or None), both indexed
    like `problems`. `progress` (a tqdm bar) advances by one per generated sequence.
    """
    prompts = [data.encode_prompt(enc, p.question, style) for p in problems]
    jobs = [(i, ids) for i, ids in enumerate(prompts) if len(ids) < model.config.block_size for _ in range(k)]
    # Similar lengths together waste less padding (sort is stable: a problem's k samples stay in order);
    # the results go back to their problems below, so the order of `problems` is what callers see.
    jobs.sort(key=lambda j: len(j[1]))
    texts: list[list[str]] = [[] for _ in problems]
    values: list[list[float]] = [[] for _ in problems]
    device = model.lm_weight().device
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        with dist.autocast(device):
            s = generate(model, [ids for _, ids in chunk], max_new_tokens, enc.eot_token,
                         temperature=temperature, generator=generator)
        for (i, _), row, mask in zip(chunk, s.response.tolist(), s.response_mask.tolist()):
            texts[i].append(data.decode_completion(enc, row, mask))
        if with_values:
            # Rerank@k needs a score for the whole answer. We read the value head (a cheap stand-in for
            # ReFT's separately trained reranker, which also scores prompt + whole answer) at the LAST
            # STATE PPO TRAINED IT ON: the state that emits the final token (EOT, or the last token of an
            # unfinished answer), i.e. column P + len - 2 of prompt+response. PPO puts the score on that
            # final token, so V there predicts "will this answer be right?" having read the whole answer.
            # (The state *after* EOT is never a PPO target: the episode is over.) That state is the one
            # the sampler kept for the final token, s.hidden[b, len - 1]: no second forward pass needed.
            lens = s.response_mask.sum(1)                                  # (B,) generated tokens incl. EOT
            last = s.hidden[torch.arange(len(lens), device=lens.device), lens - 1]   # (B,C)
            v = model.values(last.float())                                 # (B,)
            for (i, _), val in zip(chunk, v.tolist()):
                values[i].append(val)
        if progress is not None:
            progress.update(len(chunk))
    return texts, (values if with_values else None)


def greedy_accuracy(model, enc, problems, style: str, max_new_tokens: int, batch_size: int = 64) -> float:
    """Share of problems whose greedy answer is right (a prompt too long for the context counts as wrong)."""
    if not problems:
        return float("nan")
    texts, _ = complete(model, enc, problems, style, max_new_tokens, temperature=0.0, batch_size=batch_size)
    right = sum(bool(t) and score_completion(p.question, p.answer, t[0], style)[1] == 1.0
                for p, t in zip(problems, texts))
    return right / len(problems)
