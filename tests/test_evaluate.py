"""Tests for evaluate.py: the per-problem metrics, the value read for reranking, seeded end-to-end runs,
and one-line errors for bad input."""
import importlib.util
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from reft_mini import data, evaluation, reward
from reft_mini.checkpoint import save_checkpoint
from reft_mini.config import UserError, parse_config
from reft_mini.model import GPT, GPTConfig, PRESETS, config_from_preset
from reft_mini.tokenizer import REFT_MINI_FILE, get_tokenizer

REPO = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("evaluate_script", REPO / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


ev = _load_script()


@pytest.fixture(autouse=True)
def one_thread():
    # The test model is tiny: a second intra-op thread only adds synchronisation, and on a busy 2-core
    # machine the spinning threads made the end-to-end test ~10x slower. One thread, then restore.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(argv):
    return ev.main(parse_config(ev.Config, argv, positional="checkpoints", validate=ev.validate))


# ------------------------------------------------------------------------------------------ metrics

def test_majority_vote_counts_numerically_equal_spellings_together():
    # "72", "72.0" and "$72" are one answer with 3 votes; "71" has 2.
    assert reward.majority_vote(["71", "72", "72.0", "71", "$72", None]) == "72"
    rec = {"gold": "72", "greedy_reward": 0.1, "sample_answers": ["71", "72", "72.0", "71", "$72"],
           "sample_rewards": [0.1, 1.0, 1.0, 0.1, 1.0], "sample_values": [0.0] * 5}
    assert ev.score(rec, [5])["maj@5"] == 1.0


def test_score_maj_pass_rerank_and_no_answer_on_a_constructed_problem():
    rec = {"gold": "7", "greedy_reward": 0.1,
           "sample_answers": ["5", "7", "7", None],
           "sample_rewards": [0.1, 1.0, 1.0, 0.0],
           "sample_values": [0.1, 0.9, 0.3, 2.0]}
    m = ev.score(rec, [1, 2, 4])
    assert m["greedy"] == 0.0
    # maj@k votes over the FIRST k samples: ["5"] -> 5; ["5","7"] tie -> first seen (5); 4 samples -> 7.
    assert (m["maj@1"], m["maj@2"], m["maj@4"]) == (0.0, 0.0, 1.0)
    # pass@k from all n=4 samples, c=2: 0.5, 1 - C(2,2)/C(4,2) = 5/6, 1.
    assert m["pass@1"] == pytest.approx(0.5)
    assert m["pass@2"] == pytest.approx(5 / 6)
    assert m["pass@4"] == 1.0
    # rerank@k: the highest value among the first k: sample 0 (wrong), 1 (right), 3 (no answer).
    assert (m["rerank@1"], m["rerank@2"], m["rerank@4"]) == (0.0, 1.0, 0.0)
    assert m["no answer (greedy)"] == 0.0
    assert m["no answer (samples)"] == pytest.approx(0.25)


def test_score_completion_gives_the_training_reward():
    p = data.Problem("x", "Tom has 3 apples and buys 4. How many?", "7")
    for text in ["3+4=7.\n#### 7", "The answer is 8", "no idea", "#### 7.0", ""]:
        answer, r = evaluation.score_completion(p.question, p.answer, text, "nl")
        assert r == reward.reward(data.answer_text(p.question, text, "nl"), p.answer, "nl")
        assert (answer is None) == (r == 0.0)
    for body in ["    a = 3\n    b = 4\n    result = a + b\n    return result\n",
                 "    result = 3 * 4\n    return result\n", "    return (\n"]:
        answer, r = evaluation.score_completion(p.question, p.answer, body, "program")
        assert r == reward.reward(data.answer_text(p.question, body, "program"), p.answer, "program")


class FakeEnc:
    """Just what evaluation.complete needs from a tokenizer: characters as token ids 0..95."""
    eot_token = 96

    def encode_ordinary(self, text):
        return [ord(c) % 96 for c in text]

    def decode(self, ids):
        return " ".join(map(str, ids))


def test_rerank_value_is_read_at_the_state_that_emits_the_final_token():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**{**PRESETS["tiny"], "vocab_size": 97})).eval()
    torch.nn.init.normal_(model.value_head[1].weight)             # a head that says something
    problems = [data.Problem(str(i), q, "1") for i, q in enumerate(["ab", "a much longer question", "c"])]
    gen = torch.Generator().manual_seed(0)
    texts, values = evaluation.complete(model, FakeEnc(), problems, "nl", 10, 1.0, 2, 64, gen, with_values=True)
    assert [len(t) for t in texts] == [len(v) for v in values] == [2, 2, 2]
    for p, ts, vs in zip(problems, texts, values):
        prompt = data.encode_prompt(FakeEnc(), p.question, "nl")
        for text, value in zip(ts, vs):
            response = [int(t) for t in text.split()]               # decoded without the EOT
            full = response if len(response) == 10 else response + [FakeEnc.eot_token]   # ended or cut
            # Alone, unpadded: the hidden state at the token before the final one (the last prompt token
            # when the answer is a lone EOT).
            seq = torch.tensor([prompt + full[:-1]])
            expected = model.values(model(seq))[0, -1].item()
            assert value == pytest.approx(expected, abs=1e-5)


