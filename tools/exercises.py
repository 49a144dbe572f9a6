# tools/exercises.py -- classroom exercises: holes cut into the real code, with checks that explain.
#
# In the style of OpenAI's Spinning Up exercises: each exercise is a region of the real implementation,
# marked in the source with two comment lines
#
#     # EXERCISE gae: begin
#     ...the reference code: a self-contained block of statements inside one function...
#     # EXERCISE gae: end
#
# `make DIR` writes a student copy of the repository in which the body of every region is replaced by
# the exercise's instructions (as comments) and a `raise NotImplementedError`. The student fills the
# hole and runs `check NAME`, which calls their function on small hand-made cases and, when something
# is off, prints expected against got and a hint aimed at the usual mistake (lambda ignored in GAE, KL
# sign flipped, ratio not clipped, no causal mask, ...).
#
# The checks never call the reference implementation (that is what the student is replacing): every
# expected number is either written out below (worked out by hand in the comments) or computed by a
# small independent re-implementation in this file. They import the `reft_mini` package of the copy
# this file belongs to (the holes are in reft_mini/, this tool in tools/ beside it), i.e. the student's
# copy when run inside it (`python tools/exercises.py check gae` from the copy's root; started from a
# sub-folder, or as another copy's tools/exercises.py, it re-runs the copy's own tool at the copy's root).
#
# A script, run from the repository root (it is a tool, not part of the reft_mini package):
#
#     python tools/exercises.py list [--markdown]     the exercises, difficulty, time
#     python tools/exercises.py show NAME             the instructions of one exercise
#     python tools/exercises.py make DIR [--only a,b] write a student copy (all or some holes)
#     python tools/exercises.py check NAME[,NAME]|all run the checks (exit status 0 = all passed)

from __future__ import annotations

import argparse
import importlib
import math
import os
import re
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

PACKAGE = "reft_mini"
TOOL = Path("tools") / "exercises.py"                 # where this file lives, relative to a copy's root
REPO_ROOT = Path(__file__).resolve().parents[1]       # the copy this file belongs to
PACKAGE_DIR = REPO_ROOT / PACKAGE                     # the reft_mini/ whose code the checks import
# Run as `python tools/exercises.py`, Python puts tools/ on sys.path, not the copy's root, and an
# installed reft_mini (e.g. the teacher's editable install) would be found instead: put this copy's
# root first, so `reft_mini` means the code next to this file.
if str(REPO_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(REPO_ROOT))

# ----------------------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exercise:
    name: str
    file: str                 # path of the source file, relative to the repository root
    title: str
    stars: int                # difficulty 1..3
    minutes: int              # time estimate
    instructions: str         # a few lines; written into the student copy as comments
    check: Callable[[], None] = field(repr=False)   # raises CheckFailed (or anything) when wrong
    needs: tuple[str, ...] = ()      # other exercises whose code this check also runs
    defines: tuple[str, ...] = ()    # names the code after the region reads: the region must bind them


class CheckFailed(AssertionError):
    """A check found a wrong result; the message says what, on which input, and why (probably)."""


class Blocked(Exception):
    """The check could not finish because another exercise's code is still a hole."""

    def __init__(self, other: str, note: str = ""):
        super().__init__(other, note)
        self.other, self.note = other, note


EXERCISES: dict[str, Exercise] = {}


def _register(name, file, title, stars, minutes, instructions, needs=(), defines=()):
    def wrap(check):
        EXERCISES[name] = Exercise(name, file, title, stars, minutes, instructions.strip("\n"), check,
                                   tuple(needs), tuple(defines))
        return check
    return wrap


def _mod(name: str):
    """A module of the package this file belongs to (the student's copy when run inside it)."""
    return importlib.import_module(f"{PACKAGE}.{name}")


# ----------------------------------------------------------------------------------------------------
# Small helpers for the checks: formatting and comparing
# ----------------------------------------------------------------------------------------------------

def _num(x: float) -> str:
    if isinstance(x, bool):
        return str(x)
    if x != x:
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    s = f"{x:.4f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _fmt(x) -> str:
    """A tensor / list / number as a short readable list: [0.1732, 0.31, 0.5, 0]."""
    import torch
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().tolist() if x.is_floating_point() else x.detach().cpu().tolist()
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in x) + "]"
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return _num(float(x)) if isinstance(x, float) else str(x)
    return repr(x)


def _runs(bits: list[int]) -> str:
    """A 0/1 list, run-length encoded: [0 x41, 1 x17]."""
    out, i = [], 0
    while i < len(bits):
        j = i
        while j < len(bits) and bits[j] == bits[i]:
            j += 1
        out.append(f"{bits[i]} x{j - i}")
        i = j
    return "[" + ", ".join(out) + "]"


def _close(a, b, atol: float = 1e-5) -> bool:
    """Same shape and values (infinities must match exactly, nan never matches)."""
    import torch
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        return False
    if a.shape != b.shape:
        return False
    return bool(torch.allclose(a.detach().double().cpu(), b.detach().double().cpu(), atol=atol, rtol=1e-5))


def _tensor(x, what: str):
    import torch
    if not isinstance(x, torch.Tensor):
        raise CheckFailed(f"{what} should be a torch.Tensor, got {type(x).__name__}: {x!r}"[:300])
    return x


def _compare(case: str, expected, got, variants=(), default_hint: str = "", what: str = "result",
             atol: float = 1e-5, view=None) -> None:
    """Raise CheckFailed unless got == expected; name the first known mistake whose output got equals.
    view: shows only part of big tensors, e.g. lambda t: t[0, :, 0] (then `what` should say which part)."""
    import torch
    got = _tensor(got, what)
    if _close(got, expected, atol):
        return
    lines = [case]
    if got.shape != expected.shape:
        lines.append(f"  {what}: expected shape {tuple(expected.shape)}, got shape {tuple(got.shape)}")
    else:
        show = view or (lambda t: t)
        lines.append(f"  expected {what} {_fmt(show(expected))}")
        lines.append(f"  got      {what} {_fmt(show(got))}")
    hint = default_hint
    for candidate, variant_hint in variants:
        if isinstance(candidate, torch.Tensor) and _close(got, candidate, atol):
            hint = variant_hint
            break
    else:
        if got.is_floating_point() and torch.isnan(got).any():
            hint = ("there is a nan in your result. Padding positions may hold garbage (inf/nan): select "
                    "with torch.where(mask, x, 0) rather than multiplying by the mask (nan * 0 = nan). "
                    + default_hint)
    if hint:
        lines.append(f"  hint: {hint}")
    raise CheckFailed("\n".join(lines))


# ====================================================================================================
# The exercises, in the order a student might do them
# ====================================================================================================

# ---------------------------------------------------------------------------------- extract_answer

@_register("extract_answer", "reft_mini/reward.py", "Answer extraction from an N-CoT", 2, 20, """
Read the answer a natural-language chain of thought (N-CoT) commits to. ReFT, Sec. 3 (the reward):
the environment extracts an answer from the CoT: reward 1 if right, 0.1 if extracted but wrong, 0 if none.
In: text (str), choices (bool: multiple choice). Return a canonical answer string ("72", "-3.5", "b") or None.
1. Find the LAST answer trigger: list(_TRIGGER.finditer(text)) ("####" or "answer is", any case).
   No trigger at all -> return None (do not fall back on the last number of the text).
2. Take the text after it, strip leading spaces, tabs, colons and newlines, keep only its first line.
3. choices: m = _CHOICE.match(line) -> m.group(1).lower(), or None.
   numbers: m = _NUMBER.search(line) -> _number_from_match(m) (canonical: "1,080" -> "1080"), or None.
Hint: a model may write "the answer is" mid-way and then correct itself: the last trigger counts.
""")
def _check_extract_answer():
    reward = _mod("reward")
    # (text, choices, expected, hint shown when this case goes wrong)
    cases = [
        ("3*8=24. 24/2=12.\n#### 12", False, "12",
         "the answer is the first number after the trigger ('####' here)"),
        ("Therefore, the answer is <203>.", False, "203",
         "'answer is' is a trigger too; the number may sit in <..>: search for it with _NUMBER.search(line)"),
        ("The answer is 5. Wait: 2+4=6. The answer is 6.", False, "6",
         "use the LAST trigger (the model corrected itself): list(_TRIGGER.finditer(text))[-1]"),
        ("5 apples and 7 pears.\n#### 1,080", False, "1080",
         "return the canonical spelling: _number_from_match(m) turns '1,080' into '1080'"),
        ("The answer is: $-3.50", False, "-3.5",
         "return the canonical spelling via _number_from_match(m) (sign, '$', trailing zeros)"),
        ("2+3=5, so we get 5", False, None,
         "no trigger means nothing extractable (reward 0): do not fall back on the last number"),
        ("The answer is unknown.", False, None,
         "no number after the trigger: return None"),
        ("The answer is:\n72", False, "72",
         "the answer may be on the line after 'is:' -- strip spaces, colons and newlines before taking the line"),
        ("The answer is unclear.\nStep 9 was wrong", False, None,
         "read only the trigger's line: a number on a later line is not the answer"),
        ("The answer is (b).", True, "b",
         "choices=True: match an option letter with _CHOICE.match(line) and return it lower-cased"),
        ("so the answer is C", True, "c",
         "choices=True: return the letter lower-cased ('c')"),
    ]
    for text, choices, expected, hint in cases:
        got = reward.extract_answer(text, "nl", choices=choices)
        if got != expected:
            extra = ""
            if got is not None and not isinstance(got, str):
                extra = f" (return a str such as '12', not a {type(got).__name__})"
            raise CheckFailed(f"extract_answer({text!r}, 'nl', choices={choices}):\n"
                              f"  expected {expected!r}\n  got      {got!r}{extra}\n  hint: {hint}")


