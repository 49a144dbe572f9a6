# reft_mini/reward.py -- from a sampled chain of thought to a score: 1 / 0.1 / 0.
#
# Paper: ReFT (Luong et al. 2024), Section 3 "Reinforced Fine-Tuning", the reward function. After the
# policy writes a chain of thought e for question x, the environment extracts an answer from e and
# compares it with the gold answer y:
#
#     r = 1    if the extracted answer equals y
#     r = 0.1  if an answer could be extracted but it is wrong     ("partial reward", all data sets,
#     r = 0    if nothing could be extracted (N-CoT) or the         multiple choice included)
#              program failed to run (P-CoT)
#
# The partial reward exists because a sparse 0/1 signal says nothing to a policy that has not yet
# learned the answer *format*; 0.1 rewards "finished with a well-formed answer" without rewarding
# wrong numbers much. The score lands on the last response token; ppo.py adds the per-token KL term.
#
# Two chain-of-thought styles (data.py STYLES):
#   "nl"      (N-CoT) natural language ending with an answer trigger: GSM8K's "#### 72", or ReFT's
#             "Therefore, the answer is <203>." / "The answer is: 72". We read the first number (or
#             option letter, for multiple choice) after the LAST trigger.
#   "program" (P-CoT) a Python program `def solution(): ... return result`, run by the safe
#             interpreter in program.py; its return value is the answer.
#
# Everything here is a pure function of strings (no I/O, no state): the same code scores training
# rollouts and evaluation samples, so the two cannot drift apart.
from __future__ import annotations

import math
import re

from reft_mini.program import run_program

__all__ = [
    "TOLERANCE", "extract_answer", "answers_match", "reward", "score_answer", "majority_vote",
    "canonical_number", "parse_number", "is_choice_answer",
]

# Two numbers are "the same answer" when they differ by at most 1e-2: the tolerance of ReFT's
# official evaluation code (`abs(pred - gold) <= 1e-2`). It forgives float noise and the 2-decimal
# rounding in gold answers (SVAMP/MathQA gold like "0.165" vs a program's 0.16665), while
# still telling apart answers that differ in the cents.
TOLERANCE = 1e-2

# Answer triggers. GSM8K ends its solutions with "#### 72"; ReFT's N-CoT data ends with
# "Therefore, the answer is <203>." and its prompts ask for "The answer is: ...". "answer is"
# covers all of those spellings (and "the final answer is"). Case-insensitive.
_TRIGGER = re.compile(r"####|answer is", re.IGNORECASE)

# One number as people write it: optional sign (also after a "$"), thousands commas, decimals,
# an exponent, and a simple fraction "3/4". A trailing "%" or "." is simply not part of the match.
_NUM = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+"
_NUMBER = re.compile(
    rf"(?P<sign>[-+\u2212])?\s?\$?\s?(?P<sign2>[-\u2212])?(?P<num>{_NUM})(?:\s*/\s*(?P<den>{_NUM}))?"
)
# A whole string that is one number, with the decorations answers come in: "<6%>", "$1,080.", " 72 ".
_WHOLE_NUMBER = re.compile(rf"\s*<?\s*{_NUMBER.pattern}\s*%?\s*>?\s*\.?\s*")

# A multiple-choice letter right after the trigger: "(b)", "b )", "B", "<c>.", "option d". The letter
# must be followed by a bracket, punctuation or the end of the line, so "answer is because..." or
# "answer is a number" do not count as options.
_CHOICE = re.compile(r"[\s:*]*(?:option|choice)?\s*[(<\[]?\s*([a-e])\s*(?:[)>\].,:;]|$)", re.IGNORECASE)
_LETTER = re.compile(r"\s*\(?\s*([a-eA-E])\s*\)?\s*")


# --------------------------------------------------------------------------------------------------
# Numbers and their canonical spelling
# --------------------------------------------------------------------------------------------------
def canonical_number(x: int | float) -> str:
    """One spelling per number: integers without ".0" ("203.0" -> "203"); other floats rounded to
    15 significant digits (the precision a float actually carries, so 0.1 + 0.2 -> "0.3") and then
    written in Python's shortest repr ("0.666666666666667", "19.45")."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"canonical_number needs an int or float, not {type(x).__name__}")
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        raise ValueError(f"canonical_number needs a finite number, not {x}")
    if x.is_integer():
        return str(int(x))                      # also turns -0.0 into "0"
    return repr(float(f"{x:.15g}"))


def _number_from_match(m: re.Match) -> str | None:
    """Canonical string for a _NUMBER match (None for x/0 or an overflowing number)."""
    negative = (m.group("sign") in ("-", "\u2212")) != (m.group("sign2") is not None)
    num = m.group("num").replace(",", "")
    if m.group("den") is not None:
        den = float(m.group("den").replace(",", ""))
        value = float(num) / den if den != 0 else math.nan
    elif num.isdigit() and len(num) <= 100:     # exact integers (long ones go through float)
        value = int(num)
    else:
        value = float(num)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return canonical_number(-value if negative else value)


def parse_number(text) -> str | None:
    """If the whole string is one number ("1,080", "$72", "-3", "0.50", "3/4", "<6%>"), its canonical
    spelling; a finite int or float gives its canonical spelling too; anything else (other text, None,
    a bool, nan, inf) gives None. The project's one number parser: data.py reads gold answers with it,
    so a gold answer and a model's answer are spelled alike."""
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return canonical_number(text) if math.isfinite(text) else None
    if not isinstance(text, str):
        return None
    m = _WHOLE_NUMBER.fullmatch(text)
    if m is None:
        return None
    return _number_from_match(m)