# ------------------------------------------------------------------------------------------ end to end

@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory):
    """The shipped tokenizer when it exists (None = use it); else a small BPE trained here."""
    if REFT_MINI_FILE.is_file():
        return None
    from train_bpe import train_bpe, write_ranks  # data/tokenizer/train_bpe.py
    corpus = ["Question:\nTom has 3 apples and buys 14 more. How many apples does he have?\nAnswer reasoning:\n"
              "3+14=17.\n#### 17", "def solution():\n    result = 3 + 4\n    return result\n"] * 3
    file = tmp_path_factory.mktemp("tok") / "small.tiktoken"
    write_ranks(train_bpe(corpus, 300), file)
    return str(file)


def make_checkpoint(path, tokenizer_path, kind="warmup", seed=0, vocab_size=None, cot="nl", block_size=384):
    enc = get_tokenizer("reft_mini", tokenizer_path)
    torch.manual_seed(seed)
    # A longer context than "tiny"'s 128, so that every synthetic prompt fits even with the small fallback BPE.
    model = GPT(config_from_preset("tiny", vocab_size=vocab_size or enc.n_vocab, block_size=block_size))
    if kind == "ppo":
        torch.nn.init.normal_(model.value_head[1].weight)
    save_checkpoint({"kind": kind, "model_config": asdict(model.config), "model": model.state_dict(),
                     "config": {"dataset": "synthetic", "data_path": None, "cot": cot, "eval_split": "test",
                                "tokenizer": "reft_mini", "tokenizer_path": tokenizer_path, "max_new_tokens": 12},
                     "tokenizer": "reft_mini"}, path)
    return path


_SPLITS_SEEN: dict = {}


def _cached_load_problems(name, split, style="nl", path=None, _real=data.load_problems):
    # Without the cached files in data/synthetic, each split is generated anew (seconds); the tests ask
    # for the same splits many times, so remember them for this test module.
    key = (name, split, style, path)
    if key not in _SPLITS_SEEN:
        _SPLITS_SEEN[key] = _real(name, split, style, path)
    return list(_SPLITS_SEEN[key])


@pytest.fixture
def synthetic_ready(monkeypatch):
    monkeypatch.setattr(ev.data, "load_problems", _cached_load_problems)
    try:
        _cached_load_problems("synthetic", "test", "nl")
    except Exception as e:  # noqa: BLE001 -- written by another part of the project
        pytest.skip(f"synthetic data set not available yet ({type(e).__name__}: {e})")


