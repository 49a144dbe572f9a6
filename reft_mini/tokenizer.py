"""Tokenizers: text <-> token ids, always as a `tiktoken.Encoding`.

ReFT (Luong et al., 2024) fine-tunes pretrained LLMs and so uses their tokenizers. We need two:

* ``reft_mini`` (the default): a small byte-level BPE (1024 tokens) that this project trains itself on
  its synthetic data and ships as ``data/tokenizer/reft_mini.tiktoken``. It loads with no network.
  Its split pattern puts **every digit in a token of its own**: a tiny model learns column arithmetic
  far more easily when "472" is always the three tokens "4" "7" "2" than when BPE glues digits into
  arbitrary chunks ("47" "2" here, "4" "72" there).
* ``gpt2``: GPT-2's own 50,257-token BPE, for starting from pretrained GPT-2 weights. tiktoken
  downloads its two files on first use; offline you can point ``path`` at a local GPT-2 checkpoint
  folder (its ``vocab.json`` + ``merges.txt``) or set ``TIKTOKEN_CACHE_DIR`` to a cache that has them.

tiktoken has no trainer, so ``train_bpe`` below is a short, readable byte-pair-encoding trainer
(Sennrich et al., 2016): start from the 256 single bytes and repeatedly merge the most frequent
adjacent pair of tokens inside pre-tokenised "words". Regenerate the shipped file with

    python -m reft_mini.tokenizer            # deterministic: same corpus, same merges, same bytes

Special tokens live in one place (``SPECIAL_TOKENS``). We use a single one, end-of-text, which also
serves as padding: every batch carries a mask saying which positions are real, so a pad id never needs
to differ from EOT (hard-coded pad/eos ids are a classic source of bugs when swapping tokenizers).
"""

from __future__ import annotations

import base64
import collections
import os
import re
from pathlib import Path

import tiktoken

EOT = "<|endoftext|>"
DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "tokenizer"
REFT_MINI_FILE = DATA_DIR / "reft_mini.tiktoken"
REFT_MINI_VOCAB = 1024  # 256 bytes + 767 merges + EOT

