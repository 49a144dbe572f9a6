"""Tokenizers: text <-> token ids, always as a `tiktoken.Encoding`.

ReFT (Luong et al., 2024) fine-tunes pretrained LLMs and so uses their tokenizers. We need two:

* ``reft_mini`` (the default): a small byte-level BPE (2048 tokens) that this project trains itself on
  its synthetic data and ships as ``data/tokenizer/reft_mini.tiktoken``. It loads with no network.
  Its split pattern puts **every digit in a token of its own**: a tiny model learns column arithmetic
  far more easily when "472" is always the three tokens "4" "7" "2" than when BPE glues digits into
  arbitrary chunks ("47" "2" here, "4" "72" there). Two things keep answers short, which is what makes
  a sample cheap in RL (every token of a chain of thought is one decoding step and one position of
  the learner's forward): the space before a number joins its first digit (" 4" "7" "2"), and a Python
  identifier with underscores can become one token (" total_minutes"). Measured on 500 test questions'
  P-CoT answers: 105 tokens each with the first tokenizer (1024 tokens, identifiers split at every
  underscore, the space a token of its own), 58 with this one; 53 with 4096 tokens, whose larger output
  layer would cost more per token than the 9% it saves (data/figures/EXPERIMENTS.md, "Tokenizer").
* ``gpt2``: GPT-2's own 50,257-token BPE, for starting from pretrained GPT-2 weights. tiktoken
  downloads its two files on first use; offline you can point ``path`` at a local GPT-2 checkpoint
  folder (its ``vocab.json`` + ``merges.txt``) or set ``TIKTOKEN_CACHE_DIR`` to a cache that has them.

This module only *loads* tokenizers. A tokenizer is not part of ReFT, so the short, readable
byte-pair-encoding trainer (Sennrich et al., 2016) that made the shipped file lives beside that file.
Regenerate it with

    python data/tokenizer/train_bpe.py       # deterministic: same corpus, same merges, same bytes

Special tokens live in one place (``SPECIAL_TOKENS``). We use a single one, end-of-text, which also
serves as padding: every batch carries a mask saying which positions are real, so a pad id never needs
to differ from EOT (hard-coded pad/eos ids are a classic source of bugs when swapping tokenizers).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import tiktoken

EOT = "<|endoftext|>"
DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "tokenizer"
REFT_MINI_FILE = DATA_DIR / "reft_mini.tiktoken"
REFT_MINI_VOCAB = 2048  # 256 bytes + 1791 merges + EOT

# tiktoken's split pattern (a regex over the text, applied before BPE; merges never cross a match).
# Like GPT-2's, but ` ?\p{N}` matches ONE digit (with the space before it, if any): digits can never merge
# with each other; and `_` counts as a letter, so snake_case identifiers are words that BPE may merge whole.
#   contractions | optional space + letters/underscores | optional space + one digit
#   | optional space + punctuation | whitespace
REFT_MINI_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?[\p{L}_]+| ?\p{N}| ?[^\s\p{L}\p{N}_]+|\s+(?!\S)|\s+"""
# GPT-2's pattern (as in its released encoder), needed when building the encoding from local files.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


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
                f"tokenizer file {file} is missing; regenerate it with `python data/tokenizer/train_bpe.py`"
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
                "`python data/tokenizer/train_bpe.py`"
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
