"""data.py: one prompt format, the answer-only SFT mask, batching, and loaders that read the real data
sets exactly (counts, answers) and fail loudly -- naming file, line/record and field -- on bad input."""

import ast
import codecs
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tiktoken

from reft_mini import data
from reft_mini.data import Problem
from reft_mini.reward import parse_number
from test_evaluate import make_checkpoint, tokenizer_path  # noqa: F401 -- a checkpoint maker and its fixture

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def byte_enc():
    """A byte-level tiktoken Encoding: every byte one token, EOT = 256 (independent of tokenizer.py)."""
    return tiktoken.Encoding("bytes", pat_str=r"\S+|\s+", mergeable_ranks={bytes([i]): i for i in range(256)},
                             special_tokens={"<|endoftext|>": 256})


def _encodings(byte_enc):
    encs = [byte_enc]
    try:
        from reft_mini.tokenizer import get_tokenizer

        encs.append(get_tokenizer())
    except Exception:  # noqa: BLE001 -- the project tokenizer may not be built yet
        pass
    return encs


Q = "Mia has 3 bags of 8 apples. She eats 5. How many apples are left?"
PROBLEM = Problem("p1", Q, "19",
                  cot_nl="Mia has 3*8=24 apples.\nAfter eating 5, 24-5=19 apples are left.\n#### 19",
                  cot_program=f'def solution():\n    """{Q}"""\n'
                              "    bags = 3\n    apples_per_bag = 8\n    eaten = 5\n"
                              "    apples = bags * apples_per_bag\n    result = apples - eaten\n    return result")


# ---- prompt format ---------------------------------------------------------------------------------------

def test_prompt_is_refts_format():
    q = PROBLEM.question
    assert data.format_prompt(q, "nl") == f"Question:\n{q}\nAnswer reasoning:\n"
    assert data.format_prompt(q, "program") == f'Question:\n{q}\nAnswer reasoning:\ndef solution():\n    """{q}"""\n'
    with pytest.raises(ValueError):
        data.format_prompt(q, "python")


@pytest.mark.parametrize("question", ['He said "hi"', 'ends with a quote"', 'three """ quotes', "back\\slash \\n",
                                      "mathqa line one\na ) 1 , b ) 2 , c ) 3 , d ) 4 , e ) 5", "plain"])
def test_program_header_parses_and_holds_the_question(question):
    src = data.program_header(question) + "    return 1\n"
    fn = ast.parse(src).body[0]
    assert ast.get_docstring(fn, clean=False) == question


def test_completion_and_answer_text():
    assert data.target_completion(PROBLEM, "nl") == PROBLEM.cot_nl
    body = data.target_completion(PROBLEM, "program")
    assert body.startswith("    bags = 3") and body.endswith("return result")
    # prompt (which ends with the header) + completion is exactly the program the reward runs
    assert data.format_prompt(PROBLEM.question, "program").endswith(data.answer_text(PROBLEM.question, "", "program"))
    assert data.answer_text(PROBLEM.question, body, "program") == PROBLEM.cot_program
    assert data.answer_text(PROBLEM.question, "x", "nl") == "x"


def test_program_header_is_rewritten_from_the_question():
    # real P-CoT files: the docstring may differ from the question (and may be multi-line)
    p = Problem("r1", 'Tom has "5" apples.', "7", cot_program='def solution():\n    """Tom has five\n    apples"""\n'
                "    a = 5\n    result = a + 2\n    return result")
    full = data.answer_text(p.question, data.target_completion(p, "program"), "program")
    assert ast.get_docstring(ast.parse(full).body[0], clean=False) == p.question
    from reft_mini.program import run_program

    assert run_program(full).value == 7


def test_missing_cot_and_bad_program_errors():
    with pytest.raises(ValueError, match="p2.*no N-CoT"):
        data.target_completion(Problem("p2", "q", "1"), "nl")
    with pytest.raises(ValueError, match="p2.*no P-CoT"):
        data.target_completion(Problem("p2", "q", "1"), "program")
    with pytest.raises(ValueError, match="def solution"):
        data.target_completion(Problem("p3", "q", "1", cot_program="x = 1\nresult = x"), "program")
    with pytest.raises(ValueError, match="does not parse"):
        data.target_completion(Problem("p4", "q", "1", cot_program="def solution(:\n    return 1"), "program")


# ---- SFT encoding and batching -------------------------------------------------------------------------