# ---------------------------------------------------------------------------------- majority_vote

@_register("majority_vote", "reft_mini/reward.py", "Majority vote over sampled answers", 1, 10, """
Majority voting over sampled answers (ReFT's evaluation votes over 100 samples at temperature 1.0).
In: answers, a list of str or None (None = nothing extracted). Return the most common answer as a
canonical string, or None when there is no answer at all.
- Count canonical keys, not raw strings: _answer_key("72.0") == _answer_key("$72") == "72"; skip None.
- Ties go to the answer that was seen first (a dict keeps insertion order).
- Return the key itself ("72", "b"), not one of the raw spellings.
Hint: counts[key] = counts.get(key, 0) + 1, then the first key whose count is the maximum.
""")
def _check_majority_vote():
    reward = _mod("reward")
    cases = [
        (["72", "72.0", "5", "$72", "5"], "72",
         "'72', '72.0' and '$72' are the same answer (3 votes against 2 for '5'): count _answer_key(answer), "
         "not the raw strings"),
        (["5", "6", "6", "5"], "5", "a tie goes to the answer that appeared first"),
        ([None, None, None, "3"], "3", "None means 'nothing extracted', it is not an answer: skip it"),
        ([None, None], None, "no answer at all: return None"),
        ([], None, "an empty list: return None"),
        (["72.0"], "72", "return the canonical key ('72'), not the raw spelling ('72.0')"),
        (["B", "b", "c"], "b", "letters count case-insensitively; return the canonical lower-case letter"),
    ]
    for answers, expected, hint in cases:
        got = reward.majority_vote(list(answers))
        if got != expected:
            raise CheckFailed(f"majority_vote({answers!r}):\n  expected {expected!r}\n  got      {got!r}\n"
                              f"  hint: {hint}")


# ---------------------------------------------------------------------------------- loss_mask

@_register("loss_mask", "reft_mini/data.py", "SFT encoding with an answer-only loss mask", 1, 10, """
The supervised warm-up (ReFT, Sec. 3, stage 1: fine-tune on question + chain of thought) learns the
answer only: the model is never trained to write questions. In: enc (tokenizer), problem, style.
Define three lists of ints:
  prompt_ids  tokens of format_prompt(problem.question, style) (for "program" it includes the header)
  ids         prompt_ids + tokens of target_completion(problem, style) + [enc.eot_token]
  mask        0 on every prompt token, 1 on every completion token and on the final EOT
Tokenise the prompt and the completion separately, each with enc.encode_ordinary: BPE over the joined
text may merge tokens across the boundary, and text that looks like <|endoftext|> must stay text.
Hint: the EOT gets mask 1 -- predicting it is how the model learns to stop. The code below reads prompt_ids.
""", defines=("prompt_ids", "ids", "mask"))
def _check_loss_mask():
    data = _mod("data")

    class CharEnc:
        """Every character is a token (id = its code point), except the pair "\\nS", which is one token
        (999), like a BPE merge; end-of-text is 1000. No .encode(): use encode_ordinary."""
        eot_token = 1000

        def encode_ordinary(self, text):
            out, i = [], 0
            while i < len(text):
                if text.startswith("\nS", i):
                    out.append(999)
                    i += 2
                else:
                    out.append(ord(text[i]))
                    i += 1
            return out

    enc = CharEnc()
    program = 'def solution():\n    """What is 2+3?"""\n    s = 2 + 3\n    return s'
    problem = data.Problem(id="p1", question="What is 2+3?", answer="5", cot_nl="So 2+3=5.\n#### 5",
                           cot_program=program, source="exercise")
    for style in ("nl", "program"):
        prompt = data.format_prompt(problem.question, style)
        completion = data.target_completion(problem, style)
        p_ids, c_ids = enc.encode_ordinary(prompt), enc.encode_ordinary(completion)
        exp_ids = p_ids + c_ids + [enc.eot_token]
        exp_mask = [0] * len(p_ids) + [1] * (len(c_ids) + 1)
        case = (f"encode_sft(enc, problem, {style!r}, max_len=500) with a character-level test tokenizer, "
                f"prompt {prompt!r}, completion {completion!r}:")
        try:
            got_ids, got_mask = data.encode_sft(enc, problem, style, 500)
        except AttributeError as e:
            raise CheckFailed(f"{case}\n  your code raised AttributeError: {e}\n  hint: tokenise with "
                              "enc.encode_ordinary(text); the end-of-text id is enc.eot_token") from None
        got_ids = [int(x) for x in got_ids]
        got_mask = [int(x) for x in got_mask]
        if got_ids != exp_ids:
            if got_ids == p_ids + c_ids:
                hint = "append the end-of-text token: ids = prompt_ids + completion_ids + [enc.eot_token]"
            elif got_ids == enc.encode_ordinary(prompt + completion) + [enc.eot_token]:
                hint = ("you tokenised prompt + completion as one text, and a merge crossed the boundary "
                        "('\\n' + 'S' became one token): tokenise the two separately and concatenate")
            elif style == "program":
                hint = ("for style 'program' the program header is part of the prompt: use "
                        "format_prompt(problem.question, style) and target_completion(problem, style)")
            else:
                hint = "ids = encode_ordinary(format_prompt(...)) + encode_ordinary(target_completion(...)) + [eot]"
            i = next((j for j, (a, b) in enumerate(zip(exp_ids, got_ids)) if a != b), min(len(exp_ids), len(got_ids)))
            raise CheckFailed(f"{case}\n  expected {len(exp_ids)} ids, got {len(got_ids)}; the first difference is at "
                              f"position {i} (the prompt has {len(p_ids)} tokens):\n"
                              f"  expected ids[{i}:{i + 4}] {exp_ids[i:i + 4]}\n  got      ids[{i}:{i + 4}] "
                              f"{got_ids[i:i + 4]}\n  hint: {hint}")
        if len(got_mask) != len(got_ids):
            raise CheckFailed(f"{case}\n  the mask has {len(got_mask)} entries for {len(got_ids)} ids\n"
                              "  hint: one mask entry per token id, the EOT included")
        if got_mask != exp_mask:
            if all(m == 1 for m in got_mask):
                hint = ("prompt tokens are included in the loss mask: the model would be trained to write "
                        "questions; put 0 on the prompt tokens")
            elif got_mask == exp_mask[:-1] + [0]:
                hint = "the final EOT must have mask 1: predicting it is how the model learns to stop"
            elif got_mask == [1 - m for m in exp_mask]:
                hint = "the mask is the wrong way round: 0 on the prompt, 1 on the completion and EOT"
            else:
                hint = "mask = [0] * len(prompt_ids) + [1] * (len(completion_ids) + 1)"
            raise CheckFailed(f"{case}\n  expected mask {_runs(exp_mask)} ({len(p_ids)} prompt tokens, {len(c_ids)} "
                              f"completion tokens, EOT)\n  got      mask {_runs(got_mask)}\n  hint: {hint}")
    # Too long: the code after the region raises a ValueError that mentions len(prompt_ids).
    try:
        data.encode_sft(enc, problem, "nl", 10)
    except ValueError:
        pass
    else:
        raise CheckFailed("encode_sft(..., max_len=10) on a 50-token example should raise ValueError\n"
                          "  hint: keep the length check after the region; it needs `ids` and `prompt_ids`")


# ---------------------------------------------------------------------------------- logprob