def test_end_to_end_two_checkpoints_same_seed_same_results(tmp_path, tokenizer_path, synthetic_ready):
    a = make_checkpoint(tmp_path / "a.pt", tokenizer_path, "warmup", seed=0)
    b = make_checkpoint(tmp_path / "b.pt", tokenizer_path, "ppo", seed=1)
    out = tmp_path / "eval"
    argv = [str(a), str(b), "--limit=8", "--k=1,2", f"--out={out}", "--progress=false", "--n_boot=200"]
    res = run(argv)
    first = (out / "results.json").read_text()
    run(argv)
    assert (out / "results.json").read_text() == first                  # seeded: byte-identical
    assert set(res["results"]) == set(ev.SYNTHETIC_SPLITS.split(","))
    for split, per_ckpt in res["results"].items():
        for label, r in per_ckpt.items():
            assert r["n"] == 8
            assert {"greedy", "maj@1", "maj@2", "pass@1", "pass@2", "rerank@1", "rerank@2",
                    "no answer (greedy)", "no answer (samples)"} <= set(r["metrics"])
            assert all(0.0 <= v <= 1.0 for v in r["metrics"].values())
        cmp_ = res["comparisons"][split][str(b)]["greedy"]
        assert cmp_["n_paired"] == 8 and cmp_["ci95"][0] <= cmp_["diff"] <= cmp_["ci95"][1]
    assert [c["value_head"] for c in res["checkpoints"]] == ["untrained", "trained"]
    table = (out / "results.md").read_text()
    assert "| greedy |" in table and "untrained value head" in table
    rows = [json.loads(line) for line in (out / "per_problem.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 3 * 8
    assert {"checkpoint", "split", "id", "question", "greedy_completion", "greedy_answer", "gold",
            "greedy_correct"} <= set(rows[0])


def test_greedy_completions_are_the_ones_training_evaluation_sees(tmp_path, tokenizer_path, synthetic_ready):
    # evaluate.py and the training scripts share reft_mini/evaluation.py: the greedy answers evaluate.py
    # reports are exactly what training-time evaluation computes.
    a = make_checkpoint(tmp_path / "a.pt", tokenizer_path, seed=3)
    out = tmp_path / "eval"
    run([str(a), "--splits=test", "--limit=6", "--k=", f"--out={out}", "--progress=false"])
    rows = [json.loads(line) for line in (out / "per_problem.jsonl").read_text().splitlines()]
    model, enc, style, _, _ = ev.load_model(str(a), torch.device("cpu"))
    problems = _cached_load_problems("synthetic", "test", style)[:6]
    expected, _ = evaluation.complete(model, enc, problems, style, max_new_tokens=12)
    assert [r["greedy_completion"] for r in rows] == [c[0] for c in expected]


def test_answers_reach_the_right_problems_through_batching_and_sorting(tmp_path, tokenizer_path, synthetic_ready,
                                                                       monkeypatch):
    # A stand-in sampler that writes the GOLD chain of thought for every prompt (and, when sampling, a
    # wrong answer for every other call). complete() sorts prompts by length and batches them; if any
    # completion came back to the wrong problem, greedy accuracy would not be 100%.
    from reft_mini.sampling import Samples, left_pad
    enc = get_tokenizer("reft_mini", tokenizer_path)
    by_prompt = {}
    for split in ("test", "mathqa_test"):
        for p in _cached_load_problems("synthetic", split, "nl")[:6]:
            by_prompt[data.format_prompt(p.question, "nl")] = p
    calls = {"n": 0}

    def fake_generate(model, prompts, max_new_tokens, eot_id, temperature=1.0, generator=None, **_):
        prompt, prompt_mask = left_pad(prompts, eot_id)
        rows = []
        for ids in prompts:
            text = data.target_completion(by_prompt[enc.decode(ids)], "nl")
            calls["n"] += 1
            if temperature > 0 and calls["n"] % 2:
                text = text.rsplit("#### ", 1)[0] + "#### 99999"   # N-CoT answer line: a wrong number
            rows.append(enc.encode_ordinary(text) + [eot_id])
        N = max(map(len, rows))
        response = torch.full((len(rows), N), eot_id)
        mask = torch.zeros((len(rows), N), dtype=torch.bool)
        for i, r in enumerate(rows):
            response[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), True
        ended = torch.ones(len(rows), dtype=torch.bool)
        s = Samples(prompt, prompt_mask, response, mask, ended)
        seq, seq_mask = s.sequences()                       # the states a real sampler keeps (for rerank)
        s.hidden = model(seq, attention_mask=seq_mask)[:, prompt.shape[1] - 1:-1]
        return s

    monkeypatch.setattr(evaluation, "generate", fake_generate)
    a = make_checkpoint(tmp_path / "a.pt", tokenizer_path, block_size=1024)
    res = run([str(a), "--splits=test,mathqa_test", "--limit=6", "--k=1,2", "--batch_size=4",
               f"--out={tmp_path}", "--progress=false"])
    for split in ("test", "mathqa_test"):
        m = res["results"][split][str(a)]["metrics"]
        assert m["greedy"] == 1.0 and m["no answer (greedy)"] == 0.0
        assert m["pass@2"] == 1.0                       # every problem has a right sample among its two
        assert 0.0 < m["pass@1"] < 1.0


# ------------------------------------------------------------------------------------------ bad input

def test_no_checkpoint_is_an_error():
    with pytest.raises(UserError, match="no checkpoint given"):
        run([])


def test_k_larger_than_the_samples_is_an_error(tmp_path):
    with pytest.raises(UserError, match="larger than the number of samples"):
        run([str(tmp_path / "x.pt"), "--k=1,8", "--samples=4"])


def test_missing_checkpoint_file_is_an_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        run([str(tmp_path / "missing.pt")])


def test_a_file_that_is_not_a_reft_mini_checkpoint_is_an_error(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a reft_mini checkpoint"):
        run([str(tmp_path / "other.pt"), f"--out={tmp_path / 'eval'}"])


def test_model_and_tokenizer_vocabularies_must_agree(tmp_path, tokenizer_path):
    bad = make_checkpoint(tmp_path / "bad.pt", tokenizer_path, vocab_size=97)
    with pytest.raises(UserError, match="vocabulary"):
        run([str(bad), f"--out={tmp_path / 'eval'}"])


def test_unknown_data_set_or_split_is_an_error(tmp_path, tokenizer_path, synthetic_ready):
    a = make_checkpoint(tmp_path / "a.pt", tokenizer_path)
    with pytest.raises(UserError, match="--dataset=nope: choose one of synthetic"):
        run([str(a), "--dataset=nope"])
    with pytest.raises(UserError, match="nope_split"):
        run([str(a), "--splits=test,nope_split", "--limit=2", "--k=", f"--out={tmp_path}"])


def test_command_line_errors_are_one_line_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "evaluate.py"), str(tmp_path / "missing.pt")],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
