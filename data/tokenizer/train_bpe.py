"""Train the shipped reft_mini tokenizer: a small byte-level BPE, written beside this script.

    python data/tokenizer/train_bpe.py          # rewrites data/tokenizer/reft_mini.tiktoken, bit for bit
    python data/tokenizer/train_bpe.py --out /tmp/t.tiktoken

ReFT (Luong et al., 2024) fine-tunes pretrained LLMs and simply uses their tokenizers; a tokenizer is
not part of the method. Our stand-in for the pretrained model needs one too, so this project trains
its own once and ships the result. reft_mini/tokenizer.py only *loads* it; this script is the tool
that made it, kept beside what it produces.

tiktoken has no trainer, so `train_bpe` below is a short, readable byte-pair-encoding trainer
(Sennrich et al., 2016): start from the 256 single bytes and repeatedly merge the most frequent
adjacent pair of tokens inside pre-tokenised "words". Everything is deterministic (same corpus, same
tie-breaking, same merges, same bytes), so the shipped file can be checked by regenerating it.
It takes a few seconds.
"""

from __future__ import annotations

import argparse
import base64
import collections
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The repository root, so that `python data/tokenizer/train_bpe.py` finds reft_mini without an install.
sys.path.insert(0, str(HERE.parent.parent))

from reft_mini import data  # noqa: E402
from reft_mini.tokenizer import REFT_MINI_VOCAB, get_tokenizer  # noqa: E402

OUT_FILE = HERE / "reft_mini.tiktoken"  # the shipped file, which reft_mini.tokenizer.REFT_MINI_FILE loads

# How a text is cut into "words" before BPE (merges never cross a word boundary). Encoding uses
# tiktoken's own pattern, reft_mini.tokenizer.REFT_MINI_PATTERN, whose ` ?\p{N}` keeps every digit a token
# of its own. Python's `re` has no \p{..} classes, so for *training* we use the closest stdlib
# equivalent ([^\W\d] = a Unicode letter or "_", \d = a Unicode digit). It only decides where merges may
# happen while learning, so the two never have to agree exactly.
_TRAIN_SPLIT = re.compile(r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d]+| ?\d| ?[^\s\w]+|\s+(?!\S)|\s+""")


def train_bpe(texts: list[str], vocab_size: int = REFT_MINI_VOCAB, split: re.Pattern = _TRAIN_SPLIT) -> dict[bytes, int]:
    """Learn byte-level BPE merges; returns tiktoken's `mergeable_ranks` (token bytes -> rank).

    Ranks 0..255 are the single bytes, so *any* text round-trips (unknown characters fall back to
    bytes). Each merge creates the next rank; tiktoken later applies merges lowest-rank-first, which
    replays exactly the order in which they were learned. Ties are broken by the pair's bytes, so the
    result is deterministic. `split` cuts texts into words (the shipped tokenizer's rule by default).
    """
    n_merges = vocab_size - 256 - 1  # the last id is EOT
    # 1) Pre-tokenise and count distinct "words" (merges never cross a word boundary).
    words = collections.Counter()
    for text in texts:
        words.update(split.findall(text))
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
    """tiktoken's file format: one "base64(token) rank" line per token, in rank order (atomic write)."""
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{base64.b64encode(tok).decode()} {rank}" for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1])]
    tmp = file.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, file)


def default_corpus() -> list[str]:
    """The training text: prompts and both chain-of-thought styles of the synthetic training split.

    Both styles, because the tokenizer must serve N-CoT (English sentences) and P-CoT (Python code)
    alike; the prompts are built by data.py, exactly as training and evaluation build them.
    """
    texts = []
    for p in data.load_problems("synthetic", "train"):  # the synthetic problems carry both CoTs
        for style in data.STYLES:
            texts.append(data.format_prompt(p.question, style) + data.target_completion(p, style))
    return texts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python data/tokenizer/train_bpe.py",
                                 description="Train the reft_mini BPE on the synthetic training split.")
    ap.add_argument("--out", default=str(OUT_FILE), help="where to write the .tiktoken file (default: %(default)s)")
    target = Path(ap.parse_args(argv).out)
    corpus = default_corpus()
    ranks = train_bpe(corpus)
    write_ranks(ranks, target)
    enc = get_tokenizer("reft_mini", target)
    n_chars = sum(len(t) for t in corpus)
    n_tok = sum(len(enc.encode_ordinary(t)) for t in corpus)
    print(f"wrote {target} ({len(ranks)} ranks + EOT = {enc.n_vocab} tokens); "
          f"{n_chars / n_tok:.2f} characters per token on the training corpus")


if __name__ == "__main__":
    main()