@_register("logprob", "reft_mini/kernels.py", "Token log-probabilities and entropy", 1, 15, """
log pi(a_t | s_t) of each chosen token: PPO's ratio and ReFT's KL penalty are built from it (Sec. 3).
In: hidden (B,T,C) final hidden states, weight (V,C) the output embedding, targets (B,T) long,
temperature (float), with_entropy (bool).
Define logp (B,T) float32 = log softmax(hidden @ weight^T / temperature) taken at the target id, and
entropy (B,T) float32 = -sum_v p_v log p_v of that same distribution if with_entropy, else None.
Hints: do the math in float32 (.float() on hidden and weight); divide the logits by the temperature
before the softmax; F.log_softmax(..., dim=-1) then .gather(-1, targets.unsqueeze(-1)).squeeze(-1).
""", defines=("logp", "entropy"))
def _check_logprob():
    import torch
    kernels = _mod("kernels")
    # Hand case: two positions, three tokens.  hidden [1,0] and [0,2]; weight rows [1,0], [0,1], [1,1].
    # logits at position 0: [1, 0, 1]; at position 1: [0, 2, 2]; targets 0 and 2.
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]], dtype=torch.float64)
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    targets = torch.tensor([[0, 2]])
    logits = [[1.0, 0.0, 1.0], [0.0, 2.0, 2.0]]

    def expected(temperature, *, log=True, subtract_lse=True):
        logp, ent = [], []
        for z, y in zip(logits, (0, 2)):
            z = [v / temperature for v in z]
            lse = math.log(sum(math.exp(v) for v in z))
            lp = [v - lse for v in z]
            logp.append((lp[y] if log else math.exp(lp[y])) if subtract_lse else z[y])
            ent.append(-sum(math.exp(v) * v for v in lp))
        return torch.tensor([logp]), torch.tensor([ent])

    for temperature in (1.0, 2.0):
        case = (f"reference_token_logprobs(hidden [[1,0],[0,2]], weight [[1,0],[0,1],[1,1]], targets [0,2], "
                f"temperature={temperature}, with_entropy=True):")
        logp, ent = kernels.reference_token_logprobs(hidden, weight, targets, temperature=temperature,
                                                     with_entropy=True)
        exp_logp, exp_ent = expected(temperature)
        variants = [(expected(1.0)[0], "temperature ignored: divide the logits by the temperature before the softmax"),
                    (expected(temperature, subtract_lse=False)[0],
                     "that is the raw logit, not a log-probability: use log_softmax (logit - logsumexp)"),
                    (expected(temperature, log=False)[0], "that is the probability; return its log")]
        _compare(case, exp_logp, logp, variants, "logp[b, t] = log_softmax(logits / temperature)[b, t, targets[b, t]]",
                 what="logp")
        if logp.dtype != torch.float32:
            raise CheckFailed(f"{case}\n  logp has dtype {logp.dtype}, expected torch.float32 (also for float64 "
                              "inputs)\n  hint: compute in float32: hidden.float() @ weight.float().t()")
        ent = _tensor(ent, "entropy")
        variants = [(-exp_ent, "the entropy is -sum p log p (>= 0): your sign is flipped"),
                    (expected(1.0)[1], "the entropy must use the same temperature-scaled distribution")]
        _compare(case, exp_ent, ent, variants, "entropy = -(p * log p).sum(-1) with p = softmax(logits / temperature)",
                 what="entropy")
    _, ent = kernels.reference_token_logprobs(hidden, weight, targets, with_entropy=False)
    if ent is not None:
        raise CheckFailed("reference_token_logprobs(..., with_entropy=False): the entropy should be None\n"
                          "  hint: entropy = None unless with_entropy")


# ---------------------------------------------------------------------------------- attention

