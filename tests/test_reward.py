"""Tests for reft_mini/reward.py: answer extraction, matching, the 1 / 0.1 / 0 reward, majority vote."""
import json
import re

import pytest

from reft_mini.reward import (TOLERANCE, answers_match, canonical_number, extract_answer,
                              is_choice_answer, majority_vote, parse_number, reward)


def _gsm8k(shared_datasets, split):
    with open(shared_datasets / "gsm8k" / f"{split}.jsonl") as f:
        return [json.loads(line) for line in f]


def _gold(chain):
    return chain.split("####")[-1].strip().replace(",", "")


# ---------------------------------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------------------------------
def test_every_gsm8k_gold_chain_scores_full_partial_and_zero(shared_datasets):
    n_checked_zero = 0
    for split in ("train", "test"):
        for rec in _gsm8k(shared_datasets, split):
            chain, gold = rec["answer"], _gold(rec["answer"])
            assert reward(chain, gold, "nl") == 1.0, chain[-80:]
            # Same chain, wrong final number: an answer was extracted but it is wrong -> partial.
            body = chain.rsplit("####", 1)[0]
            wrong = f"{body}#### {int(gold) + 1}"
            assert reward(wrong, gold, "nl") == pytest.approx(0.1)
            assert reward(wrong, gold, "nl", partial=0.25) == pytest.approx(0.25)
            # No answer trigger at all -> nothing extractable -> 0. (4 GSM8K bodies already say
            # "the answer is ..." mid-text; those do contain an answer, so they are skipped.)
            if not re.search("answer is", body, re.IGNORECASE):
                assert reward(body, gold, "nl") == 0.0
                n_checked_zero += 1
    assert n_checked_zero >= 8780


def test_reft_gsm8k_answer_values_match_openai_test_chains(shared_datasets):
    reft = json.loads((shared_datasets / "mwp_ReFT" / "gsm8k_test_set.json").read_text())
    openai = _gsm8k(shared_datasets, "test")
    assert len(reft) == len(openai) == 1319
    for r, o in zip(reft, openai):
        assert extract_answer(o["answer"], "nl") == r["answer_value"], r["item_id"]


def test_reft_svamp_nl_chains_match_answer_value(shared_datasets):
    records = json.loads((shared_datasets / "mwp_ReFT" / "svamp_nl.json").read_text())
    misses = {r["item_id"] for r in records
              if not answers_match(extract_answer(r["answer_cot"], "nl"), r["answer_value"])}
    # svamp_929: the chain rounds 8.93 trucks up to <9>; svamp_2000: the chain says <69.32%>, gold 69.4.
    assert misses == {"svamp_929", "svamp_2000"}


def test_reft_svamp_programs_score_full_reward(shared_datasets):
    records = json.loads((shared_datasets / "mwp_ReFT" / "svamp_python_sdp.json").read_text())
    for rec in records[:300]:
        assert reward(rec["answer_cot"], rec["answer_value"], "program") == 1.0, rec["item_id"]


def test_mathqa_gold_letters_switch_on_choice_mode(shared_datasets):
    records = json.loads((shared_datasets / "mwp_ReFT" / "mathqa_test_set.json").read_text())
    for rec in records:
        gold = rec["answer_value"]
        assert is_choice_answer(gold)
        assert reward(f"Some reasoning.\nTherefore, the answer is ({gold}).", gold, "nl") == 1.0
        other = "b" if gold != "b" else "c"
        assert reward(f"Therefore, the answer is {other.upper()} ) 12.", gold, "nl") == pytest.approx(0.1)


# ---------------------------------------------------------------------------------------------------
# Extraction cases
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("She sold 48 + 24 = 72 clips.\n#### 72", "72"),
    ("#### 1,080", "1080"),
    ("#### 850,000", "850000"),
    ("#### -7", "-7"),
    ("Therefore, the answer is <203>.", "203"),
    ("This question was already answered earlier. The answer is <4>.", "4"),
    ("The answer is: 72", "72"),
    ("the answer is 72.", "72"),
    ("Therefore, the answer is <203.0>.", "203"),
    ("The answer is 3.50", "3.5"),
    ("The answer is .5", "0.5"),
    ("The answer is -0.25.", "-0.25"),
    ("The answer is 3/4.", "0.75"),
    ("The answer is 2 / 3", "0.666666666666667"),
    ("The answer is $1,234.50.", "1234.5"),
    ("The answer is -$5.", "-5"),
    ("The answer is $-5.", "-5"),
    ("The answer is 50%.", "50"),
    ("Therefore, the answer is <6%>.", "6"),
    ("The answer is <0.6666666666666666>.", "0.666666666666667"),
    ("The final answer is 12 apples.", "12"),
    ("First the answer is 5. Wait, no: the answer is 6.", "6"),     # the last trigger counts
    ("The answer is:\n42", "42"),
    ("#### 72\n", "72"),
])
def test_extract_nl_numbers(text, expected):
    assert extract_answer(text, "nl") == expected


