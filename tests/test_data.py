"""data.py: one prompt format, the answer-only SFT mask, batching, and loaders that read the real data
sets exactly (counts, answers) and fail loudly -- naming file, line/record and field -- on bad input."""

import ast
import json
import re

import pytest
import tiktoken

from reft_mini import data
from reft_mini.data import Problem
from reft_mini.reward import parse_number


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
    with pytest.raises(ValueError) as e:
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
    f.write_text(json.dumps([good, good, dict(good, Answer="lots")]))
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
    f.write_text(json.dumps([good, dict(good, answer_value="f")]))
    msg = _error(lambda: data.load_problems("mathqa", "test", path=f))
    assert str(f) in msg and "record 1" in msg and "'answer_value'" in msg
    f.write_text(json.dumps([good, good, dict(good, question="p ?\na ) 1 , b ) 2")]))
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