def _split_heads(t, n_head):
    B, T, C = t.shape
    return t.view(B, T, n_head, C // n_head).transpose(1, 2)


def _attention_by_hand(attn, x, allowed, *, scale="sqrt", softmax_dim=-1):
    """The module `attn` (CausalSelfAttention) computed with plain tensor ops: allowed (B|1,1,T,S) bool
    says which key each query may see (None: everything). Variants of the usual mistakes via the options."""
    import torch
    B, T, C = x.shape
    q, k, v = (_split_heads(t, attn.n_head) for t in attn.c_attn(x).split(C, dim=2))
    D = q.size(-1)
    scores = q @ k.transpose(-2, -1)
    scores = scores / {"sqrt": math.sqrt(D), "none": 1.0, "D": float(D)}[scale]
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    y = torch.softmax(scores, dim=softmax_dim) @ v
    return attn.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


@_register("attention", "reft_mini/model.py", "Causal self-attention", 2, 25, """
Scaled dot-product attention with a causal mask (Vaswani et al. 2017, Eq. 1). GPT-2 is a decoder:
position t may only look at positions <= t, or it would learn to copy the next token from the input.
In: q (B,H,T,D), k and v (B,H,S,D) (S = T, or cached + T with a KV cache), p (dropout probability),
attn_mask: None (then S == T: use the plain causal mask) or a bool tensor (B or 1, 1, T, S) that is
True where query t may look at key s (causal and not padding; GPT.forward has built it already).
Define y (B,H,T,D) = softmax(q @ k^T / sqrt(D), disallowed scores set to -inf, over the keys) @ v,
with dropout p on the attention weights.
Hints: F.scaled_dot_product_attention does all of it (is_causal=True, or attn_mask=attn_mask); by hand,
torch.tril(torch.ones(T, T, dtype=torch.bool)) is the causal mask and masked_fill(~allowed, -inf) applies it.
""", defines=("y",))
def _check_attention():
    import torch
    model = _mod("model")
    torch.manual_seed(0)
    cfg = model.GPTConfig(vocab_size=16, block_size=16, n_layer=1, n_head=2, n_embd=8, dropout=0.0)
    attn = model.CausalSelfAttention(cfg).eval()     # nn.Linear's default init: lively attention patterns
    with torch.no_grad():
        # 1. No attn_mask: plain causal attention.
        x = torch.randn(2, 5, 8)
        causal = torch.tril(torch.ones(5, 5, dtype=torch.bool))[None, None]
        got = attn(x, None, None, 0)
        case = "CausalSelfAttention on x of shape (2, 5, 8) (n_head=2, D=4), attn_mask=None, no cache:"
        x2 = x.clone()
        x2[:, -1] += 1.0
        leak = not torch.allclose(attn(x2, None, None, 0)[:, :-1], got[:, :-1], atol=1e-6)
        variants = [
            (_attention_by_hand(attn, x, None),
             "no causal mask: every position attends to the future too (is_causal=True, or mask with torch.tril)"),
            (_attention_by_hand(attn, x, causal, scale="none"),
             "the scores must be divided by sqrt(D) (D = head size)"),
            (_attention_by_hand(attn, x, causal, scale="D"), "divide the scores by sqrt(D), not by D"),
            (_attention_by_hand(attn, x, causal.transpose(-2, -1)),
             "the mask is transposed: query t may see keys s <= t (torch.tril, not torch.triu)"),
            (_attention_by_hand(attn, x, causal, softmax_dim=-2),
             "the softmax goes over the keys (the last dim), so each query's weights sum to 1"),
        ]
        default = ("y = softmax(q @ k.transpose(-2, -1) / sqrt(D) with future keys at -inf, dim=-1) @ v"
                   + ("; note: changing only the LAST token changed earlier outputs, so your attention looks "
                      "into the future (no causal mask)" if leak else ""))
        _compare(case, _attention_by_hand(attn, x, causal), got, variants, default,
                 what="output[0, :, 0] (channel 0 of each position)", view=lambda t: t[0, :, 0])

        # 2. With padding: row 1 is left-padded by two positions. The mask is the one GPT.forward builds:
        #    causal, not a pad key -- and every query may see itself (so a pad query is never empty).
        x = torch.randn(2, 4, 8)
        real = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
        idx = torch.arange(4)
        allowed = ((idx[None, :] <= idx[:, None])[None] & real[:, None, :]) | (idx[None, :] == idx[:, None])[None]
        allowed = allowed[:, None]                                                        # (B,1,T,S)
        got = attn(x, allowed, None, 0)
        case = ("CausalSelfAttention on x (2, 4, 8) with attn_mask (2, 1, 4, 4): row 1 is left-padded by "
                "2 positions, so its real tokens must not attend to the pads:")
        variants = [
            (_attention_by_hand(attn, x, torch.tril(torch.ones(4, 4, dtype=torch.bool))[None, None]),
             "attn_mask ignored: padding keys are being attended to; use the given mask when it is not None"),
            (_attention_by_hand(attn, x, None), "attn_mask ignored, and no causal mask either"),
        ]
        _compare(case, _attention_by_hand(attn, x, allowed), got, variants,
                 "attn_mask is True where attention is ALLOWED: scores.masked_fill(~attn_mask, -inf)",
                 what="output[1, :, 0] (channel 0 of the padded row)", view=lambda t: t[1, :, 0])


# ---------------------------------------------------------------------------------- kv_cache

@_register("kv_cache", "reft_mini/model.py", "KV cache for generation", 2, 20, """
A KV cache: each new token attends to the keys/values of all earlier tokens, which we keep instead of
recomputing them, so sampling N tokens costs N small forward passes instead of N growing ones.
In: cache (a KVCache, or None), layer (int), k and v (B,H,T,D) of this step's T new tokens.
cache.k[layer] and cache.v[layer] are (B,H,S_max,D) buffers; cache.length = how many positions are
already filled (GPT.forward advances it once, after all layers: do not change it here).
If cache is not None: write k, v into positions length .. length+T-1 of this layer's buffers, then
rebind k and v to all filled positions 0 .. length+T-1, shape (B,H,S,D), for the attention that follows.
If cache is None: leave k and v alone.
Hints: slice assignment buf[:, :, a:b] = k; buf[:, :, :b] is a view (no copy). Do exercise attention first.
""", needs=("attention",), defines=("k", "v"))
def _check_kv_cache():
    import torch
    model = _mod("model")
    torch.manual_seed(0)
    cfg = model.GPTConfig(vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.0)
    gpt = model.GPT(cfg).eval()
    with torch.no_grad():
        for p in gpt.parameters():          # bigger weights than GPT-2's init: attention is far from uniform
            p.normal_(0.0, 0.4)
        idx = torch.randint(0, 32, (2, 7))
        tr = gpt.transformer
        # This step's layer-0 keys/values of the first 4 tokens, computed by hand (no cache involved).
        x0 = tr.wte(idx[:, :4]) + tr.wpe(torch.arange(4))
        _, k0, v0 = (_split_heads(t, cfg.n_head) for t in tr.h[0].attn.c_attn(tr.h[0].ln_1(x0)).split(16, dim=2))

        def check_writes(cache, when):
            got_k, got_v = cache.k[0][:, :, :4], cache.v[0][:, :, :4]
            if not (got_k.abs().sum() > 0 or got_v.abs().sum() > 0):
                raise CheckFailed(f"{when}: cache.k[0] and cache.v[0] are still all zeros\n  hint: cache not "
                                  "appended: write this step's keys/values into cache.k[layer][:, :, start:start+T] "
                                  "and cache.v[layer][...] with start = cache.length")
            if not (_close(got_k, k0) and _close(got_v, v0)):
                raise CheckFailed(f"{when}: positions 0..3 of cache.k[0] / cache.v[0] do not hold the 4 tokens' "
                                  f"keys / values\n  expected k[0, 0, :, 0] {_fmt(k0[0, 0, :, 0])}\n"
                                  f"  got      k[0, 0, :, 0] {_fmt(got_k[0, 0, :, 0])}\n"
                                  "  hint: k goes to cache.k (and v to cache.v), at positions "
                                  "cache.length .. cache.length + T - 1")
            for layer in range(cfg.n_layer):
                if cache.k[layer][:, :, 4:].abs().sum() > 0:
                    raise CheckFailed(f"{when}: layer {layer} wrote keys beyond position 3 (only 4 tokens were "
                                      "given)\n  hint: do not change cache.length inside the layer: GPT.forward "
                                      "advances it once after all layers, every layer writes at the same start")

        cache = gpt.new_kv_cache(2, 7)
        when = "model(idx[:, :4], kv_cache=empty cache) (a 4-token prompt)"
        try:
            h_prompt = gpt(idx[:, :4], kv_cache=cache)
        except NotImplementedError as e:
            if _exercise_of(e) not in (None, "kv_cache"):
                check_writes(cache, when)
                raise Blocked(_exercise_of(e), "your cache writes for the prompt look right; the rest of this "
                                               "check runs the attention over the cached keys") from None
            raise
        check_writes(cache, when)
        full = gpt(idx)                                              # (2,7,C) no cache: the ground truth
        if not _close(h_prompt, full[:, :4], 1e-4):
            raise CheckFailed(f"{when}: the hidden states differ from a forward pass without a cache\n"
                              f"  expected h[0, :, 0] {_fmt(full[0, :4, 0])}\n  got      h[0, :, 0] "
                              f"{_fmt(h_prompt[0, :, 0])}\n  hint: with an empty cache, k and v after your code "
                              "must be exactly this step's keys and values (cache slices :start+T)")
        for t in range(4, 7):
            when = f"then model(idx[:, {t}:{t + 1}], kv_cache=cache) (one new token; {t} cached)"
            try:
                h = gpt(idx[:, t:t + 1], kv_cache=cache)
            except NotImplementedError:
                raise
            except Exception as e:  # noqa: BLE001 -- most often a shape error in the attention
                raise CheckFailed(f"{when}: raised {type(e).__name__}: {e}\n  hint: after writing into the cache, "
                                  "rebind k = cache.k[layer][:, :, :start + T] (and v): the attention must see "
                                  "all S = cached + T keys, and its mask is (.., T, S)") from None
            if not _close(h[:, 0], full[:, t], 1e-4):
                hint = ("the new token must attend to ALL cached keys: after writing, rebind "
                        "k = cache.k[layer][:, :, :start + T] and v likewise")
                if cache.k[0][:, :, t].abs().sum() == 0:
                    hint = (f"nothing was written at position {t}: the cache was not appended; write at "
                            "start = cache.length, not at 0")
                raise CheckFailed(f"{when}: the new token's hidden state differs from the forward pass "
                                  f"without a cache\n  expected h[:, 0, :4] {_fmt(full[:, t, :4])}\n"
                                  f"  got      h[:, 0, :4] {_fmt(h[:, 0, :4])}\n  hint: {hint}")


# ---------------------------------------------------------------------------------- sampling

@_register("sampling", "reft_mini/sampling.py", "Top-k and nucleus (top-p) filtering", 2, 25, """
Top-k and nucleus (top-p) filtering of next-token logits (top-k: Fan et al. 2018; top-p: Holtzman et
al. 2020, Sec. 3.1). ReFT samples its rollouts at temperature 1.0 with neither; both are options here.
In: logits (B,V) float, top_k (int or None), top_p (float or None). Rebind `logits` to a filtered copy
in which every token outside the kept set is -inf (do not modify the input tensor in place).
- top_k: keep the k largest logits of each row (ties with the k-th are kept). None, 0, or k >= V: no filter.
- top_p < 1.0: sort a row by probability; drop a token when the tokens strictly more likely than it
  already sum to >= top_p, so the most likely token always stays. Apply it after top-k, to what is left.
Hints: torch.topk(logits, k, dim=-1).values[:, -1:] is each row's k-th largest; probs.cumsum(-1) - probs
is the mass before each sorted token; scatter the sorted drop mask back with the sort indices; masked_fill.
""", defines=("logits",))
def _check_sampling():
    import torch
    sampling = _mod("sampling")
    inf = float("-inf")

    def run(logits, top_k=None, top_p=None):
        x = logits.clone()
        out = sampling.filter_logits(x, top_k=top_k, top_p=top_p)
        if not torch.equal(x, logits):
            raise CheckFailed(f"filter_logits({_fmt(logits)}, top_k={top_k}, top_p={top_p}) modified its input "
                              "in place\n  hint: use logits.masked_fill(...) (a copy), not masked_fill_ or "
                              "item assignment")
        return out

    x = torch.tensor([[1.0, 3.0, 2.0, 0.0, -1.0]])
    for k, keep in ((2, [1, 2]), (1, [1])):
        exp = torch.tensor([[v if i in keep else inf for i, v in enumerate(x[0].tolist())]])
        got = run(x, top_k=k)
        off = [torch.tensor([[v if i in kk else inf for i, v in enumerate(x[0].tolist())]])
               for kk in ([1, 2, 0], [1], [1, 2])]
        variants = [(x, "no top-k filter was applied: set every logit below the k-th largest to -inf")]
        variants += [(t, f"top-k off by one: for k={k} keep exactly {k} tokens (logits >= the k-th largest)")
                     for t in off if not _close(t, exp)]
        _compare(f"filter_logits({_fmt(x)}, top_k={k}):", exp, got, variants,
                 "keep the k largest logits, -inf elsewhere", what="logits")
    xb = torch.tensor([[1.0, 3.0, 2.0, 0.0, -1.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    exp = torch.tensor([[1.0, 3.0, 2.0, inf, inf], [5.0, 4.0, 3.0, inf, inf]])
    glob = torch.tensor([[inf, inf, inf, inf, inf], [5.0, 4.0, 3.0, inf, inf]])
    _compare(f"filter_logits({_fmt(xb)}, top_k=3):", exp, run(xb, top_k=3),
             [(glob, "the top-k is per row (dim=-1), not over the whole batch")],
             "keep the 3 largest logits of EACH row", what="logits")
    for k in (None, 5, 10):
        try:
            got = run(x, top_k=k)
        except RuntimeError as e:
            raise CheckFailed(f"filter_logits({_fmt(x)}, top_k={k}) raised RuntimeError: {e}\n  hint: a top_k "
                              "of None or >= the vocabulary size means no filtering") from None
        _compare(f"filter_logits({_fmt(x)}, top_k={k}):", x, got, (),
                 "top_k None or >= the vocabulary size (5 here) means no filtering", what="logits")
    # top-p. Probabilities [0.15, 0.5, 0.05, 0.3] (deliberately not sorted).  Sorted: 0.5, 0.3, 0.15, 0.05;
    # mass strictly before each: 0, 0.5, 0.8, 0.95.
    p = torch.tensor([[0.15, 0.5, 0.05, 0.3]])
    lp = p.log()

    def keep(*cols):
        return torch.tensor([[v if i in cols else inf for i, v in enumerate(lp[0].tolist())]])

    sorted_bug = torch.tensor([[lp[0, 1].item(), lp[0, 3].item(), inf, inf]])
    cases = [
        # top_p 0.75: 0.5 (mass before 0) stays, 0.3 (before: 0.5 < 0.75) stays, 0.15 (0.8 >= 0.75) goes.
        (0.75, None, keep(1, 3), [(keep(1), "nucleus too small: keep the token whose probability makes the sum "
                                            "reach top_p (drop only when the mass BEFORE a token is >= top_p)"),
                                  (keep(1, 3, 0), "nucleus too big: drop a token once the mass before it is >= top_p"),
                                  (sorted_bug, "you filtered the sorted logits but returned them in sorted order: "
                                               "scatter the decision back to the original token positions"),
                                  (lp, "no top-p filter was applied")]),
        # top_p 0.1: even the most likely token alone exceeds it -- it must stay.
        (0.1, None, keep(1), [(keep(), "never drop the most likely token (the set would be empty)")]),
        (1.0, None, lp, []),
        # top_k 2 first: 0.5 and 0.3 renormalise to 0.625 and 0.375; with top_p 0.6 only 0.625 stays.
        (0.6, 2, keep(1), [(keep(1, 3), "apply top-k first, then top-p to what is left (the probabilities "
                                        "renormalised over the top-k tokens)")]),
    ]
    for top_p, top_k, exp, variants in cases:
        _compare(f"filter_logits(log of probabilities {_fmt(p)}, top_k={top_k}, top_p={top_p}):", exp,
                 run(lp, top_k=top_k, top_p=top_p), variants,
                 "sort, softmax, drop where cumsum - p >= top_p, scatter back, fill -inf", what="logits")


# ---------------------------------------------------------------------------------- kl_reward

@_register("kl_reward", "reft_mini/ppo.py", "KL-shaped per-token rewards", 2, 20, """
Per-token rewards with the KL penalty (ReFT, Sec. 3: r_total(s_t, a_t) = r(s_t, a_t) - beta * KL).
In: scores (B,) terminal rewards (1 / 0.1 / 0); logp_old, logp_ref (B,N) log-probs of the sampled tokens
under the sampling policy and under the frozen warm-up model; mask (B,N) bool or 0/1; kl_coef (beta).
Define kl (B,N) = logp_old - logp_ref on valid tokens and exactly 0 on masked ones (pads may hold
inf/nan: select with torch.where, nan * 0 = nan), and rewards (B,N) = -kl_coef * kl, with each row's
score ADDED on its LAST valid token (the EOS, or the last token at the length limit). A row without any
valid token gets no score.
Hint: m = _as_bool(mask); the last valid index of a row is the largest t with m[b, t].
""", defines=("rewards", "kl"))
def _check_kl_reward():
    import torch
    ppo = _mod("ppo")
    T = lambda *rows: torch.tensor(rows, dtype=torch.float32)  # noqa: E731
    nan, inf = float("nan"), float("inf")

    # Case A, one row, all valid, kl_coef 0.1: kl = old - ref = [0.5, 0, -0.5];
    # rewards = -0.1 * kl + [0, 0, 1] = [-0.05, 0, 1.05].
    case = ("kl_shaped_rewards(scores [1], logp_old [[-1, -2, -3]], logp_ref [[-1.5, -2, -2.5]], "
            "mask [[1, 1, 1]], kl_coef 0.1):")
    rewards, kl = ppo.kl_shaped_rewards(T(1.0), T([-1.0, -2.0, -3.0]), T([-1.5, -2.0, -2.5]),
                                        torch.ones(1, 3, dtype=torch.bool), 0.1)
    _compare(case, T([0.5, 0.0, -0.5]), kl, [(T([-0.5, 0.0, 0.5]), "kl = logp_old - logp_ref (old minus ref)")],
             "kl_t = logp_old_t - logp_ref_t", what="kl")
    _compare(case, T([-0.05, 0.0, 1.05]), rewards, [
        (T([0.05, 0.0, 0.95]), "KL sign flipped: the penalty is r_t = -kl_coef * kl_t (a reward for staying close)"),
        (T([-0.5, 0.0, 1.5]), "kl_coef ignored: r_t = -kl_coef * kl_t"),
        (T([0.95, 0.0, 0.05]), "score placed on the first token: it belongs on the LAST valid token (the EOS)"),
        (T([0.95, 1.0, 1.05]), "score added to every token: it goes on the last valid token only"),
        (T([-0.05, 0.0, 0.05]), "the score is missing: add scores[b] on the last valid token of row b"),
    ], "rewards = -kl_coef * kl, plus the score on the last valid token", what="rewards")

    # Case B, right padding with garbage in the pads. kl row 0 [0.5, 0, -1, 0], row 1 [0.5, -0.5, 0, 0];
    # rewards row 0 [-0.05, 0, 0.1, 0 + 1] ; row 1 [-0.05, 0.05 + 0.1, 0, 0].
    old = T([-1.0, -2.0, -3.0, -4.0], [-0.5, -1.5, 9.0, 9.0])
    ref = T([-1.5, -2.0, -2.0, -4.0], [-1.0, -1.0, nan, -inf])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    case = (f"kl_shaped_rewards(scores [1, 0.1], logp_old {_fmt(old)}, logp_ref {_fmt(ref)}, "
            f"mask {_fmt(mask)} (an int 0/1 mask: the pads hold garbage), kl_coef 0.1):")
    rewards, kl = ppo.kl_shaped_rewards(T(1.0, 0.1), old, ref, mask, 0.1)
    _compare(case, T([0.5, 0.0, -1.0, 0.0], [0.5, -0.5, 0.0, 0.0]), kl, (),
             "kl must be exactly 0 on masked positions: torch.where(mask, logp_old - logp_ref, 0)", what="kl")
    _compare(case, T([-0.05, 0.0, 0.1, 1.0], [-0.05, 0.15, 0.0, 0.0]), rewards, [
        (T([-0.05, 0.0, 0.1, 1.0], [-0.05, 0.05, 0.0, 0.1]),
         "score placed on the last column: it belongs on each row's last VALID token"),
        (T([0.95, 0.0, 0.1, 0.0], [0.05, 0.05, 0.0, 0.0]),
         "score placed on the first token: put it on the last valid one"),
    ], "the score goes on each row's last valid token", what="rewards")

    # Case C, a row without any valid token gets no score (its last valid index does not exist).
    case = "kl_shaped_rewards(scores [1, 0.5], logp_old = logp_ref = zeros, mask [[1, 1], [0, 0]], kl_coef 0.1):"
    rewards, _ = ppo.kl_shaped_rewards(T(1.0, 0.5), torch.zeros(2, 2), torch.zeros(2, 2),
                                       torch.tensor([[True, True], [False, False]]), 0.1)
    _compare(case, T([0.0, 1.0], [0.0, 0.0]), rewards, [
        (T([0.0, 1.0], [0.0, 0.5]), "a row with no valid token must get no score (mask.sum(1) - 1 = -1 indexes "
                                    "the last column)")], "", what="rewards")


# ---------------------------------------------------------------------------------- gae

def _gae_by_hand(rewards, values, mask, gamma, lam, *, bootstrap_pads=False, forward=False):
    """Plain-Python GAE of one row (lists), right-padded mask. Options produce the usual mistakes."""
    n = len(rewards)
    valid = [i for i in range(n) if mask[i]]
    adv = [0.0] * n
    order = valid if forward else list(reversed(valid))
    carry_a, prev = 0.0, None
    for i in order:
        if forward:
            nxt_v = values[i + 1] if i + 1 < n and (mask[i + 1] or bootstrap_pads) else 0.0
        else:
            nxt_v = values[prev] if prev is not None else (values[i + 1] if bootstrap_pads and i + 1 < n else 0.0)
        delta = rewards[i] + gamma * nxt_v - values[i]
        carry_a = delta + gamma * lam * carry_a
        adv[i] = carry_a
        prev = i
    return adv


@_register("gae", "reft_mini/ppo.py", "Generalized Advantage Estimation", 3, 30, """
Generalized Advantage Estimation (Schulman et al. 2016, Eq. 16), which ReFT (Sec. 3) uses for the
advantages and for the value head's targets. In: rewards, values, mask (B,N); gamma, lam (floats).
Define advantages and returns (B,N). Backwards over t = N-1 .. 0, each row over its valid tokens only:
    delta_t = r_t + gamma * V_next - V_t
    A_t     = delta_t + gamma * lam * A_next
where V_next, A_next belong to the next valid token and are 0 after the last one (the episode ends at
the EOS: never bootstrap from a pad's value). returns = advantages + values on valid tokens. Both
outputs are exactly 0 on masked positions.
Hint: carry next_value and next_adv as (B,) tensors, updated with torch.where(mask[:, t], new, old).
""", defines=("advantages", "returns"))
def _check_gae():
    import torch
    ppo = _mod("ppo")
    T = lambda *rows: torch.tensor(rows, dtype=torch.float32)  # noqa: E731
    # Worked by hand, gamma 0.9, lam 0.8 (gamma * lam = 0.72); the pad holds a garbage value 7:
    #   t=2: delta = 1 + 0.9 * 0 - 0.5 = 0.5                A2 = 0.5
    #   t=1: delta = 0 + 0.9 * 0.5 - 0.5 = -0.05            A1 = -0.05 + 0.72 * 0.5 = 0.31
    #   t=0: delta = -0.05                                  A0 = -0.05 + 0.72 * 0.31 = 0.1732
    #   returns = A + V = [0.6732, 0.81, 1.0, 0]
    r, v, m = [0.0, 0.0, 1.0, 0.0], [0.5, 0.5, 0.5, 7.0], [1, 1, 1, 0]
    case = ("gae(rewards [[0, 0, 1, 0]], values [[0.5, 0.5, 0.5, 7]], mask [[1, 1, 1, 0]], gamma 0.9, lam 0.8), "
            "the last position is padding:")
    adv, ret = ppo.gae(T(r), T(v), torch.tensor([m], dtype=torch.bool), 0.9, 0.8)
    exp_adv = T([0.1732, 0.31, 0.5, 0.0])
    _compare(case, exp_adv, adv, [
        (T(_gae_by_hand(r, v, m, 0.9, 1.0)), "did you ignore lambda? A_t = delta_t + gamma * lam * A_next"),
        (T(_gae_by_hand(r, v, m, 1.0, 0.8)), "did you ignore gamma? delta_t = r_t + gamma * V_next - V_t, and "
                                             "A_t = delta_t + gamma * lam * A_next"),
        (T(_gae_by_hand(r, v, m, 0.9, 0.8, bootstrap_pads=True)),
         "after the last valid token the next value is 0 (the episode ended); you used the pad's value"),
        (T(_gae_by_hand(r, v, m, 0.9, 0.8, forward=True)), "the recursion runs backwards, from the last token "
                                                           "to the first (A_t depends on A_{t+1})"),
        (T([-0.05, -0.05, 0.5, 0.0]), "A_t = delta_t + gamma * lam * A_next: the advantages of later tokens are "
                                      "missing (that is just delta_t)"),
    ], "delta_t = r_t + gamma * V_next - V_t;  A_t = delta_t + gamma * lam * A_next, backwards", what="advantages")
    _compare(case, T([0.6732, 0.81, 1.0, 0.0]), ret, [
        (exp_adv, "returns = advantages + values (the value head's regression target)"),
        (T([0.6732, 0.81, 1.0, 7.0]), "returns must be 0 on masked positions: torch.where(mask, adv + values, 0)"),
    ], "returns = advantages + values on valid tokens, 0 elsewhere", what="returns")

    # A batch, ReFT's gamma 1, lam 0.95, rows of length 5, 3 and 1, compared with the plain loop above.
    g = torch.Generator().manual_seed(0)
    rewards = torch.randn(3, 5, generator=g)
    values = torch.randn(3, 5, generator=g)
    lengths = [5, 3, 1]
    mask = torch.tensor([[i < n for i in range(5)] for n in lengths])
    exp = T(*[_gae_by_hand(rewards[b].tolist(), values[b].tolist(), mask[b].tolist(), 1.0, 0.95) for b in range(3)])
    adv, _ = ppo.gae(rewards, values, mask.float(), 1.0, 0.95)
    _compare(f"gae on a batch of 3 random rows of lengths {lengths} (a float 0/1 mask), gamma 1, lam 0.95:",
             exp, adv, (), "each row is its own episode: the recursion restarts at each row's last valid token",
             what="advantages")


# ---------------------------------------------------------------------------------- ppo_losses

@_register("ppo_losses", "reft_mini/ppo.py", "PPO clipped surrogate loss", 2, 20, """
PPO's clipped surrogate objective (Schulman et al. 2017, Eq. 7), which ReFT (Sec. 3) trains the policy
with, written as a loss to minimise. In: logp_new (B,N) (carries the gradient), logp_old (B,N),
advantages (B,N), m (bool mask), clip (epsilon, 0.2), reduction. Define (the statistics below read them):
  log_ratio      logp_new - logp_old, set to 0 at pads BEFORE the exp (pads may hold garbage)
  ratio          exp(log_ratio) = pi_new / pi_old
  loss_unclipped -advantages * ratio
  loss_clipped   -advantages * ratio clamped to [1 - clip, 1 + clip]
  loss           the elementwise max of the two (the pessimistic bound), averaged by _reduce(.., m, reduction)
Hint: maximising min(r A, clip(r) A) is minimising max(-r A, -clip(r) A). _reduce averages over each
sequence's tokens first, then over sequences (ReFT's code).
""", defines=("log_ratio", "ratio", "loss_unclipped", "loss_clipped", "loss"))
def _check_ppo_losses():
    import torch
    ppo = _mod("ppo")
    T = lambda *rows: torch.tensor(rows, dtype=torch.float32)  # noqa: E731
    # Hand case, clip 0.2, logp_old = 0 so ratio = exp(logp_new):
    #   ratio 1.5, A  2  : max(-3,  -2.4) = -2.4   (clipped: no gradient)
    #   ratio 0.5, A  1  : max(-0.5, -0.8) = -0.5  (unclipped)
    #   ratio 1.3, A -1  : max(1.3,  1.2) = 1.3    (unclipped)
    #   ratio 0.7, A -0.5: max(0.35, 0.4) = 0.4    (clipped: no gradient)
    #   mean = (-2.4 - 0.5 + 1.3 + 0.4) / 4 = -0.3
    ratio = [1.5, 0.5, 1.3, 0.7]
    adv = T([2.0, 1.0, -1.0, -0.5])
    logp_new = T([math.log(x) for x in ratio]).requires_grad_(True)
    case = ("policy_loss(logp_new = log [[1.5, 0.5, 1.3, 0.7]], logp_old = 0, advantages [[2, 1, -1, -0.5]], "
            "mask all 1, clip 0.2):")
    loss, stats = ppo.policy_loss(logp_new, torch.zeros(1, 4), adv, torch.ones(1, 4, dtype=torch.bool), 0.2)
    loss = _tensor(loss, "loss")
    s = lambda x: torch.tensor(x / 4)  # noqa: E731
    _compare(case, s(-1.2), loss.reshape(()) if loss.numel() == 1 else loss, [
        (s(-3.0 - 0.5 + 1.3 + 0.35), "ratio not clipped: loss_clipped = -A * clamp(ratio, 1 - clip, 1 + clip), "
                                     "and the loss is the max of the two"),
        (s(-3.0 - 0.8 + 1.2 + 0.35), "min instead of max: as a loss (to minimise) the pessimistic bound is the MAX "
                                     "of -A * ratio and -A * clip(ratio)"),
        (s(3.0 + 0.8 - 1.2 - 0.35), "sign flipped: the loss is -advantages * ratio (we minimise it)"),
        (s(-2.4 - 0.8 + 1.3 + 0.4), "the clipped term always won: take the elementwise maximum, not just the "
                                    "clipped loss"),
    ], "per_token = max(-A * ratio, -A * clamp(ratio, 1 - clip, 1 + clip)); loss = _reduce(per_token, m, reduction)",
        what="loss")
    loss.backward()
    # d loss / d logp_new = d(-A r)/d logp / 4 = -A r / 4 where unclipped, 0 where the clip won.
    _compare(case + " gradient of the loss w.r.t. logp_new", T([0.0, -0.125, 0.325, 0.0]), logp_new.grad, (),
             "keep the graph: ratio = exp(logp_new - logp_old) (no .detach(), no .item()); clipped tokens get 0",
             what="grad")
    if abs(stats.get("clipfrac", -1) - 0.5) > 1e-6:
        raise CheckFailed(f"{case}\n  stats['clipfrac'] = {stats.get('clipfrac')}, expected 0.5 (tokens 1 and 4 are "
                          "clipped)\n  hint: the statistics read loss_clipped and loss_unclipped: define them as "
                          "-A * clamp(ratio) and -A * ratio")
    if abs(stats.get("approx_kl", -1) - sum((r - 1) - math.log(r) for r in ratio) / 4) > 1e-5:
        raise CheckFailed(f"{case}\n  stats['approx_kl'] is wrong\n  hint: define log_ratio = logp_new - logp_old "
                          "and ratio = exp(log_ratio) (the statistics use both)")

    # Padding (garbage in the pads) and the reduction. Row 0: ratios 1.1, 0.9, 1.0 with A 1, -1, 0.5
    # -> -1.1, 0.9, -0.5 (none clipped), row mean -0.7/3; row 1: ratio 1.05, A 2 -> -2.1.
    # seq_mean = (-0.7/3 - 2.1) / 2 = -1.16667; token_mean = (-0.7 - 2.1) / 4 = -0.7.
    logp_new = T([math.log(1.1), math.log(0.9), 0.0], [math.log(1.05), float("inf"), float("nan")])
    adv = T([1.0, -1.0, 0.5], [2.0, 5.0, 5.0])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    case = (f"policy_loss(logp_new {_fmt(logp_new)} (garbage in the pads), logp_old 0, advantages {_fmt(adv)}, "
            f"mask {_fmt(mask.int())}, clip 0.2, reduction=")
    for reduction, exp, other in (("seq_mean", -0.7 / 6 - 1.05, -0.7), ("token_mean", -0.7, -0.7 / 6 - 1.05)):
        x = logp_new.clone().requires_grad_(True)
        loss, _ = ppo.policy_loss(x, torch.zeros(2, 3), adv, mask, 0.2, reduction=reduction)
        loss = _tensor(loss, "loss")
        _compare(case + f"{reduction!r}):", torch.tensor(exp), loss.detach().reshape(()) if loss.numel() == 1 else loss,
                 [(torch.tensor(other), "use loss = _reduce(per_token, m, reduction): 'seq_mean' averages each "
                                        "sequence's tokens first, then the sequences")],
                 "mask the pads: log_ratio = torch.where(m, logp_new - logp_old, 0) before the exp, then "
                 "_reduce(per_token, m, reduction)", what="loss")
        loss.backward()
        if x.grad is None or not torch.isfinite(x.grad).all() or (x.grad[~mask] != 0).any():
            raise CheckFailed(f"{case}{reduction!r}): the loss is right, but its gradient w.r.t. logp_new is "
                              f"{_fmt(x.grad)}: it must be finite everywhere and 0 at the pads\n  hint: zero the "
                              "log-ratio at the pads BEFORE the exp: "
                              "log_ratio = torch.where(m, logp_new - logp_old, 0). "
                              "Masking afterwards is not enough: backward sends 0 * exp(inf) = nan through the exp")


# ---------------------------------------------------------------------------------- value_loss

@_register("value_loss", "reft_mini/ppo.py", "Clipped value loss", 1, 10, """
The critic's clipped value loss (ReFT, Sec. 3, with the clipping of ReFT's code and OpenAI baselines).
In: values_new (B,N) (carries the gradient), values_old (B,N) (at rollout time), returns (B,N), m (bool
mask), clip (0.2), reduction. Define (the statistics below read them):
  v_clipped      values_old + (values_new - values_old) clamped to [-clip, clip]
  err_unclipped  (values_new - returns) ** 2
  err_clipped    (v_clipped - returns) ** 2
  loss           0.5 * elementwise max of the two errors, averaged by _reduce(.., m, reduction)
Hint: clip the CHANGE of the value relative to values_old, not the value itself; the max keeps the
pessimistic (larger) error, so the value cannot profit from moving more than clip away from V_old.
""", defines=("err_unclipped", "err_clipped", "loss"))
def _check_value_loss():
    import torch
    ppo = _mod("ppo")
    T = lambda *rows: torch.tensor(rows, dtype=torch.float32)  # noqa: E731
    # Hand case, clip 0.2:
    #   V_old 0, V 0.5,  R 1: V_clip 0.2,  errors 0.25 / 0.64 -> max 0.64, x0.5 = 0.32
    #   V_old 0, V -0.1, R 1: V_clip -0.1, errors 1.21 / 1.21 -> 0.605
    #   V_old 1, V 1.3,  R 0: V_clip 1.2,  errors 1.69 / 1.44 -> 1.69 -> 0.845
    #   V_old 1, V 0.9,  R 1: V_clip 0.9,  errors 0.01 / 0.01 -> 0.005
    #   mean = (0.32 + 0.605 + 0.845 + 0.005) / 4 = 0.44375
    new, old, ret = T([0.5, -0.1, 1.3, 0.9]), T([0.0, 0.0, 1.0, 1.0]), T([1.0, 1.0, 0.0, 1.0])
    case = ("value_loss(values_new [[0.5, -0.1, 1.3, 0.9]], values_old [[0, 0, 1, 1]], returns [[1, 1, 0, 1]], "
            "mask all 1, clip 0.2):")
    loss, stats = ppo.value_loss(new, old, ret, torch.ones(1, 4, dtype=torch.bool), 0.2)
    loss = _tensor(loss, "loss").detach()
    s = lambda x: torch.tensor(x / 4)  # noqa: E731
    _compare(case, s(1.775), loss.reshape(()) if loss.numel() == 1 else loss, [
        (s(3.55), "the factor 0.5 is missing: loss = 0.5 * max(err_unclipped, err_clipped)"),
        (s(0.125 + 0.605 + 0.72 + 0.005), "min instead of max: take the larger (pessimistic) of the two errors"),
        (s(0.125 + 0.605 + 0.845 + 0.005), "value not clipped: v_clipped = values_old + clamp(values_new - values_old, "
                                           "-clip, clip), and take the max of both errors"),
        (s(0.32 + 0.605 + 0.72 + 0.005), "the clipped error always won: take the elementwise max of both errors"),
        (s(0.32 + 0.605 + 0.845 + 0.32), "clip the change relative to values_old, not the value itself: "
                                         "v_clipped = values_old + clamp(values_new - values_old, -clip, clip)"),
    ], "per_token = 0.5 * max((V - R)^2, (V_clip - R)^2); loss = _reduce(per_token, m, reduction)", what="loss")
    if abs(stats.get("vf_clipfrac", -1) - 0.25) > 1e-6:
        raise CheckFailed(f"{case}\n  stats['vf_clipfrac'] = {stats.get('vf_clipfrac')}, expected 0.25 (only the first "
                          "token's clipped error is larger)\n  hint: the statistics read err_clipped and "
                          "err_unclipped: define them as the squared errors of v_clipped and values_new")
    # Padding with garbage, and the reduction. Row 0: errors (1 - 0)^2 = 1 and 0 -> per token 0.5, 0;
    # row 1: V 0.1 (old 0, within the clip), R 0.1 -> 0. seq_mean = (0.25 + 0) / 2; token_mean = 0.5 / 3.
    new, old = T([1.0, 2.0], [0.1, float("nan")]), T([1.0, 2.0], [0.0, 0.0])
    ret = T([0.0, 2.0], [0.1, float("inf")])
    mask = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
    for reduction, exp, other in (("seq_mean", 0.125, 0.5 / 3), ("token_mean", 0.5 / 3, 0.125)):
        loss, _ = ppo.value_loss(new, old, ret, mask, 0.2, reduction=reduction)
        loss = _tensor(loss, "loss").detach()
        _compare(f"value_loss(values_new {_fmt(new)}, values_old {_fmt(old)}, returns {_fmt(ret)} (garbage in the "
                 f"pads), mask [[1, 1], [1, 0]], clip 0.2, reduction={reduction!r}):", torch.tensor(exp),
                 loss.reshape(()) if loss.numel() == 1 else loss,
                 [(torch.tensor(other), "use loss = _reduce(per_token, m, reduction)")],
                 "average with _reduce(per_token, m, reduction): it ignores the pads", what="loss")


# ====================================================================================================
# Regions in the source: find, blank, restore
# ====================================================================================================

_BEGIN = re.compile(r"^(?P<indent>[ \t]*)# EXERCISE (?P<name>[A-Za-z0-9_]+): begin[ \t]*$")
_END = re.compile(r"^[ \t]*# EXERCISE (?P<name>[A-Za-z0-9_]+): end[ \t]*$")


@dataclass
class Region:
    name: str
    begin: int      # index (0-based) of the "begin" marker line
    end: int        # index of the "end" marker line; the body is the lines strictly between
    indent: str     # indentation of the body (of its least indented line; the marker's when empty)


def find_regions(text: str) -> dict[str, Region]:
    """All exercise regions of a source text, by name. ValueError on unbalanced or duplicate markers."""
    lines = text.splitlines()
    regions, open_ = {}, None
    for i, line in enumerate(lines):
        b, e = _BEGIN.match(line), _END.match(line)
        if b:
            if open_ is not None:
                raise ValueError(f"line {i + 1}: region {b['name']!r} begins inside region {open_[0]!r}")
            open_ = (b["name"], i, b["indent"])
        elif e:
            if open_ is None or open_[0] != e["name"]:
                raise ValueError(f"line {i + 1}: end of region {e['name']!r} without its begin")
            name, start, indent = open_
            body = [ln for ln in lines[start + 1:i] if ln.strip()]
            if body:
                indent = min((re.match(r"[ \t]*", ln).group(0) for ln in body), key=len)
            if name in regions:
                raise ValueError(f"line {start + 1}: region {name!r} appears twice")
            regions[name] = Region(name, start, i, indent)
            open_ = None
    if open_ is not None:
        raise ValueError(f"line {open_[1] + 1}: region {open_[0]!r} has no end marker")
    return regions


def region_body(text: str, name: str) -> str:
    """The lines between the markers of region `name` (with their line ends)."""
    r = find_regions(text)[name]
    return "".join(text.splitlines(keepends=True)[r.begin + 1:r.end])


def replace_region(text: str, name: str, body: str) -> str:
    """`text` with the body of region `name` replaced by `body` (markers kept)."""
    r = find_regions(text)[name]
    lines = text.splitlines(keepends=True)
    if body and not body.endswith("\n"):
        body += "\n"
    return "".join(lines[:r.begin + 1]) + body + "".join(lines[r.end:])


def not_implemented_message(name: str) -> str:
    return f"exercise {name}: see the comment above / python {TOOL.as_posix()} check {name}"


def blank_body(ex: Exercise, indent: str) -> str:
    """What a student sees in the hole: the instructions as comments, then the NotImplementedError."""
    head = f"TODO exercise {ex.name}: {ex.title}  [difficulty {ex.stars}/3, about {ex.minutes} min]"
    lines = [head, *ex.instructions.splitlines(), f"Check your work: python {TOOL.as_posix()} check {ex.name}"]
    out = [f"{indent}# {ln}".rstrip() + "\n" for ln in lines]
    out.append(f'{indent}raise NotImplementedError("{not_implemented_message(ex.name)}")\n')
    return "".join(out)


def is_blank(text: str, name: str) -> bool:
    """True when region `name` of this source text is still the student's hole."""
    try:
        return f'NotImplementedError("exercise {name}:' in region_body(text, name)
    except KeyError:
        return False


_EXERCISE_IN_MESSAGE = re.compile(r"^exercise ([A-Za-z0-9_]+):")


def _exercise_of(err: BaseException) -> str | None:
    m = _EXERCISE_IN_MESSAGE.match(str(err))
    return m.group(1) if m else None


# ----------------------------------------------------------------------------------------------------
# make: the student copy
# ----------------------------------------------------------------------------------------------------

_SKIP_PARTS = {".git", ".venv", "runs", "__pycache__", ".pytest_cache"}   # at any depth
_SKIP_TOP = {"out"}                                                         # at the top only


def project_files(root: Path) -> list[str]:
    """Files of the project, relative to root. In a git checkout: the tracked files plus untracked ones
    that are not ignored (new modules not committed yet still belong to the project); otherwise every
    file except .git, .venv, runs, __pycache__, .pytest_cache, *.egg-info and the top-level out/."""
    root = root.resolve()
    files = None
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        if Path(top).resolve() == root:
            out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                 cwd=root, capture_output=True, text=True, check=True).stdout
            files = sorted({f for f in out.split("\0") if f and (root / f).is_file()})
    except (OSError, subprocess.CalledProcessError):
        files = None
    if files is None:
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return [f for f in files
            if not (set(Path(f).parts) & _SKIP_PARTS) and Path(f).parts[0] not in _SKIP_TOP
            and not any(part.endswith(".egg-info") for part in Path(f).parts)]


def make_copy(dst: str | Path, names: list[str] | None = None, src: str | Path | None = None,
              log=print) -> list[str]:
    """Copy the project at `src` (default: this one) into `dst` and blank the regions `names` (None: all
    exercises; []: none). Returns the names blanked."""
    src = Path(src).resolve() if src else REPO_ROOT
    dst = Path(dst).resolve()
    if dst == src:
        raise ValueError("the student copy must go to another folder")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise ValueError(f"{dst} exists and is not an empty folder")
    wanted = list(EXERCISES) if names is None else list(names)
    unknown = [n for n in wanted if n not in EXERCISES]
    if unknown:
        raise ValueError(f"unknown exercise(s) {', '.join(unknown)}; choose from {', '.join(EXERCISES)}")
    # Blank in memory first, so a missing region stops us before anything is written.
    blanked, texts = [], {}
    by_file: dict[str, list[str]] = {}
    for n in wanted:
        by_file.setdefault(EXERCISES[n].file, []).append(n)
    for rel, group in by_file.items():
        if not (src / rel).is_file():
            if names is not None:
                raise ValueError(f"{rel} is not part of the project; cannot blank {', '.join(group)}")
            log(f"warning: {rel} not found; skipped {', '.join(group)}")
            continue
        text = (src / rel).read_text(encoding="utf-8")
        regions = find_regions(text)
        for n in group:
            if n not in regions:
                if names is not None:
                    raise ValueError(f"{rel} has no '# EXERCISE {n}: begin/end' region")
                log(f"warning: no region {n!r} in {rel}; skipped")
                continue
            text = replace_region(text, n, blank_body(EXERCISES[n], regions[n].indent))
            blanked.append(n)
        compile(text, str(src / rel), "exec")      # the hole must leave valid Python behind
        texts[rel] = text
    for rel in project_files(src):
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, target)
    for rel, text in texts.items():
        (dst / rel).write_text(text, encoding="utf-8")
    return blanked


# ----------------------------------------------------------------------------------------------------
# check: run the checks and explain
# ----------------------------------------------------------------------------------------------------

def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + ln if ln.strip() else ln for ln in text.splitlines())


def _student_blank(name: str) -> bool:
    path = REPO_ROOT / EXERCISES[name].file
    try:
        return is_blank(path.read_text(encoding="utf-8"), name)
    except OSError:
        return False


def _where(err: BaseException) -> str:
    """'reft_mini/ppo.py, line 140: <code>' for the deepest frame in the checked package, if any."""
    if isinstance(err, SyntaxError) and err.filename:
        return f"{err.filename}, line {err.lineno}: {(err.text or '').strip()}"
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if Path(f.filename).resolve().parent == PACKAGE_DIR]
    if not frames:
        return ""
    f = frames[-1]
    return f"{Path(f.filename).relative_to(REPO_ROOT)}, line {f.lineno}: {f.line}"


