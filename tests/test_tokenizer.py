"""Tokenizers: the shipped BPE loads offline, round-trips real data, and gives every digit its own token."""
import json
import re

import pytest
import tiktoken

import train_bpe as trainer  # data/tokenizer/train_bpe.py, the tool that made the shipped file
from reft_mini import tokenizer as tk


@pytest.fixture(scope="module")
def enc():
    return tk.get_tokenizer()


def test_shipped_tokenizer_is_a_tiktoken_encoding_of_the_documented_size(enc):
    assert isinstance(enc, tiktoken.Encoding)
    assert enc.n_vocab == tk.REFT_MINI_VOCAB
    assert enc.decode([enc.eot_token]) == tk.EOT


def test_every_digit_is_its_own_token_with_at_most_the_space_before_it(enc):
    text = "In 2023 she paid $1,234.50 for 17 books; 3*8=24 and 10000/25=400."
    pieces = [enc.decode_single_token_bytes(t).decode("utf-8", "replace") for t in enc.encode_ordinary(text)]
    for piece in pieces:
        assert len(re.findall(r"\d", piece)) <= 1, f"token {piece!r} holds several digits"
        if re.search(r"\d", piece):
            assert re.fullmatch(r" ?\d", piece), f"digit glued to other text: {piece!r}"
    assert pieces[pieces.index(" 1") + 1] == "7"                    # " 17" = " 1" "7": two tokens, not three


def test_answers_are_short_identifiers_whole_and_a_numbers_space_joins_its_first_digit(enc):
    # What makes RL samples cheap: a P-CoT answer of the synthetic data in few tokens.
    line = "    total_minutes = priya_minutes + leo_minutes\n    result = total_minutes"
    pieces = [enc.decode([t]) for t in enc.encode_ordinary(line)]
    assert " total_minutes" in pieces and " priya_minutes" in pieces, pieces
    assert [enc.decode([t]) for t in enc.encode_ordinary("x = 48")][-2:] == [" 4", "8"]


def test_round_trip_is_lossless_on_awkward_text(enc):
    for text in ["", " ", "Janet’s ducks lay 16 eggs\xa0per day.", "def solution():\n    \"\"\"x\"\"\"\n\treturn 1",
                 "émojis 🙂 and 中文", "a ) 38 , b ) 27.675 , c ) 30"]:
        assert enc.decode(enc.encode_ordinary(text)) == text


def test_round_trip_on_every_question_and_answer_of_the_real_data_sets(enc, shared_datasets):
    n = 0
    for path in sorted(shared_datasets.rglob("*.json*")):
        lines = path.read_text(encoding="utf-8")
        records = [json.loads(x) for x in lines.splitlines()] if path.suffix == ".jsonl" else json.loads(lines)
        for r in records:
            for key in ("question", "answer", "answer_cot", "Body", "Question", "Equation"):
                if isinstance(r.get(key), str):
                    assert enc.decode(enc.encode_ordinary(r[key])) == r[key], f"{path.name}: {r[key][:60]!r}"
                    n += 1
    assert n > 20000


def test_bpe_trainer_is_deterministic_and_learns_frequent_words():
    texts = ["the apples and the pears and the apples"] * 20 + ["3 apples"]
    a, b = trainer.train_bpe(texts, vocab_size=300), trainer.train_bpe(texts, vocab_size=300)
    assert a == b
    enc = tiktoken.Encoding("t", pat_str=tk.REFT_MINI_PATTERN, mergeable_ranks=a,
                            special_tokens=tk.special_tokens(len(a)))
    assert len(enc.encode_ordinary(" apples")) == 1
    assert enc.decode(enc.encode_ordinary(texts[-1])) == texts[-1]


def test_shipped_file_regenerates_identically(tmp_path):
    ranks = trainer.train_bpe(trainer.default_corpus())
    trainer.write_ranks(ranks, tmp_path / "r.tiktoken")
    assert (tmp_path / "r.tiktoken").read_bytes() == tk.REFT_MINI_FILE.read_bytes()
    assert trainer.OUT_FILE == tk.REFT_MINI_FILE  # the script writes the very file the loader reads


def test_missing_or_damaged_tokenizer_file_says_how_to_fix_it(tmp_path):
    with pytest.raises(tk.TokenizerError, match="python data/tokenizer/train_bpe.py"):
        tk.get_tokenizer("reft_mini", tmp_path / "nope.tiktoken")
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("QQ== 0\nnot-a-line\n")
    with pytest.raises(tk.TokenizerError, match=r"bad.tiktoken:2"):
        tk.get_tokenizer("reft_mini", bad)
    with pytest.raises(tk.TokenizerError, match="unknown tokenizer"):
        tk.get_tokenizer("llama")


def test_gpt2_without_network_explains_what_to_do(monkeypatch):
    def offline(name):
        raise ConnectionError("no network")
    monkeypatch.setattr(tk.tiktoken, "get_encoding", offline)
    with pytest.raises(tk.TokenizerError, match="TIKTOKEN_CACHE_DIR"):
        tk.get_tokenizer("gpt2")


def test_gpt2_builds_offline_from_a_local_vocab_and_merges(tmp_path):
    # A miniature GPT-2-format tokenizer folder: the 256 byte symbols of GPT-2's byte encoder plus merges.
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    sym, n = {}, 0
    for b in range(256):
        if b in printable:
            sym[b] = chr(b)
        else:
            sym[b] = chr(256 + n)
            n += 1
    vocab = {sym[b]: i for i, b in enumerate(printable + [b for b in range(256) if b not in printable])}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    enc = tk.get_tokenizer("gpt2", path=tmp_path)
    ids = enc.encode_ordinary("see the cat")
    assert enc.decode(ids) == "see the cat"
    assert b" the" in [enc.decode_single_token_bytes(t) for t in ids]  # the learned merges apply
    assert enc.eot_token == len(vocab) - 1
