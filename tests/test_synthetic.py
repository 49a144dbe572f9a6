"""The synthetic data set: reproducible, disjoint splits; every CoT and program gives the answer; the
problems have several valid step orders; the SVAMP- and MathQA-style variants look like their models."""

import collections
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import synthetic as S
from reft_mini import data

REPO = Path(__file__).resolve().parents[1]
SMALL = 400   # problems per split for property checks of the variant splits (each of 24 worlds ~17 times)


@pytest.fixture(scope="module")
def defaults():
    """The full default train and test splits, structured and as Problems (generated once, ~2.5 s)."""
    out = {}
    for name in ("train", "test"):
        sps = S.make_split(name, structured=True)
        probs = [S.to_problem(sp, S.problem_id(name, i, sp), f"synthetic:{name}") for i, sp in enumerate(sps)]
        out[name] = (sps, probs)
    return out


def _jsonl(problems) -> str:
    return "".join(S.problem_to_json(p) + "\n" for p in problems)


def _run_program():
    try:
        from reft_mini.program import run_program
    except ImportError as e:  # program.py is written by another helper
        pytest.skip(f"reft_mini.program not importable yet: {e}")
    return run_program


# ---- determinism and disjointness --------------------------------------------------------------------

def test_structured_and_plain_splits_agree(defaults):
    sps, probs = defaults["test"]
    assert _jsonl(probs[:300]) == _jsonl(S.make_split("test", n=300))


def test_split_is_reproducible_bit_for_bit():
    for name in S.DEFAULT_SPLITS:
        assert _jsonl(S.make_split(name, n=80)) == _jsonl(S.make_split(name, n=80))


def test_split_does_not_depend_on_the_process_hash_seed():
    # Python randomises str hashes per process; a generator that iterated over a set would differ here.
    code = ("import sys; sys.path.insert(0, 'data/synthetic')\nimport synthetic as S\n"
            "import sys\n"
            "for name in ('train', 'svamp_test', 'mathqa_test'):\n"
            "    sys.stdout.write(''.join(S.problem_to_json(p) + '\\n' for p in S.make_split(name, n=60)))\n")
    env = dict(os.environ, PYTHONHASHSEED="12345")   # this process has another (random or fixed) seed
    there = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                           check=True).stdout
    here = "".join(_jsonl(S.make_split(name, n=60)) for name in ("train", "svamp_test", "mathqa_test"))
    assert there == here


def test_default_sizes_and_unique_questions(defaults):
    assert len(defaults["train"][1]) == 3000 and len(defaults["test"][1]) == 1000
    for name, (_, probs) in defaults.items():
        qs = [p.question for p in probs]
        assert len(set(qs)) == len(qs), name
        assert len({p.id for p in probs}) == len(probs)


def test_train_and_test_are_disjoint_by_construction_and_by_check(defaults):
    train = {p.question for p in defaults["train"][1]}
    test = {p.question for p in defaults["test"][1]}
    assert not train & test
    assert all(S.pool_of(q) == "train" for q in train) and all(S.pool_of(q) == "test" for q in test)
    # the variant test splits live in the test pool too (MathQA: the question without its options line)
    for name in ("svamp_test", "mathqa_test"):
        for p in S.make_split(name, n=100):
            assert S.pool_of(p.question.split("\n")[0]) == "test" and p.question.split("\n")[0] not in train


def test_cached_files_match_the_generator(defaults):
    """If data/synthetic/ has been written (python -m reft_mini.synthetic), it must be what the generator
    makes now; otherwise someone changed the generator without regenerating (and bumping the version)."""
    root = S.CACHE_DIR
    if not (root / "meta.json").is_file():
        pytest.skip(f"no cached splits in {root}")
    meta = json.loads((root / "meta.json").read_text())
    assert meta["generator_version"] == S.GENERATOR_VERSION
    for name in ("train", "test"):
        assert meta["splits"][name] == S.split_spec(name)
        assert (root / f"{name}.jsonl").read_text(encoding="utf-8") == _jsonl(defaults[name][1]), name


@pytest.mark.slow
def test_all_cached_files_match_the_generator():
    root = S.CACHE_DIR
    if not (root / "meta.json").is_file():
        pytest.skip(f"no cached splits in {root}")
    for name in S.DEFAULT_SPLITS:
        assert (root / f"{name}.jsonl").read_text(encoding="utf-8") == _jsonl(S.make_split(name)), name