def run_check(name: str) -> tuple[bool, str]:
    """Run one exercise's check: (passed, report text)."""
    ex = EXERCISES[name]
    head = f"{ex.name} ({ex.file}): {ex.title}"
    todo = f"not implemented yet. The instructions:\n{_indent(ex.instructions)}"
    try:
        import torch
        with torch.random.fork_rng(devices=[]):      # the checks seed torch; leave the caller's RNG alone
            ex.check()
    except CheckFailed as e:
        return False, f"[FAIL] {head}\n{_indent(str(e))}"
    except (NotImplementedError, Blocked) as e:
        other = e.other if isinstance(e, Blocked) else _exercise_of(e)
        if other in (None, name):
            return False, f"[FAIL] {head}\n{_indent(todo)}\n{_indent(f'({type(e).__name__}: {e})')}"
        note = f" ({e.note})" if isinstance(e, Blocked) and e.note else ""
        raised = f"(NotImplementedError: {not_implemented_message(name)})"
        blocked = (f"this check also runs exercise {other} ({EXERCISES[other].file if other in EXERCISES else '?'}), "
                   f"which is not implemented yet{note}: do that one first (python {TOOL.as_posix()} "
                   f"check {other})")
        if _student_blank(name):
            return False, f"[FAIL] {head}\n{_indent(todo)}\n{_indent(raised)}\n{_indent('Note: ' + blocked)}"
        return False, f"[FAIL] {head}\n{_indent('blocked: ' + blocked)}"
    except Exception as e:  # noqa: BLE001 -- any error in the student's code is a finding, not a crash
        where = _where(e)
        msg = f"your code raised {type(e).__name__}: {e}" + (f"\n  at {where}" if where else "")
        if isinstance(e, NameError):
            m = re.search(r"'(\w+)'", str(e))
            if m and m.group(1) in ex.defines:
                msg += (f"\n  hint: the code after the region uses `{m.group(1)}`: your code must define "
                        f"{', '.join('`' + d + '`' for d in ex.defines)}")
        return False, f"[FAIL] {head}\n{_indent(msg)}"
    return True, f"[PASS] {head}"