def is_choice_answer(gold: str) -> bool:
    """A gold answer that is a single option letter a-e means multiple-choice mode (MathQA)."""
    return isinstance(gold, str) and _LETTER.fullmatch(gold) is not None


# --------------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------------
def extract_answer(text: str, style: str, choices: bool = False) -> str | None:
    """The answer a chain of thought commits to, as a canonical string ("72", "-3", "0.5", "b"),
    or None when there is none.

    style "nl": the first number (choices=True: option letter a-e, lower-cased) after the last
    answer trigger. style "program": run the program; the canonical string of its return value.
    """
    if not isinstance(text, str):
        return None
    if style == "program":
        if choices:
            # Programs return numbers; ReFT runs P-CoT on MathQA-numeric, not on the letter version.
            raise ValueError("multiple-choice answers need style 'nl' (programs return numbers)")
        result = run_program(text)
        return canonical_number(result.value) if result.ok else None
    if style != "nl":
        raise ValueError(f"unknown chain-of-thought style {style!r}; expected 'nl' or 'program'")
    return _extract_nl(text, choices)


def _extract_nl(text: str, choices: bool) -> str | None:
    """N-CoT: find the last answer trigger, then read the answer that follows it on the same line."""
    # EXERCISE extract_answer: begin
    # The LAST trigger counts: a model may mention "the answer is" mid-way and then correct itself.
    triggers = list(_TRIGGER.finditer(text))
    if not triggers:
        return None                        # no trigger: nothing extractable (reward 0)
    after = text[triggers[-1].end():].lstrip(" \t\n:")  # "<203>.", "72", "$1,080", "(b) 27.6"
    line = after.split("\n", 1)[0]         # the answer sits on the trigger's line ("is:\n72": the next)
    if choices:
        m = _CHOICE.match(line)
        return m.group(1).lower() if m else None
    m = _NUMBER.search(line)               # first number after the trigger
    if m is None:
        return None                        # "The answer is unknown." -> nothing extractable
    return _number_from_match(m)
    # EXERCISE extract_answer: end


# --------------------------------------------------------------------------------------------------
# Comparison, reward, voting
# --------------------------------------------------------------------------------------------------
def _answer_key(answer: str | None) -> str | None:
    """Canonical key: lower-case letter, canonical number, or the stripped text; None if empty."""
    if answer is None:
        return None
    answer = str(answer)
    letter = _LETTER.fullmatch(answer)
    if letter:
        return letter.group(1).lower()
    number = parse_number(answer)
    if number is not None:
        return number
    return answer.strip().lower() or None


def answers_match(pred: str | None, gold: str) -> bool:
    """Numbers: |pred - gold| <= TOLERANCE. Letters: equal after lower-casing. None never matches."""
    p, g = _answer_key(pred), _answer_key(gold)
    if p is None or g is None:
        return False
    if p == g:
        return True
    if is_choice_answer(p) or is_choice_answer(g):
        return False                                  # letters match exactly or not at all
    if parse_number(p) is None or parse_number(g) is None:
        return False                                  # some non-numeric text that differs
    return abs(float(p) - float(g)) <= TOLERANCE      # canonical strings are valid float literals


def reward(text: str, gold: str, style: str, partial: float = 0.1) -> float:
    """ReFT's reward (Section 3): 1.0 right, `partial` (0.1) answer extracted but wrong, 0.0 none.

    A gold answer that is one letter a-e switches on multiple-choice extraction. "Extracted" means:
    N-CoT, a number (or letter) after the trigger; P-CoT, the program ran and returned a number.
    """
    return score_answer(extract_answer(text, style, choices=is_choice_answer(gold)), gold, partial)


def score_answer(predicted: str | None, gold: str, partial: float = 0.1) -> float:
    """The reward of an already extracted answer: 1.0 right, `partial` wrong, 0.0 when there is none."""
    if predicted is None:
        return 0.0
    return 1.0 if answers_match(predicted, gold) else float(partial)


def majority_vote(answers: list[str | None]) -> str | None:
    """The most common answer among samples (paper: voting over 100 samples), as a canonical string.

    Numerically equal spellings count together ("72", "72.0", "$72"), None is ignored, ties go to
    the answer that appeared first. None when there is no answer at all.
    """
    # EXERCISE majority_vote: begin
    counts: dict[str, int] = {}            # canonical answer -> votes; dicts keep first-seen order
    for answer in answers:
        key = _answer_key(answer)
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return None
    best = max(counts.values())
    for key, votes in counts.items():      # first-seen order, so ties go to the earliest answer
        if votes == best:
            return key
    return None
    # EXERCISE majority_vote: end