def test_write_and_load_cache(tmp_path, capsys):
    meta = S.write_splits(tmp_path, names=["test", "mathqa_train"], n=40)
    first = (tmp_path / "test.jsonl").read_bytes()
    S.write_splits(tmp_path, names=["test", "mathqa_train"], n=40)
    assert (tmp_path / "test.jsonl").read_bytes() == first                    # deterministic bytes
    assert meta["splits"]["test"]["n"] == 40
    fresh = S.make_split("test", n=40)
    cached = S.load_synthetic("test", n=40, root=tmp_path)
    assert [(p.id, p.question, p.answer, p.cot_nl, p.cot_program, p.options) for p in cached] == \
           [(p.id, p.question, p.answer, p.cot_nl, p.cot_program, p.options) for p in fresh]
    mc = S.load_synthetic("mathqa_train", n=40, root=tmp_path)
    assert mc[0].options and mc[0].answer in "abcde"
    # the cache is really read when the spec matches, and ignored when it does not
    lines = first.decode().split("\n")
    rec = json.loads(lines[0])
    rec["question"] = "EDITED " + rec["question"]
    lines[0] = json.dumps(rec)
    (tmp_path / "test.jsonl").write_text("\n".join(lines))
    assert S.load_synthetic("test", n=40, root=tmp_path)[0].question.startswith("EDITED")
    assert not S.load_synthetic("test", n=40, root=tmp_path, max_steps=3)[0].question.startswith("EDITED")
    assert not S.load_synthetic("test", n=41, root=tmp_path)[0].question.startswith("EDITED")
    # and load_problems reads such a folder too
    assert data.load_problems("synthetic", "test", path=tmp_path)[0].question.startswith("EDITED")


def test_cli_show_prints_examples(capsys):
    assert S.main(["--show", "1"]) == 0
    assert "#### " in capsys.readouterr().out


def test_module_docstring_examples_are_current():
    # the docstring shows the first 3 training problems (wrapped); regenerate it when the generator changes
    assert " ".join(S._examples_text(3).split()) in " ".join(S.__doc__.split())


# ---- the content of the problems -----------------------------------------------------------------------

@pytest.mark.parametrize("name", list(S.DEFAULT_SPLITS))
def test_split_properties(name, defaults):
    if name in defaults:
        sps, probs = defaults[name]
    else:
        sps = S.make_split(name, n=SMALL, structured=True)
        probs = [S.to_problem(sp, S.problem_id(name, i, sp), "") for i, sp in enumerate(sps)]
    knobs = S.Knobs(**S.split_spec(name)["knobs"])
    worlds = collections.Counter(sp.world for sp in sps)
    assert set(worlds) == set(S.WORLD_NAMES), f"missing templates: {set(S.WORLD_NAMES) - set(worlds)}"
    for sp, p in zip(sps, probs):
        assert isinstance(sp.answer, int) and sp.answer >= 0
        assert all(0 <= s.value <= knobs.max_value for s in sp.steps)
        lines = p.cot_nl.split("\n")
        assert lines[-1] == f"#### {p.answer}"
        if knobs.choices:
            assert p.answer in "abcde" and p.cot_program is None
            assert p.options[ord(p.answer) - ord("a")] == str(sp.answer)
            assert len(set(p.options)) == 5 and all(o.isdigit() for o in p.options)
            assert lines[-2] == f"{sp.answer} is option {p.answer}."
            assert data.parse_options(p.question.split("\n")[-1]) == p.options   # MathQA's options line format
            assert len(lines) == len(sp.steps) + 2
        else:
            assert p.answer == str(sp.answer)
            assert len(lines) == len(sp.steps) + 1
        if not (knobs.intermediate_prob or knobs.inverse_prob):
            assert knobs.min_steps <= len(sp.steps) <= knobs.max_steps
        # every step line shows its arithmetic as a op b = c with the step's own numbers
        for s, line in zip((sp.steps[i] for i in sp.order), lines):
            m = re.search(r"(\d+(?:[-+*/]\d+)+)=\$?(\d+)", line)
            assert m and int(m.group(2)) == s.value, line
            assert eval(m.group(1).replace("/", "//")) == s.value, line  # noqa: S307 (digits and + - * / only)


def test_steps_counts_follow_the_knobs():
    for lo, hi in ((1, 1), (5, 5), (3, 5)):
        sps = S.make_split("train", n=60, structured=True, min_steps=lo, max_steps=hi)
        assert all(lo <= len(sp.steps) <= hi for sp in sps)
    small = S.make_split("train", n=100, structured=True, max_operand=12, max_value=100)
    assert all(s.value <= 100 for sp in small for s in sp.steps)
    with pytest.raises(ValueError):
        S.Knobs(min_steps=0)
    with pytest.raises(ValueError):
        S.Knobs(max_steps=6)


def test_many_problems_have_several_valid_orders(defaults):
    sps, probs = defaults["train"]
    counts = [len(S.valid_orders(sp)) for sp in sps]
    share = sum(c > 1 for c in counts) / len(counts)
    assert share >= 0.4, share
    # the gold order is one of the valid ones, and not always the order the problem was built in
    multi = [sp for sp, c in zip(sps, counts) if c > 1]
    assert all(tuple(sp.order) in S.valid_orders(sp) for sp in sps)
    assert sum(sp.order != sorted(sp.order) for sp in multi) / len(multi) > 0.3
    # all_cots renders each order once; the gold CoT is among them and every one ends with the answer
    for sp, p in list(zip(sps, probs))[:200]:
        cots = S.all_cots(sp)
        assert len(cots) == len(set(cots)) == len(S.valid_orders(sp))
        assert p.cot_nl in cots and all(c.endswith(f"#### {sp.answer}") for c in cots)