def run_checks(names: list[str], out=None) -> bool:
    """Run the checks of `names` (in registry order), print a report per exercise; True when all pass."""
    out = out or sys.stdout
    passed = 0
    for name in names:
        ok, report = run_check(name)
        passed += ok
        print(report, file=out, flush=True)
    print(f"\n{passed}/{len(names)} passed", file=out, flush=True)
    return passed == len(names)


def _parse_names(spec: str) -> list[str]:
    if spec == "all":
        return list(EXERCISES)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXERCISES]
    if unknown or not names:
        raise SystemExit(f"unknown exercise(s) {', '.join(unknown) or spec!r}; choose from: all, "
                         f"{', '.join(EXERCISES)}")
    return names


def _copy_root(start: Path) -> Path | None:
    """The nearest folder at or above `start` holding tools/exercises.py and reft_mini/ (the copy one
    works in)."""
    for d in (start, *start.parents):
        if (d / TOOL).is_file() and (d / PACKAGE).is_dir():
            return d.resolve()
    return None


# ----------------------------------------------------------------------------------------------------
# list / show
# ----------------------------------------------------------------------------------------------------

def table(markdown: bool = False) -> str:
    rows = []
    for i, ex in enumerate(EXERCISES.values(), 1):
        needs = f" (after {', '.join(ex.needs)})" if ex.needs else ""
        rows.append((str(i), ex.name, ex.file, ex.title + needs, "★" * ex.stars, f"{ex.minutes} min"))
    if markdown:
        out = ["| # | exercise | file | what you write | difficulty | time |", "|---|---|---|---|---|---|"]
        out += [f"| {n} | `{name}` | `{file}` | {title} | {stars} | {time} |"
                for n, name, file, title, stars, time in rows]
        total = sum(ex.minutes for ex in EXERCISES.values())
        out.append(f"\nAll {len(rows)} take about {total // 60} h {total % 60:02d} min.")
        return "\n".join(out)
    status = {ex.name: ("to do" if _student_blank(ex.name) else "") for ex in EXERCISES.values()}
    header = ("#", "exercise", "file", "what you write", "difficulty", "time", "")
    body = [r + (status[r[1]],) for r in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), *(fmt(r) for r in body)])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog=f"python {TOOL.as_posix()}",
                                description="Classroom exercises: holes in the real code, with checks.")
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="the exercises with difficulty and time")
    ls.add_argument("--markdown", action="store_true", help="a Markdown table (for the README)")
    sh = sub.add_parser("show", help="print the instructions of one exercise")
    sh.add_argument("name", choices=list(EXERCISES))
    mk = sub.add_parser("make", help="write a student copy of the repository with the exercises blanked")
    mk.add_argument("dir")
    mk.add_argument("--only", default=None, help="comma-separated exercise names (default: all)")
    ck = sub.add_parser("check", help="check exercises: NAME, NAME,NAME or all")
    ck.add_argument("names")
    args = p.parse_args(argv)

    if args.cmd == "list":
        print(table(args.markdown))
        return 0
    if args.cmd == "show":
        ex = EXERCISES[args.name]
        print(f"{ex.name} ({ex.file}): {ex.title}  [{'★' * ex.stars}, about {ex.minutes} min]\n\n{ex.instructions}")
        return 0
    if args.cmd == "make":
        names = None if args.only is None else _parse_names(args.only)
        try:
            blanked = make_copy(args.dir, names)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"wrote a student copy to {Path(args.dir).resolve()} with {len(blanked)} exercise(s) blanked: "
              f"{', '.join(blanked)}\nnext: cd {args.dir} && python {TOOL.as_posix()} list")
        return 0
    # check: make sure we check the copy the user is standing in, not some other installed one.
    # The copy's own tools/exercises.py puts the copy's root first on sys.path (see the top of this file),
    # so re-running that file is enough; REFT_MINI_EXERCISES_REEXEC stops a second hand-over.
    root = _copy_root(Path.cwd())
    if root is not None and root != REPO_ROOT and not os.environ.get("REFT_MINI_EXERCISES_REEXEC"):
        env = {**os.environ, "REFT_MINI_EXERCISES_REEXEC": "1"}
        return subprocess.run([sys.executable, str(root / TOOL), *argv], cwd=root, env=env).returncode
    names = _parse_names(args.names)
    # Refuse to report on other code than the copy's: a reft_mini imported before this file set sys.path
    # (e.g. by the program that imported it) would be the one the checks call.
    package = importlib.import_module(PACKAGE)
    if Path(package.__file__).resolve().parent != PACKAGE_DIR:
        print(f"error: {PACKAGE} was imported from {Path(package.__file__).resolve().parent}, not from "
              f"{PACKAGE_DIR}", file=sys.stderr)
        return 2
    print(f"checking the code in {PACKAGE_DIR}\n")
    return 0 if run_checks(names) else 1


if __name__ == "__main__":
    sys.exit(main())