@pytest.mark.parametrize("style", data.STYLES)
def test_encode_sft_mask_covers_exactly_the_completion_and_eot(byte_enc, style):
    for enc in _encodings(byte_enc):
        ids, mask = data.encode_sft(enc, PROBLEM, style, max_len=2000)
        prompt = data.format_prompt(PROBLEM.question, style)
        completion = data.target_completion(PROBLEM, style)
        n_prompt = len(enc.encode_ordinary(prompt))
        assert len(ids) == len(mask)
        assert mask == [0] * n_prompt + [1] * (len(ids) - n_prompt)
        assert ids[-1] == enc.eot_token and mask[-1] == 1
        assert enc.decode(ids[:n_prompt]) == prompt
        assert enc.decode([t for t, m in zip(ids[:-1], mask[:-1]) if m]) == completion
        assert enc.decode(ids[:-1]) == prompt + completion


def test_encode_sft_never_makes_special_tokens_from_text(byte_enc):
    p = Problem("s", "What is <|endoftext|>?", "1", cot_nl="#### 1")
    ids, _ = data.encode_sft(byte_enc, p, "nl", max_len=500)
    assert ids.count(byte_enc.eot_token) == 1


def test_encode_sft_too_long_names_the_problem(byte_enc):
    with pytest.raises(ValueError, match=r"problem p1: \d+ tokens .*max_len=50"):
        data.encode_sft(byte_enc, PROBLEM, "nl", max_len=50)


def test_collate_shifts_and_pads(byte_enc):
    a = data.encode_sft(byte_enc, PROBLEM, "nl", max_len=1000)
    short = Problem("p5", "1+1?", "2", cot_nl="1+1=2\n#### 2")
    b = data.encode_sft(byte_enc, short, "nl", max_len=1000)
    pad = byte_enc.eot_token
    idx, targets, loss_mask = data.collate([a, b], pad_id=pad)
    T = len(a[0]) - 1
    assert idx.shape == targets.shape == loss_mask.shape == (2, T)
    assert idx.dtype == targets.dtype == __import__("torch").long and loss_mask.dtype == __import__("torch").float32
    for row, (ids, mask) in enumerate([a, b]):
        n = len(ids) - 1
        assert idx[row, :n].tolist() == ids[:-1]
        assert targets[row, :n].tolist() == ids[1:]
        assert loss_mask[row, :n].tolist() == [float(m) for m in mask[1:]]
        assert (idx[row, n:] == pad).all() and (targets[row, n:] == pad).all() and (loss_mask[row, n:] == 0).all()
    assert loss_mask[1].sum() == sum(b[1]) and targets[1, len(b[0]) - 2] == pad   # last target of b is its EOT


# ---- numbers and options ---------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,want", [("72", "72"), ("1,080", "1080"), ("$5", "5"), ("203.0", "203"), (51.0, "51"),
                                      ("-120.0", "-120"), ("0.6666666666666666", "0.666666666666667"),
                                      ("19.45", "19.45"), ("50%", "50"), (" 7 ", "7"), ("-0.0", "0"), (3, "3"),
                                      ("abc", None), ("", None), ("1/2", "0.5"), (None, None), (True, None),
                                      ("nan", None), (float("inf"), None)])
def test_gold_answers_are_read_with_the_one_number_parser(raw, want):
    assert parse_number(raw) == want


@pytest.mark.parametrize("line,want", [
    ("a ) 38 , b ) 27.675 , c ) 30 , d ) data inadequate , e ) none of these",
     ["38", "27.675", "30", "data inadequate", "none of these"]),
    ("a ) $ 1,354 , b ) $ 1,733 , c ) $ 3,466 , d ) $ 13,333 , e ) $ 20,796",
     ["$ 1,354", "$ 1,733", "$ 3,466", "$ 13,333", "$ 20,796"]),
    ("a ) 30 , 10 , b ) 2010 , c ) 3515 , d ) 5117 , e ) 20,17", ["30 , 10", "2010", "3515", "5117", "20,17"]),
    ("['a ) 12', 'b ) 15', 'c ) 10', 'd ) 8', 'e ) 14']", ["12", "15", "10", "8", "14"]),
    ("['a ) a ) 4 inches', 'b ) b ) 6 inches', 'c ) c ) 5 inches', 'd ) d ) 8 inches', 'e ) e ) 10 inches']",
     ["4 inches", "6 inches", "5 inches", "8 inches", "10 inches"]),
    ("a ) 1 , b ) 2 , c ) 3 , d ) 4", None),
    ("['a ) 1', 'b ) 2']", None),
])
def test_parse_options(line, want):
    assert data.parse_options(line) == want


# ---- real data sets (../shared/datasets) -----------------------------------------------------------------

def _numeric(problems):
    return all(parse_number(p.answer) == p.answer for p in problems)


def test_gsm8k(shared_datasets):
    folder = shared_datasets / "gsm8k"
    train = data.load_problems("gsm8k", "train", path=folder)
    test = data.load_problems("gsm8k", "test", path=str(folder / "test.jsonl"))
    assert len(train) == 7473 and len(test) == 1319
    assert _numeric(train) and _numeric(test)
    for p in train + test:
        assert "<<" not in p.cot_nl and p.cot_nl.split("\n")[-1] == f"#### {p.answer}"
    assert sum("," in p.answer for p in train + test) == 0
    assert {"-7", "-47", "-12"} <= {p.answer for p in train}
    assert train[0].answer == "72"
    assert train[0].cot_nl == ("Natalia sold 48/2 = 24 clips in May.\n"
                               "Natalia sold 48+24 = 72 clips altogether in April and May.\n#### 72")
    assert test[0].question.startswith("Janet’s ducks")