def test_every_program_returns_the_nl_answer(defaults):
    run_program = _run_program()
    problems = defaults["test"][1] + defaults["train"][1][:500] + S.make_split("svamp_test", n=500)
    for p in problems:
        r = run_program(p.cot_program)
        assert r.error is None and r.value == int(p.answer), (p.id, r)
        # prompt header + target completion rebuilds the program exactly
        assert data.answer_text(p.question, data.target_completion(p, "program"), "program") == p.cot_program


def test_every_order_of_a_program_runs():
    run_program = _run_program()
    for sp in S.make_split("train", n=100, structured=True):
        for order in S.valid_orders(sp):
            assert run_program(S.render_program(sp, order)).value == sp.answer


def test_programs_assign_only_used_quantities(defaults):
    for sp, p in list(zip(*defaults["train"]))[:300]:
        body = data.target_completion(p, "program")
        assigned = re.findall(r"^    (\w+) = (\d+)$", body, flags=re.M)
        for var, value in assigned:
            assert re.search(rf"\b{var}\b", body.split(f"{var} = {value}", 1)[1]), (p.id, var)
            assert value in p.question


def test_svamp_style_split_has_its_perturbations():
    sps = S.make_split("svamp_test", n=SMALL, structured=True)
    probs = [S.to_problem(sp, "x", "") for sp in sps]
    distracted = sum(any("n" in f.ctx for f in sp.facts) for sp in sps) / len(sps)
    inverse = sum(sp.story_unknown is not None for sp in sps) / len(sps)
    assert distracted == 1.0
    assert 0.15 < inverse < 0.35
    assert sum(bool(re.search(r"\bsome\b", p.question, flags=re.I)) for p in probs) >= inverse * len(sps)
    # intermediate targets: the answer is not the last quantity the story leads to -> fewer steps
    train_like = S.make_split("test", n=SMALL, structured=True)
    assert sum(len(sp.steps) for sp in sps) < sum(len(sp.steps) for sp in train_like)


def test_mathqa_style_options_are_plausible():
    sps = S.make_split("mathqa_test", n=SMALL, structured=True)
    letters = collections.Counter(sp.letter for sp in sps)
    assert set(letters) == set("abcde") and min(letters.values()) > SMALL / 10
    for sp in sps:
        assert all(0 <= v <= 2 * sp.answer + 20 for v in sp.options)


def test_question_wording_is_varied(defaults):
    sps, probs = defaults["train"]
    questions = collections.Counter(p.question.rsplit(". ", 1)[-1] for p in probs)
    assert len(questions) > 300                      # many distinct question sentences
    assert questions.most_common(1)[0][1] < 0.05 * len(probs)
    names = {f.ctx["O"] for sp in sps for f in sp.facts if "O" in f.ctx}
    assert len(names) == len(S.NAMES)


def test_token_lengths_stay_short(defaults):
    # a digit-per-token proxy of the project's BPE (words and punctuation runs = 1 token, digits = 1 each)
    pat = re.compile(r"'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+|\d| ?[^\s\w]+| ?_+|\s+(?!\S)|\s+")
    lens = sorted(len(pat.findall(data.format_prompt(p.question, "nl") + p.cot_nl)) for p in defaults["train"][1])
    assert lens[len(lens) // 2] < 140 and lens[-1] < 220, (lens[len(lens) // 2], lens[-1])


def test_skill_corpus_is_fresh_and_correct():
    import random

    texts = S.skill_corpus(random.Random(0), 300)
    assert texts == S.skill_corpus(random.Random(0), 300) and len(texts) == 300
    facts = [t for t in texts if re.fullmatch(r"\d+[-+*/]\d+=\d+", t)]
    assert len(facts) > 30
    for t in facts:
        lhs, rhs = t.split("=")
        assert eval(lhs.replace("/", "//")) == int(rhs)  # noqa: S307
    problems = [t for t in texts if t.startswith("Question:\n")]
    assert len(problems) > 100
    nl = [t for t in problems if "def solution():" not in t]
    programs = [t for t in problems if "def solution():" in t]
    assert len(nl) > 50 and all("\n#### " in t for t in nl)
    # P-CoT texts: prompt with the program header, then a body that runs and returns a number.
    from reft_mini.program import run_program
    assert len(programs) > 20
    for t in programs:
        assert run_program(t[t.index("def solution():"):]).ok, t
    test_questions = {p.question for p in S.make_split("test", n=200)}
    assert not any(t.split("\n")[1] in test_questions for t in problems)


def test_gold_cots_get_full_reward():
    """End to end with reward.py: every split's gold N-CoT (and P-CoT) is scored as right."""
    try:
        from reft_mini import reward
    except ImportError as e:
        pytest.skip(f"reft_mini.reward not importable yet: {e}")
    for name in S.DEFAULT_SPLITS:
        for p in S.make_split(name, n=60):
            for style in data.STYLES if p.cot_program else ("nl",):
                text = data.answer_text(p.question, data.target_completion(p, style), style)
                assert reward.reward(text, p.answer, style) == 1.0, (p.id, style)