# tiktoken's split pattern (a regex over the text, applied before BPE; merges never cross a match).
# Like GPT-2's, but `\p{N}` matches ONE digit: digits can never merge with each other or with a space.
#   contractions | optional space + letters | one digit | optional space + punctuation | whitespace
REFT_MINI_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# GPT-2's pattern (as in its released encoder), needed when building the encoding from local files.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# Python's `re` has no \p{..} classes; for *training* we use the closest stdlib equivalent
# ([^\W\d_] = a Unicode letter, \d = a Unicode digit). It only decides where merges may happen while
# learning; encoding always uses tiktoken's own regex above, so the two never have to agree exactly.
_TRAIN_SPLIT = re.compile(r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+|\d| ?[^\s\w]+| ?_+|\s+(?!\S)|\s+""")


def special_tokens(n_ranks: int) -> dict[str, int]:
    """The one place special tokens are defined: EOT gets the first id after the BPE ranks."""
    return {EOT: n_ranks}


class TokenizerError(RuntimeError):
    """A tokenizer could not be loaded; the message says how to fix it."""


def get_tokenizer(name: str = "reft_mini", path: str | os.PathLike | None = None) -> tiktoken.Encoding:
    """Return the named tokenizer as a `tiktoken.Encoding` (``enc.eot_token`` is end-of-text/padding).

    name: "reft_mini" (shipped, offline) or "gpt2".
    path: for "reft_mini", another .tiktoken file; for "gpt2", a local folder (or the files' folder)
          holding GPT-2's ``vocab.json`` and ``merges.txt``, e.g. a Hugging Face GPT-2 checkpoint.
    """
    if name == "reft_mini":
        file = Path(path) if path else REFT_MINI_FILE
        if not file.is_file():
            raise TokenizerError(
                f"tokenizer file {file} is missing; regenerate it with `python -m reft_mini.tokenizer`"
            )
        ranks = _load_ranks(file)
        return tiktoken.Encoding(
            "reft_mini", pat_str=REFT_MINI_PATTERN, mergeable_ranks=ranks,
            special_tokens=special_tokens(len(ranks)),
        )
    if name == "gpt2":
        if path is not None:
            return _gpt2_from_folder(Path(path))
        try:
            return tiktoken.get_encoding("gpt2")
        except Exception as e:  # no network and no cache: explain instead of a download traceback
            raise TokenizerError(
                "the gpt2 tokenizer needs GPT-2's encoding files and they could not be downloaded "
                f"({type(e).__name__}). Offline, pass a local GPT-2 folder with vocab.json and merges.txt "
                "(--tokenizer_path DIR, or get_tokenizer('gpt2', path=DIR)), or set TIKTOKEN_CACHE_DIR "
                "to a tiktoken cache that already holds them."
            ) from None
    raise TokenizerError(f"unknown tokenizer {name!r}; choose 'reft_mini' or 'gpt2'")


def _load_ranks(file: Path) -> dict[bytes, int]:
    # Same format as tiktoken's own files: one "base64(token) rank" per line. We parse it ourselves so
    # that a damaged file names its line (tiktoken's loader would fail with a bare ValueError).
    ranks: dict[bytes, int] = {}
    for lineno, line in enumerate(file.read_text().splitlines(), 1):
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        except Exception:
            raise TokenizerError(
                f"{file}:{lineno}: not a 'base64token rank' line; regenerate with "
                "`python -m reft_mini.tokenizer`"
            ) from None
    return ranks


def _gpt2_from_folder(folder: Path) -> tiktoken.Encoding:
    """Build GPT-2's encoding from a Hugging Face folder (vocab.json + merges.txt), fully offline."""
    vocab, merges = folder / "vocab.json", folder / "merges.txt"
    for f in (vocab, merges):
        if not f.is_file():
            raise TokenizerError(f"{f} not found: a GPT-2 tokenizer folder needs vocab.json and merges.txt")
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks  # GPT-2's released format == HF's files

    ranks = data_gym_to_mergeable_bpe_ranks(str(merges), str(vocab))
    return tiktoken.Encoding("gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens=special_tokens(len(ranks)))


# ----------------------------------------------------------------------------------------------------
# The BPE trainer (used once, to make data/tokenizer/reft_mini.tiktoken)

def train_bpe(texts: list[str], vocab_size: int = REFT_MINI_VOCAB) -> dict[bytes, int]:
    """Learn byte-level BPE merges; returns tiktoken's `mergeable_ranks` (token bytes -> rank).

    Ranks 0..255 are the single bytes, so *any* text round-trips (unknown characters fall back to
    bytes). Each merge creates the next rank; tiktoken later applies merges lowest-rank-first, which
    replays exactly the order in which they were learned. Ties are broken by the pair's bytes, so the
    result is deterministic.
    """
    n_merges = vocab_size - 256 - 1  # the last id is EOT
    # 1) Pre-tokenise and count distinct "words" (merges never cross a word boundary).
    words = collections.Counter()
    for text in texts:
        words.update(_TRAIN_SPLIT.findall(text))
    ranks = {bytes([b]): b for b in range(256)}
    vocab = [bytes([b]) for b in range(256)]  # id -> bytes
    # Each word as a list of token ids, with its count.
    seqs = [(list(w.encode("utf-8")), c) for w, c in words.items()]
    # 2) Greedily merge the most frequent adjacent pair.
    for _ in range(n_merges):
        pairs = collections.Counter()
        for seq, c in seqs:
            for a, b in zip(seq, seq[1:]):
                pairs[a, b] += c
        if not pairs:
            break
        (a, b), _count = max(pairs.items(), key=lambda kv: (kv[1], _neg(vocab[kv[0][0]] + vocab[kv[0][1]])))
        new_id = len(vocab)
        vocab.append(vocab[a] + vocab[b])
        ranks[vocab[new_id]] = new_id
        for seq, _c in seqs:  # replace every occurrence of (a, b) in place
            i = 0
            while i < len(seq) - 1:
                if seq[i] == a and seq[i + 1] == b:
                    seq[i:i + 2] = [new_id]
                i += 1
    return ranks


def _neg(bs: bytes) -> tuple:
    # `max` picks the highest count; among equal counts we want the lexicographically *smallest* bytes.
    return tuple(-x for x in bs) + (1,)


def write_ranks(ranks: dict[bytes, int], file: Path) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{base64.b64encode(tok).decode()} {rank}" for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1])]
    tmp = file.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, file)


def default_corpus() -> list[str]:
    """The training text: prompts and both chain-of-thought styles of the synthetic training split."""
    from reft_mini import data, synthetic

    texts = []
    for p in synthetic.load_synthetic("train"):
        for style in data.STYLES:
            texts.append(data.format_prompt(p.question, style) + data.target_completion(p, style))
    return texts


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="Train the reft_mini BPE on the synthetic training split.")
    ap.add_argument("--out", default=str(REFT_MINI_FILE), help="where to write the .tiktoken file")
    target = Path(ap.parse_args().out)
    corpus = default_corpus()
    ranks = train_bpe(corpus)
    write_ranks(ranks, target)
    enc = get_tokenizer("reft_mini", target)
    n_chars = sum(len(t) for t in corpus)
    n_tok = sum(len(enc.encode_ordinary(t)) for t in corpus)
    print(f"wrote {target} ({len(ranks)} ranks + EOT = {enc.n_vocab} tokens); "
          f"{n_chars / n_tok:.2f} characters per token on the training corpus")