def test_svamp(shared_datasets):
    probs = data.load_problems("svamp", "test", path=shared_datasets / "svamp" / "SVAMP.json")
    assert len(probs) == 1000 and _numeric(probs)
    assert probs[0].question == ("Each pack of dvds costs 76 dollars. If there is a discount of 25 dollars on "
                                 "each pack How much do you have to pay to buy each pack?")
    assert probs[0].answer == "51" and probs[0].id == "chal-1"


def test_reft_svamp_files(shared_datasets):
    d = shared_datasets / "mwp_ReFT"
    nl = data.load_problems("reft", "train", "nl", path=d / "svamp_nl.json")
    py = data.load_problems("reft", "train", "program", path=d / "svamp_python_sdp.json")
    test = data.load_problems("reft", "test", path=d / "svamp_test_set.json")
    assert (len(nl), len(py), len(test)) == (3076, 3043, 1000)
    assert _numeric(nl) and _numeric(py) and _numeric(test)
    assert all(p.cot_nl and p.cot_program is None for p in nl)
    assert all(p.cot_program and p.cot_nl is None for p in py)
    assert nl[0].answer == "203" and "0.666666666666667" in {p.answer for p in nl}
    # the N-CoT is kept as written: it ends "... the answer is <203>." with (nearly always) the gold value
    close = 0
    for p in nl:
        m = re.search(r"<([^<>]*)>\.?\s*$", p.cot_nl)
        value = parse_number(m.group(1)) if m else None
        close += value is not None and abs(float(value) - float(p.answer)) <= 1e-2
    assert close >= 3070


def test_reft_programs_run_with_the_rewritten_header(shared_datasets):
    from reft_mini.program import run_program

    py = data.load_problems("reft", "train", "program", path=shared_datasets / "mwp_ReFT" / "svamp_python_sdp.json")
    ok = 0
    for p in py:
        full = data.answer_text(p.question, data.target_completion(p, "program"), "program")
        r = run_program(full)
        ok += r.error is None and abs(r.value - float(p.answer)) <= 1e-2
    assert ok >= 3040   # the 3 others are rounding mismatches in the data itself (see datasets/README.md)


def test_mathqa(shared_datasets):
    d = shared_datasets / "mwp_ReFT"
    mc = data.load_problems("mathqa", "test", path=d / "mathqa_test_set.json")
    num = data.load_problems("mathqa-numeric", "test", path=d / "mathqa-numeric_test_set.json")
    assert len(mc) == 1605 and len(num) == 1605
    assert all(p.answer in ("a", "b", "c", "d", "e") for p in mc)
    assert all(len(p.options) == 5 and all(o for o in p.options) for p in mc)
    assert mc[0].options == ["38", "27.675", "30", "data inadequate", "none of these"] and mc[0].answer == "a"
    assert "\n" in mc[0].question   # problem + options line, as in ReFT's file
    assert _numeric(num) and num[0].answer == "38"
    # the reft loader reads the letter-answer file the same way
    via_reft = data.load_problems("reft", "test", path=d / "mathqa_test_set.json")
    assert [p.options for p in via_reft] == [p.options for p in mc]


def test_reft_gsm8k_test_set_matches_openai(shared_datasets):
    reft = data.load_problems("reft", "test", path=shared_datasets / "mwp_ReFT" / "gsm8k_test_set.json")
    openai = data.load_problems("gsm8k", "test", path=shared_datasets / "gsm8k")
    assert [p.answer for p in reft] == [p.answer for p in openai]


def test_synthetic_default():
    probs = data.load_problems("synthetic", "test")
    assert len(probs) == 1000 and all(p.cot_nl and p.cot_program for p in probs)
    assert probs[0].source == "synthetic:test"


# ---- bad input -------------------------------------------------------------------------------------------