@pytest.mark.parametrize("text", [
    "",
    "Natalia sold 72 clips.",                       # a number, but no trigger
    "The answer is unknown.",
    "####",
    "The answer is unknown.\n5",                  # only the trigger's line is read
])
def test_extract_nl_nothing(text):
    assert extract_answer(text, "nl") is None
    assert reward(text, "72", "nl") == 0.0


@pytest.mark.parametrize("text, expected", [
    ("Therefore, the answer is (b).", "b"),
    ("The answer is b ) 27.675", "b"),
    ("The answer is B", "b"),
    ("The answer is <c>.", "c"),
    ("The answer is: E.", "e"),
    ("So the answer is option d, 14", "d"),
    ("#### a", "a"),
    ("The answer is because of 5", None),
    ("The answer is a number", None),
    ("The answer is 27.675", None),
    ("no trigger (b)", None),
])
def test_extract_multiple_choice_letters(text, expected):
    assert extract_answer(text, "nl", choices=True) == expected


def test_extract_program_style():
    program = "def solution():\n    \"\"\"q\"\"\"\n    apples = 5.0\n    result = apples * 2\n    return result"
    assert extract_answer(program, "program") == "10"
    assert extract_answer("def solution():\n    return 1/3", "program") == "0.333333333333333"
    assert extract_answer("def solution():\n    return 1/0", "program") is None
    assert extract_answer("import os\nresult = 1", "program") is None
    assert extract_answer("The answer is 5", "program") is None     # prose is not a program


def test_bad_style_arguments_raise():
    with pytest.raises(ValueError):
        extract_answer("#### 5", "latex")
    with pytest.raises(ValueError):
        extract_answer("result = 1", "program", choices=True)


# ---------------------------------------------------------------------------------------------------
# Canonical numbers and matching
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    (203, "203"), (203.0, "203"), (-0.0, "0"), (0.1 + 0.2, "0.3"), (19.45, "19.45"),
    (48.68077, "48.68077"), (2 / 3, "0.666666666666667"), (-120.0, "-120"), (1e-5, "1e-05"),
])
def test_canonical_number(value, expected):
    assert canonical_number(value) == expected


@pytest.mark.parametrize("text, expected", [
    ("1,080", "1080"), ("$72", "72"), ("72.00", "72"), ("-3", "-3"), ("3/4", "0.75"), ("<6%>", "6"),
    (" 72. ", "72"), ("1e-05", "1e-05"), ("seventy", None), ("72 apples", None), ("inf", None), ("", None),
])
def test_parse_number(text, expected):
    assert parse_number(text) == expected


def test_answers_match_tolerance_and_letters():
    assert TOLERANCE == 1e-2
    assert answers_match("72", "72.0") and answers_match("1080", "1,080")
    assert answers_match("0.16665", "0.165")             # within 1e-2
    assert answers_match("0.33", "0.333333")
    assert not answers_match("0.32", "0.335")            # 0.015 apart
    assert not answers_match("73", "72")
    assert answers_match("B", "b") and answers_match("b", "(b)")
    assert not answers_match("a", "b") and not answers_match("1", "a")
    assert not answers_match(None, "72") and not answers_match(None, "a") and not answers_match("", "")


def test_reward_values():
    assert reward("#### 72", "72", "nl") == 1.0
    assert reward("#### 72.004", "72", "nl") == 1.0
    assert reward("#### 71", "72", "nl") == pytest.approx(0.1)
    assert reward("#### 71", "72", "nl", partial=0.0) == 0.0
    assert reward("no answer here", "72", "nl") == 0.0
    assert reward("The answer is (a)", "a", "nl") == 1.0
    assert reward("The answer is (b)", "a", "nl") == pytest.approx(0.1)
    assert reward("The answer is 38", "a", "nl") == 0.0          # a number is no option letter
    assert reward("def solution():\n    return 72", "72.0", "program") == 1.0
    assert reward("def solution():\n    return 71", "72", "program") == pytest.approx(0.1)
    assert reward("def solution():\n    return 'x'", "72", "program") == 0.0
    assert reward("def solution(:", "72", "program") == 0.0


# ---------------------------------------------------------------------------------------------------
# Majority vote
# ---------------------------------------------------------------------------------------------------
def test_majority_vote_counts_numerically_equal_spellings_together():
    assert majority_vote(["5", "72", "72.0", "$72", "5", None, None, None]) == "72"


def test_majority_vote_ties_go_to_first_occurrence_and_none_is_ignored():
    assert majority_vote(["6", "5", "5", "6"]) == "6"
    assert majority_vote([None, "b", "B", "a", "a"]) == "b"
    assert majority_vote([None, None]) is None
    assert majority_vote([]) is None