def _write_jsonl(path, records, raw_lines=()):
    lines = [json.dumps(r) for r in records] + list(raw_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


GOOD_GSM = {"question": "q?", "answer": "2+2=4\n#### 4"}


def _error(fn) -> str:
    with pytest.raises(data.DataError) as e:   # a ValueError, and a UserError: one line in the scripts
        fn()
    return str(e.value)


def test_gsm8k_bad_json_line(tmp_path):
    f = _write_jsonl(tmp_path / "train.jsonl", [GOOD_GSM], raw_lines=['{"question": "q", "answer": '])
    msg = _error(lambda: data.load_problems("gsm8k", "train", path=tmp_path))
    assert str(f) in msg and "line 2" in msg and "JSON" in msg


def test_gsm8k_missing_field_and_bad_answer(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text(json.dumps(GOOD_GSM) + "\n\n" + json.dumps({"question": "q"}) + "\n")   # blank line 2
    msg = _error(lambda: data.load_problems("gsm8k", "test", path=f))
    assert str(f) in msg and "line 3" in msg and "'answer'" in msg and "missing" in msg
    _write_jsonl(f, [GOOD_GSM, GOOD_GSM, {"question": "q", "answer": "so\n#### four"}])
    msg = _error(lambda: data.load_problems("gsm8k", "test", path=f))
    assert str(f) in msg and "line 3" in msg and "'answer'" in msg and "not a number" in msg
    _write_jsonl(f, [{"question": "q", "answer": "no marker 4"}])
    msg = _error(lambda: data.load_problems("gsm8k", "test", path=f))
    assert "line 1" in msg and "'answer'" in msg and "####" in msg


def test_svamp_bad_records(tmp_path):
    good = {"ID": "chal-1", "Body": "b.", "Question": "q?", "Answer": 5.0}
    f = tmp_path / "SVAMP.json"
    f.write_text(json.dumps([good, {"ID": "chal-2", "Question": "q?", "Answer": 1.0}]))
    msg = _error(lambda: data.load_problems("svamp", "test", path=f))
    assert str(f) in msg and "record 1" in msg and "'Body'" in msg
    f.write_text(json.dumps([good, dict(good, ID="chal-2"), dict(good, ID="chal-3", Answer="lots")]))
    msg = _error(lambda: data.load_problems("svamp", "test", path=f))
    assert str(f) in msg and "record 2" in msg and "'Answer'" in msg and "not a number" in msg
    f.write_text(json.dumps([good])[:-3])
    msg = _error(lambda: data.load_problems("svamp", "test", path=f))
    assert str(f) in msg and "line 1" in msg and "JSON" in msg


def test_reft_bad_records(tmp_path):
    good = {"item_id": "svamp_0", "question": "q?", "answer_value": "203.0", "answer_cot": "... <203>."}
    f = tmp_path / "r.json"
    f.write_text(json.dumps([good, dict(good, item_id="svamp_1", answer_value="n/a")]))
    msg = _error(lambda: data.load_problems("reft", "train", path=f))
    assert str(f) in msg and "record 1" in msg and "'answer_value'" in msg
    f.write_text(json.dumps([good, {"item_id": "svamp_2", "answer_value": "1"}]))
    msg = _error(lambda: data.load_problems("reft", "train", path=f))
    assert "record 1" in msg and "'question'" in msg
    f.write_text(json.dumps([dict(good, answer_cot="def solution(:\n    return 1")]))
    msg = _error(lambda: data.load_problems("reft", "train", "program", path=f))
    assert str(f) in msg and "record 0" in msg and "'answer_cot'" in msg and "does not parse" in msg


def test_mathqa_bad_records(tmp_path):
    good = {"item_id": "mathqa_0", "question": "p ?\na ) 1 , b ) 2 , c ) 3 , d ) 4 , e ) 5", "answer_value": "c"}
    f = tmp_path / "m.json"
    f.write_text(json.dumps([good, dict(good, item_id="mathqa_1", answer_value="f")]))
    msg = _error(lambda: data.load_problems("mathqa", "test", path=f))
    assert str(f) in msg and "record 1" in msg and "'answer_value'" in msg
    f.write_text(json.dumps([good, dict(good, item_id="mathqa_1"),
                             dict(good, item_id="mathqa_2", question="p ?\na ) 1 , b ) 2")]))
    msg = _error(lambda: data.load_problems("mathqa", "test", path=f))
    assert "record 2" in msg and "'question'" in msg and "options" in msg
    f.write_text(json.dumps([good]))
    assert data.load_problems("mathqa", "test", path=f)[0].options == ["1", "2", "3", "4", "5"]


def test_synthetic_folder_bad_record(tmp_path):
    rec = {"id": "x", "question": "q?", "answer": "seven", "cot_nl": "#### 7", "cot_program": None, "options": None}
    f = _write_jsonl(tmp_path / "train.jsonl", [rec])
    msg = _error(lambda: data.load_problems("synthetic", "train", path=tmp_path))
    assert str(f) in msg and "line 1" in msg and "'answer'" in msg


def test_records_are_never_silently_dropped(tmp_path):
    f = _write_jsonl(tmp_path / "t.jsonl", [GOOD_GSM, ["not", "an", "object"]])
    msg = _error(lambda: data.load_problems("gsm8k", "test", path=f))
    assert "line 2" in msg and "JSON object" in msg
    f.write_text("")
    assert "no records" in _error(lambda: data.load_problems("gsm8k", "test", path=f))


def test_paths_and_names(tmp_path):
    assert "no such file" in _error(lambda: data.load_problems("gsm8k", "test", path=tmp_path / "nope.jsonl"))
    assert "test.jsonl" in _error(lambda: data.load_problems("gsm8k", "test", path=tmp_path))
    assert "unknown data set" in _error(lambda: data.load_problems("gsm9k", "test", path=tmp_path))
    assert "--data_path" in _error(lambda: data.load_problems("reft", "test"))
    with pytest.raises(ValueError, match="style"):
        data.load_problems("synthetic", "test", style="python")


def test_data_errors_are_user_errors(tmp_path):
    # a ValueError for callers, and a UserError so the scripts print one line instead of a traceback
    from reft_mini.config import UserError

    with pytest.raises(UserError):
        data.load_problems("gsm8k", "test", path=tmp_path / "missing")
    with pytest.raises(UserError):
        data.load_problems("synthetic", "no_such_split")


def test_hub_failure_is_one_line_that_says_what_to_do(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)\nmore lines")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    msg = _error(lambda: data.load_problems("gsm8k", "test"))
    assert "\n" not in msg and "openai/gsm8k" in msg and "--data_path=" in msg


# ---- every malformed file: ONE DataError naming file, line/record and field -----------------------------
#
# Each case writes one small bad file and says what the message must contain besides the file's name:
# where (line / record) and what (the field, or the kind of damage). All of them run twice: with the
# `datasets` library importable and without it (as on a machine with torch only); local files never go
# through `datasets`, so both must say exactly the same thing.

SYN = {"id": "s1", "question": "Tom has 3 apples and buys 4. How many?", "answer": "7", "cot_nl": "3+4=7\n#### 7",
       "cot_program": 'def solution():\n    """Tom has 3 apples and buys 4. How many?"""\n    result = 3 + 4\n'
                      "    return result", "options": None}
SYN_MC = dict(SYN, id="m1", answer="c", cot_program=None, options=["5", "6", "7", "8", "9"])
REFT = {"item_id": "r1", "question": "Tom has 3 apples and buys 4. How many?", "answer_value": "7",
        "answer_cot": "3+4=7. Therefore, the answer is <7>."}
SVAMP = {"ID": "chal-1", "Body": "Tom has 3 apples.", "Question": "How many?", "Answer": 3.0}


def jsonl(*records, raw: dict | None = None) -> bytes:
    """JSONL bytes, one record per line; raw = {line number: exact text} replaces or appends lines."""
    lines = [json.dumps(r) for r in records]
    for n, text in sorted((raw or {}).items()):
        if n <= len(lines):
            lines[n - 1] = text
        else:
            lines.append(text)
    return ("\n".join(lines) + "\n").encode()


def array(*records) -> bytes:
    """A JSON array with record i on line i + 2 (line 1 is the '[')."""
    return ("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n").encode()


def syn(**fields):
    return dict(SYN, **fields)


# (case id, --dataset, --cot, file name (a synthetic one is found in its folder), bytes, must contain)
BAD_FILES = [
    # bytes that are not text, or not UTF-8
    ("latin1_byte_in_jsonl", "synthetic", "nl", "train.jsonl",
     jsonl(SYN) + json.dumps(syn(id="s2", question="Ana's café")).encode().replace(b"caf\\u00e9", b"caf\xe9") + b"\n",
     ["line 2", "not UTF-8 text", "re-save the file as UTF-8"]),
    ("latin1_byte_in_json_array", "reft", "nl", "r.json",
     array(REFT, dict(REFT, item_id="r2")).replace(b'"r2"', b'"r\xe92"'),
     ["line 3", "not UTF-8 text", "re-save the file as UTF-8"]),
    ("utf16_file", "reft", "nl", "r.json", "\ufeff".encode("utf-16-le") + array(REFT).decode().encode("utf-16-le"),
     ["line 1", "UTF-16", "re-save the file as UTF-8"]),
    ("utf16_without_bom", "gsm8k", "nl", "t.jsonl", jsonl(GOOD_GSM).decode().encode("utf-16-le"),
     ["line 1", "NUL", "re-save the file as UTF-8"]),
    # JSON that is broken, or not one object per line
    ("two_objects_on_one_line", "synthetic", "nl", "train.jsonl",
     jsonl(SYN, syn(id="s3", answer="seven"), raw={1: json.dumps(SYN) + " " + json.dumps(syn(id="s2"))}),
     ["line 1", "second JSON value", "exactly one JSON object"]),
    ("stray_text_after_an_object", "gsm8k", "nl", "t.jsonl", jsonl(GOOD_GSM, raw={2: json.dumps(GOOD_GSM) + " ok"}),
     ["line 2", "stray text", "exactly one JSON object"]),
    ("broken_json_line", "gsm8k", "nl", "t.jsonl", jsonl(GOOD_GSM, GOOD_GSM, raw={3: '{"question": "q", "answer": '}),
     ["line 3", "not valid JSON"]),
    ("truncated_json_array", "svamp", "nl", "SVAMP.json", array(SVAMP, dict(SVAMP, ID="chal-2"))[:-8],
     ["line 3", "not valid JSON"]),
    ("text_after_the_array", "svamp", "nl", "SVAMP.json", array(SVAMP) + b"[]\n", ["line 4", "after the array"]),
    ("field_twice_in_a_jsonl_record", "gsm8k", "nl", "t.jsonl",
     jsonl(GOOD_GSM, raw={2: '{"question": "q?", "answer": "#### 4", "answer": "#### 5"}'}),
     ["line 2", "'answer'", "appears twice"]),
    ("field_twice_in_an_array_record", "reft", "nl", "r.json",
     array(REFT, dict(REFT, item_id="r2")).replace(b'"r2",', b'"r2", "question": "again?",'),
     ["record 1", "line 3", "'question'", "appears twice"]),
    ("integer_of_5000_digits", "gsm8k", "nl", "t.jsonl", jsonl(GOOD_GSM, raw={2: '{"question": ' + "9" * 5000 + "}"}),
     ["line 2", "4300 digits"]),
    ("nested_too_deeply", "reft", "nl", "r.json", b"[" * 100_000 + b"]" * 100_000, ["nested too deeply"]),
    # not records
    ("empty_file", "reft", "nl", "r.json", b"", ["empty", "no records"]),
    ("only_blank_lines", "gsm8k", "nl", "t.jsonl", b"\n  \n\r\n", ["empty", "no records"]),
    ("empty_array", "reft", "nl", "r.json", b"[]\n", ["no records"]),
    ("array_of_numbers", "reft", "nl", "r.json", b"[1, 2]", ["record 0", "line 1", "JSON object"]),
    ("jsonl_line_that_is_a_string", "gsm8k", "nl", "t.jsonl", jsonl(GOOD_GSM, "a string"), ["line 2", "JSON object"]),
    ("pretty_printed_top_level_object", "reft", "nl", "r.json", json.dumps(REFT, indent=2).encode(),
     ["one JSON object", "JSON array"]),
    ("records_under_a_key", "reft", "nl", "r.json", json.dumps({"data": [REFT]}).encode(), ["'data'", "JSON array"]),
    ("dot_json_file_in_jsonl_layout_with_a_bad_line", "reft", "nl", "r.json",
     jsonl(REFT, dict(REFT, item_id="r2", answer_value=None)), ["line 2", "'answer_value'", "missing"]),
    # fields of the wrong type or value
    ("question_not_a_string", "gsm8k", "nl", "t.jsonl", jsonl(GOOD_GSM, dict(GOOD_GSM, question=5)),
     ["line 2", "'question'", "should be a string"]),
    ("question_empty", "reft", "nl", "r.json", array(REFT, dict(REFT, item_id="r2", question=" ")),
     ["record 1", "line 3", "'question'", "missing or empty"]),
    ("cot_nl_a_number", "synthetic", "nl", "train.jsonl", jsonl(SYN, syn(id="s2", cot_nl=5)),
     ["line 2", "'cot_nl'", "should be a string"]),
    ("cot_program_a_number", "synthetic", "program", "train.jsonl", jsonl(SYN, syn(id="s2", cot_program=5)),
     ["line 2", "'cot_program'", "should be a string"]),
    ("cot_nl_empty", "synthetic", "nl", "train.jsonl", jsonl(syn(cot_nl="")), ["line 1", "'cot_nl'", "empty"]),
    ("synthetic_program_does_not_parse", "synthetic", "nl", "train.jsonl",
     jsonl(SYN, syn(id="s2", cot_program="def solution(:\n    return 7")),
     ["line 2", "'cot_program'", "does not parse"]),
    ("synthetic_program_without_def_solution", "synthetic", "program", "train.jsonl",
     jsonl(syn(cot_program="result = 7")), ["line 1", "'cot_program'", "def solution():"]),
    ("reft_program_does_not_parse", "reft", "program", "r.json",
     array(dict(REFT, answer_cot=SYN["cot_program"]),
           dict(REFT, item_id="r2", answer_cot="def solution(:\n    return 7")),
     ["record 1", "line 3", "'answer_cot'", "does not parse"]),
    ("answer_cot_a_list", "reft", "nl", "r.json", array(dict(REFT, answer_cot=["3+4=7"])),
     ["record 0", "'answer_cot'", "should be a string"]),
    ("nan_answer", "reft", "nl", "r.json",
     array(REFT, dict(REFT, item_id="r2", answer_value="@")).replace(b'"@"', b"NaN"),
     ["record 1", "line 3", "'answer_value'", "NaN, not a finite number"]),
    ("infinite_answer", "synthetic", "nl", "train.jsonl", jsonl(SYN).replace(b'"answer": "7"', b'"answer": -Infinity'),
     ["line 1", "'answer'", "-Infinity, not a finite number"]),
    ("nan_svamp_answer", "svamp", "nl", "SVAMP.json", array(SVAMP).replace(b"3.0", b"NaN"),
     ["record 0", "'Answer'", "not a finite number"]),
    ("answer_with_a_unit", "reft", "nl", "r.json", array(dict(REFT, answer_value="12 apples")),
     ["record 0", "'answer_value'", "'12 apples' is not a number"]),
    ("gsm8k_answer_with_a_unit", "gsm8k", "nl", "t.jsonl", jsonl(dict(GOOD_GSM, answer="2+2=4\n#### 4 apples")),
     ["line 1", "'answer'", "not a number"]),
    ("answer_a_bool", "synthetic", "nl", "train.jsonl", jsonl(syn(answer=True)),
     ["line 1", "'answer' = true", "not a number"]),
    ("options_not_five", "synthetic", "nl", "train.jsonl", jsonl(SYN_MC, dict(SYN_MC, id="m2", options=["5", "6"])),
     ["line 2", "'options'", "list of 5 strings"]),
    ("options_not_strings", "synthetic", "nl", "train.jsonl", jsonl(dict(SYN_MC, options=[5, 6, 7, 8, 9])),
     ["line 1", "'options'", "list of 5 strings"]),
    ("options_a_string", "synthetic", "nl", "train.jsonl", jsonl(dict(SYN_MC, options="a ) 5 , b ) 6")),
     ["line 1", "'options'", "list of 5 strings"]),
    ("letter_answer_out_of_range", "synthetic", "nl", "train.jsonl", jsonl(dict(SYN_MC, answer="f")),
     ["line 1", "'answer'", "letter a-e"]),
    ("id_a_list", "synthetic", "nl", "train.jsonl", jsonl(syn(id=["s1"])),
     ["line 1", "'id'", "string or a whole number"]),
    # ids used twice
    ("synthetic_id_twice", "synthetic", "nl", "train.jsonl", jsonl(SYN, syn(id="s2"), SYN),
     ["line 3", "'id' = 's1'", "line 1", "unique"]),
    ("reft_item_id_twice", "reft", "nl", "r.json", array(REFT, dict(REFT, item_id="r2"), REFT),
     ["record 2 (0-based, line 4)", "'item_id' = 'r1'", "record 0 (0-based, line 2)", "unique"]),
    ("svamp_id_twice", "svamp", "nl", "SVAMP.json", array(SVAMP, dict(SVAMP, ID="chal-2"), dict(SVAMP, ID="chal-2")),
     ["record 2", "'ID' = 'chal-2'", "record 1", "unique"]),
    # line numbers that stay right
    ("byte_order_mark", "gsm8k", "nl", "t.jsonl", codecs.BOM_UTF8 + jsonl(GOOD_GSM, GOOD_GSM, {"question": "q?"}),
     ["line 3", "'answer'", "missing"]),
    ("blank_lines_and_crlf", "gsm8k", "nl", "t.jsonl", jsonl(GOOD_GSM).replace(b"\n", b"\r\n") + b"\r\n" +
     jsonl({"question": "q?"}), ["line 3", "'answer'", "missing"]),
]


@pytest.fixture(params=["with datasets", "without datasets"])
def reader(request, monkeypatch):
    """Run a test with `datasets` importable (but never called for a local file) and without it."""
    if request.param == "with datasets":
        datasets = pytest.importorskip("datasets")

        def not_for_local_files(*args, **kwargs):
            raise AssertionError("a local file was read through datasets.load_dataset")

        monkeypatch.setattr(datasets, "load_dataset", not_for_local_files)
    else:
        monkeypatch.setitem(sys.modules, "datasets", None)   # `import datasets` now raises ImportError
    return request.param


def _load_bad(tmp_path, dataset, style, name, content):
    """Write the file (a synthetic one into a folder, as --data_path=FOLDER gives it); load it."""
    file = tmp_path / name
    file.write_bytes(content)
    path = tmp_path if dataset == "synthetic" else file
    return file, lambda: data.load_problems(dataset, "train", style, path=path)


@pytest.mark.parametrize("case, dataset, style, name, content, want", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_a_bad_file_gives_one_data_error_naming_file_place_and_field(tmp_path, reader, case, dataset, style, name,
                                                                     content, want):
    file, load = _load_bad(tmp_path, dataset, style, name, content)
    msg = _error(load)
    assert "\n" not in msg and msg.startswith(str(file)), msg
    for part in want:
        assert part in msg, f"{part!r} not in: {msg}"


def test_messages_are_the_same_with_and_without_datasets(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    for case, dataset, style, name, content, _ in BAD_FILES:
        folder = tmp_path / case
        folder.mkdir()
        file, load = _load_bad(folder, dataset, style, name, content)
        with_it = _error(load)
        with monkeypatch.context() as m:
            m.setitem(sys.modules, "datasets", None)
            assert _error(load) == with_it, case


def test_a_folder_without_the_split_file_says_which_files_it_has(tmp_path, reader):
    (tmp_path / "test.jsonl").write_bytes(jsonl(SYN))
    msg = _error(lambda: data.load_problems("synthetic", "train", path=tmp_path))
    assert str(tmp_path) in msg and "train.jsonl" in msg and "test.jsonl" in msg and "--data_path" in msg


# ---- what is accepted, and read right ---------------------------------------------------------------------

def test_a_byte_order_mark_is_accepted(tmp_path, reader):
    plain = data.load_problems("reft", "test", path=_put(tmp_path / "a.json", array(REFT, dict(REFT, item_id="r2"))))
    bom = data.load_problems("reft", "test", path=_put(tmp_path / "b.json",
                                                       codecs.BOM_UTF8 + array(REFT, dict(REFT, item_id="r2"))))
    assert [(p.id, p.question, p.answer) for p in bom] == [(p.id, p.question, p.answer) for p in plain]
    one = data.load_problems("synthetic", "x", path=_put(tmp_path / "x.jsonl", codecs.BOM_UTF8 + jsonl(SYN)))
    assert one[0].id == "s1"


def test_the_layout_is_read_from_the_content_not_the_name(tmp_path, reader):
    # a .json file with one object per line, and a one-record JSONL file, are both fine
    assert len(data.load_problems("reft", "test", path=_put(tmp_path / "r.json",
                                                            jsonl(REFT, dict(REFT, item_id="r2"))))) == 2
    assert data.load_problems("gsm8k", "test", path=_put(tmp_path / "g.jsonl", jsonl(GOOD_GSM)))[0].answer == "4"


def test_synthetic_records_load_with_their_types_checked(tmp_path, reader):
    probs = data.load_problems("synthetic", "train", path=_put(tmp_path / "train.jsonl",
                                                               jsonl(SYN, SYN_MC, syn(id=7, cot_program=None))))
    assert [p.id for p in probs] == ["s1", "m1", "7"]
    assert probs[1].answer == "c" and probs[1].options == SYN_MC["options"] and probs[2].cot_program is None


def test_a_file_rewritten_with_the_same_size_and_mtime_is_read_again(tmp_path, reader):
    # `datasets`' json cache is keyed by path and mtime; we keep no cache, so the file is what counts
    f = _put(tmp_path / "t.jsonl", jsonl(dict(GOOD_GSM, answer="#### 4")))
    assert data.load_problems("gsm8k", "test", path=f)[0].answer == "4"
    st = os.stat(f)
    _put(f, jsonl(dict(GOOD_GSM, answer="#### 5")))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(f).st_size == st.st_size and os.stat(f).st_mtime_ns == st.st_mtime_ns
    assert data.load_problems("gsm8k", "test", path=f)[0].answer == "5"


def test_a_program_built_in_memory_names_its_problem_source_and_field():
    p = Problem("p9", "q", "1", cot_program="def solution(:\n    return 1", source="my-generator")
    msg = _error(lambda: data.target_completion(p, "program"))
    assert "p9" in msg and "my-generator" in msg and "'cot_program'" in msg and "does not parse" in msg


def _put(path, content: bytes):
    path.write_bytes(content)
    return path


# ---- the scripts: one line on stderr, exit status 2 -------------------------------------------------------

def _script(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "REFT_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_train_warmup_stops_on_a_bad_data_file_with_one_line(tmp_path):
    bad = tmp_path / "data"
    bad.mkdir()
    (bad / "train.jsonl").write_bytes(jsonl(SYN) + b'{"id": "s\xff2"}\n')
    p = _script("train_warmup.py", "--dataset=synthetic", f"--data_path={bad}", "--model=tiny", "--init=none",
                "--max_steps=1", "--progress=false", f"--out_dir={tmp_path / 'out'}")
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert f"{bad / 'train.jsonl'}, line 2: not UTF-8 text" in p.stderr


def test_evaluate_stops_on_a_bad_data_file_with_one_line(tmp_path, tokenizer_path):
    ckpt = make_checkpoint(tmp_path / "a.pt", tokenizer_path)
    bad = _put(tmp_path / "r.json", array(REFT, dict(REFT, item_id="r2", answer_value="12 apples")))
    p = _script("evaluate.py", str(ckpt), "--dataset=reft", f"--data_path={bad}", "--progress=false",
                f"--out={tmp_path / 'eval'}")
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert f"{bad}, record 1 (0-based, line 3): field 'answer_value'" in p.stderr
