"""Problems, the one prompt format, SFT encoding with an answer-only loss mask, and the data loaders.

Paper: ReFT (Luong et al. 2024), Sec. 3 and 4. Both stages read the same records:
  * stage 1 (warm-up / SFT) trains on prompt + gold chain of thought (CoT), with the loss on the CoT only;
  * stage 2 (PPO) samples a CoT after the same prompt and scores it against the gold *answer*.
So this file owns three things that training and evaluation must never disagree on:
  1. the record: `Problem` (question, canonical gold answer, optional N-CoT / P-CoT / options);
  2. the prompt: ReFT's official "Question:\\n{q}\\nAnswer reasoning:\\n" (+ the program header for P-CoT);
  3. what the reward reads: `answer_text` (for P-CoT: header + what the model wrote = a whole program).

The data sets of the paper come from the hub through the `datasets` library, or from local files
(--data_path) read with the stdlib (`_read_local` says why not through `datasets`); our offline default
is the synthetic set that data/synthetic/synthetic.py writes beside itself (made on first use, see
`synthetic_split`).

    name        file / hub id                         gold answer          CoT
    synthetic   data/synthetic/{split}.jsonl           int or letter a-e    N-CoT and P-CoT (MathQA-style: N-CoT)
    gsm8k       openai/gsm8k or train.jsonl/test.jsonl "#### N"             N-CoT (calculator <<..>> removed)
    svamp       ChilleD/SVAMP or SVAMP.json            float Answer         none (test set)
    mathqa      ReFT's mathqa_test_set.json            letter a-e, options  none (test set)
    mathqa-numeric  ReFT's mathqa-numeric_test_set.json number          none
    reft        any ReFT JSON (item_id, question, answer_cot, answer_value); style says which CoT it holds

Bad input never passes silently: a file or record that cannot be read raises ONE DataError (a
ValueError; the scripts print it as one line and exit with status 2) naming the file, the line (JSONL)
or record index and line (JSON array), the field, and what to do. That covers bytes that are not UTF-8,
broken JSON, two records on one line, a field repeated in a record, wrong types (text, numbers, option
lists), NaN answers, P-CoT programs that do not parse, and ids used twice. A UTF-8 byte order mark is
accepted.
"""

from __future__ import annotations

import ast
import codecs
import hashlib
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from reft_mini.config import UserError
from reft_mini.reward import parse_number


class DataError(UserError, ValueError):
    """Bad data or a bad data request. A ValueError (what callers catch) and a UserError, so the
    training/evaluation scripts print the message on one line instead of a traceback."""


STYLES = ("nl", "program")  # N-CoT (natural language), P-CoT (a Python program); CLI flag --cot nl|program
DATASETS = ("synthetic", "gsm8k", "svamp", "mathqa", "mathqa-numeric", "reft")

# Hub ids used when no local path is given. The machine this project is developed on has no network,
# so these are only exercised by users who have one; tests use local copies.
HUB_IDS = {
    "gsm8k": ("openai/gsm8k", "main"),
    "svamp": ("ChilleD/SVAMP", None),
    "mathqa": ("allenai/math_qa", None),  # fields Problem/options/correct; mapped below (untested offline)
}
PATH_FLAG = "--data_path"  # the command-line flag of train_warmup.py / train_ppo.py / evaluate.py
REPO = Path(__file__).resolve().parent.parent
SYNTHETIC_DIR = REPO / "data" / "synthetic"       # the default data set's files, and the script that makes them
SYNTHETIC_SCRIPT = SYNTHETIC_DIR / "synthetic.py"


@dataclass
class Problem:
    id: str
    question: str
    answer: str                         # canonical gold answer: "72", "-3", "0.5", or a letter "a".."e"
    cot_nl: str | None = None           # N-CoT, ending with the answer trigger, e.g. "...\n#### 72"
    cot_program: str | None = None      # full P-CoT program: 'def solution():\n    """q"""\n    ...\n    return result'
    options: list[str] | None = None    # multiple choice: the 5 option texts for a..e
    source: str = ""                    # which data set / file the record came from


# ----------------------------------------------------------------------------------------------------
# Prompt format (one place)
# ----------------------------------------------------------------------------------------------------

def _docstring_escape(question: str) -> str:
    # The question becomes the body of a triple-quoted docstring. A backslash would start an escape
    # sequence and a '"' could close the string early ('..."' + '"""' reads as '""""'), so both are
    # escaped: every backslash doubled, every double quote written \". The docstring's *value* is then
    # exactly the question again; only the source text differs (and only for questions with " or \).
    return question.replace("\\", "\\\\").replace('"', '\\"')


def program_header(question: str) -> str:
    """'def solution():\\n    \"\"\"{question}\"\"\"\\n': the start of every P-CoT program (in the prompt)."""
    return 'def solution():\n    """' + _docstring_escape(question) + '"""\n'


def format_prompt(question: str, style: str) -> str:
    """ReFT's prompt. For P-CoT the program header is part of the prompt, so the model writes the body."""
    if style not in STYLES:
        raise DataError(f"style {style!r}: choose one of {STYLES}")
    prompt = f"Question:\n{question}\nAnswer reasoning:\n"
    if style == "program":
        prompt += program_header(question)
    return prompt


def program_body(program: str, where: str = "program") -> str:
    """Everything after the header (def line + docstring) of a P-CoT program.

    Real programs' docstrings sometimes differ from the question (ReFT's SVAMP files: 37 of 3,043), so we
    cut the header off by *parsing* (ast gives the docstring's last line) and let `program_header`
    rewrite it from the question; prompt + body is then always a program that parses."""
    try:
        tree = ast.parse(program)
    except SyntaxError as e:
        raise DataError(f"{where}: the program does not parse ({e.msg}, in line {e.lineno} of the program); "
                        "fix the program") from None
    if not tree.body or not isinstance(tree.body[0], ast.FunctionDef) or tree.body[0].name != "solution" \
            or tree.body[0].args.args:
        raise DataError(f"{where}: a P-CoT program must start with 'def solution():' (no arguments); "
                        "fix the program")
    fn = tree.body[0]
    lines = program.split("\n")
    first = fn.body[0]
    has_doc = (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
               and isinstance(first.value.value, str))
    cut = first.end_lineno if has_doc else fn.lineno  # 1-based line numbers: keep lines[cut:]
    if has_doc and lines[cut - 1][first.end_col_offset:].strip():
        raise DataError(f"{where}: code after the docstring on the same line; put it on a new line")
    return "\n".join(lines[cut:])


def target_completion(problem: Problem, style: str) -> str:
    """What the model must write after the prompt (nl: the N-CoT; program: the body after the header).
    The end-of-text token is appended by the encoder, not here."""
    if style == "nl":
        if problem.cot_nl is None:
            raise DataError(f"problem {problem.id} ({problem.source}) has no N-CoT; use --cot=program or "
                             "another data set for training (test-only sets carry no CoT)")
        return problem.cot_nl
    if style == "program":
        if problem.cot_program is None:
            raise DataError(f"problem {problem.id} ({problem.source}) has no P-CoT program; use --cot=nl or "
                             "another data set for training")
        # Programs read from a file were parsed when loaded (and an error named file, line and field);
        # this one was built in memory, so its id and source are all there is to name.
        where = f"problem {problem.id}" + (f" ({problem.source})" if problem.source else "")
        return program_body(problem.cot_program, where=f"{where}, field 'cot_program'")
    raise DataError(f"style {style!r}: choose one of {STYLES}")


def answer_text(question: str, completion: str, style: str) -> str:
    """The text the reward reads: nl -> the completion; program -> header + completion (a whole program)."""
    if style == "nl":
        return completion
    if style == "program":
        return program_header(question) + completion
    raise DataError(f"style {style!r}: choose one of {STYLES}")


def encode_prompt(enc, question: str, style: str) -> list[int]:
    """The prompt's token ids, exactly as sampling sees them in training and evaluation.

    encode_ordinary: text that happens to look like a special token ("<|endoftext|>" in a question)
    stays ordinary text and can never end the prompt early."""
    return enc.encode_ordinary(format_prompt(question, style))


def decode_completion(enc, ids: list[int], mask: list[bool]) -> str:
    """A sampled response (one row of Samples.response and its mask) back to text: the generated tokens
    up to, not including, the EOT that ended it."""
    return enc.decode([t for t, keep in zip(ids, mask) if keep and t != enc.eot_token])


# ----------------------------------------------------------------------------------------------------
# SFT encoding and batching
# ----------------------------------------------------------------------------------------------------

def encode_sft(enc, problem: Problem, style: str, max_len: int) -> tuple[list[int], list[int]]:
    """Token ids of prompt + completion + EOT, and a 0/1 loss mask that is 1 on completion tokens and EOT.

    Stage 1 of ReFT is supervised fine-tuning on the *answer* only: the model is never trained to
    write questions. Prompt and completion are tokenised separately and concatenated, so the boundary
    is exact (BPE over the joined text could merge across it) and the prompt's tokens are exactly what
    sampling will see at stage 2 (`encode_prompt`, the one prompt encoder).
    Too long (> max_len tokens): raises DataError (a ValueError) naming the problem -- we do not truncate, because a
    CoT with its answer cut off teaches the model to stop before answering. Callers filter and count."""
    # EXERCISE loss_mask: begin
    prompt_ids = encode_prompt(enc, problem.question, style)
    completion_ids = enc.encode_ordinary(target_completion(problem, style))
    ids = prompt_ids + completion_ids + [enc.eot_token]
    mask = [0] * len(prompt_ids) + [1] * (len(completion_ids) + 1)  # learn the answer and when to stop
    # EXERCISE loss_mask: end
    if len(ids) > max_len:
        raise DataError(f"problem {problem.id}: {len(ids)} tokens (prompt {len(prompt_ids)}) > max_len={max_len}; "
                         "raise the context size or leave such problems out")
    return ids, mask


def collate(batch: list[tuple[list[int], list[int]]], pad_id: int):
    """Right-padded next-token batch from encode_sft outputs.

    Returns idx (B,T) long = ids[:-1], targets (B,T) long = ids[1:], loss_mask (B,T) float = mask[1:],
    with T = longest sequence - 1. Padding positions hold pad_id in idx *and* targets (a valid token id,
    so gather-based log-prob code works unchanged) and 0 in loss_mask: the mask, not the id, says what
    counts. Right padding is safe for training with a causal model: real tokens never attend to the
    pads that come after them."""
    import torch  # imported here so that reading data (and generating the synthetic set) needs no torch

    T = max(len(ids) for ids, _ in batch) - 1
    B = len(batch)
    idx = torch.full((B, T), pad_id, dtype=torch.long)
    targets = torch.full((B, T), pad_id, dtype=torch.long)
    loss_mask = torch.zeros((B, T), dtype=torch.float32)
    for b, (ids, mask) in enumerate(batch):
        n = len(ids) - 1
        idx[b, :n] = torch.tensor(ids[:-1], dtype=torch.long)
        targets[b, :n] = torch.tensor(ids[1:], dtype=torch.long)
        loss_mask[b, :n] = torch.tensor(mask[1:], dtype=torch.float32)
    return idx, targets, loss_mask


# ----------------------------------------------------------------------------------------------------
# Gold answers and options (numbers are read by reward.parse_number, the project's one number parser)
# ----------------------------------------------------------------------------------------------------

def _canonical_letter(s) -> str | None:
    t = str(s).strip().lower() if isinstance(s, str) else ""
    return t if t in ("a", "b", "c", "d", "e") else None


def parse_options(line: str) -> list[str] | None:
    """The 5 option texts of a MathQA options line, or None when it does not have exactly a..e.

    Two formats occur: 'a ) 38 , b ) 27.675 , c ) 30 , d ) data inadequate , e ) none of these' and a
    Python-list-looking "['a ) 12', 'b ) 15', ...]". Values may contain commas ('$ 1,354', '30 , 10'),
    so we never split on ','; we look for the markers 'a )', 'b )', ... in order instead."""
    line = line.strip()
    if line.startswith("["):
        try:
            items = ast.literal_eval(line)
        except (ValueError, SyntaxError):
            return None
        if not isinstance(items, list) or len(items) != 5 or not all(isinstance(x, str) for x in items):
            return None
        out = []
        for letter, item in zip("abcde", items):
            m = re.match(rf"\s*(?:{letter}\s*\)\s*)+", item)  # "a ) a ) 4 inches" occurs: strip repeats
            if not m:
                return None
            out.append(item[m.end():].strip())
        return out
    starts, ends, pos = [], [], 0
    for letter in "abcde":
        m = re.compile(rf"(?:^|,\s*|\s){letter}\s*\)\s*").search(line, pos)
        if not m:
            return None
        starts.append(m.start())
        ends.append(m.end())
        pos = m.end()
    values = [line[ends[i]:(starts[i + 1] if i < 4 else len(line))] for i in range(5)]
    return [v.strip().rstrip(",").strip() for v in values]


# ----------------------------------------------------------------------------------------------------
# Reading local files: bytes -> text -> records; every failure is one DataError naming file and line
# ----------------------------------------------------------------------------------------------------
#
# Local files are read with the stdlib only, not with `datasets.load_dataset("json", ...)`, which is
# the wrong tool for small local files:
#   * it caches the parsed table under ~/.cache/huggingface, keyed by the file's path and modification
#     time, so a file rewritten with the same mtime (`cp -p`, `rsync -t`, unpacking an archive, two
#     writes within the file system's clock resolution) silently loads the OLD records;
#   * Arrow reshapes the data before we can check it: a top-level object becomes one record, `[1, 2]`
#     becomes records {"text": 1}, a NaN in a JSON array comes back as null (reported as "missing"),
#     and two objects on one line become two rows, which shifts the line of every record after them;
#   * importing it costs ~0.5 s; the stdlib reads GSM8K's train.jsonl (7,473 records) in ~0.04 s.
# So: one reader, and nothing cached. The bytes are read on every call (always the file as it is
# now), and every check below sees exactly what the file holds. `datasets` still serves the hub (`_hub`).

_SPACE_RUN = re.compile(r"[ \t\r\n]*")   # JSON's whitespace (str.strip would also eat e.g. U+00A0)


class _RepeatedField(ValueError):
    """Raised from inside the JSON parser when one object holds the same key twice: json.loads would
    keep the last value silently, and half of that record would vanish without a word."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _no_repeated_fields(pairs: list) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                raise _RepeatedField(k)
            seen.add(k)
    return d


# One decoder for every file: the C scanner plus the hook above (costs a few ms on GSM8K's train file).
_DECODER = json.JSONDecoder(object_pairs_hook=_no_repeated_fields)


class _Rows:
    """Records of one file, plus how to name a record in an error message.

    JSONL: a record is a line; `lines[i]` is its physical line (blank lines are skipped, but counted).
    JSON array: "record i (0-based)", and the line it starts on. That line is found only when an error
    needs it (one more walk over the array, `_array_starts`), so reading good files costs nothing extra.
    Hub records have neither file nor lines: "record i (0-based)"."""

    def __init__(self, path: Path, rows: list, jsonl: bool = False, lines: list[int] | None = None,
                 text: str | None = None, starts: list[int] | None = None):
        self.path, self.rows, self.jsonl, self.lines, self.text = path, rows, jsonl, lines, text
        self._starts = starts   # JSON array: offset of each record in `text`, found when first needed

    def line(self, i: int) -> int | None:
        if self.jsonl:
            return self.lines[i]
        if self.text is None:
            return None
        if self._starts is None:
            self._starts = _array_starts(self.text)
        return self.text.count("\n", 0, self._starts[i]) + 1

    def at(self, i: int) -> str:
        """Where record i is, without the file name: 'line 7' or 'record 3 (0-based, line 12)'."""
        line = self.line(i)
        if self.jsonl:
            return f"line {line}"
        return f"record {i} (0-based)" if line is None else f"record {i} (0-based, line {line})"

    def where(self, i: int) -> str:
        return f"{self.path}, {self.at(i)}"


def _array_starts(text: str, starts: list[int] | None = None) -> list[int]:
    """Offsets at which the elements of the file's JSON array start (appended to `starts`).

    Only called on text that json has read as an array, so this walk needs no error handling: skip
    space, read one element with the C scanner, skip space and the comma, until the closing ']'.
    If an element repeats a field, _RepeatedField leaves the walk with that element's start last."""
    starts = [] if starts is None else starts
    pos = _SPACE_RUN.match(text, text.index("[") + 1).end()
    while text[pos] != "]":
        starts.append(pos)
        pos = _SPACE_RUN.match(text, _DECODER.raw_decode(text, pos)[1]).end()
        if text[pos] == ",":
            pos = _SPACE_RUN.match(text, pos + 1).end()
    return starts


def _decode(path: Path, raw: bytes) -> str:
    """The file's text: strict UTF-8, a leading UTF-8 byte order mark (BOM) dropped.

    Windows editors often start UTF-8 files with the BOM EF BB BF. It is not JSON (json rejects it as
    an unexpected character), but it is no mistake either, so we accept it; it holds no newline, so
    line numbers stay those of the file. Bytes that are not UTF-8 (a file saved as Latin-1, cp1252 or
    UTF-16) are reported with their line: the newlines before the bad byte, counted in the raw bytes,
    since the text cannot be decoded."""
    body = raw[len(codecs.BOM_UTF8):] if raw.startswith(codecs.BOM_UTF8) else raw
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        line = body.count(b"\n", 0, e.start) + 1
        utf16 = ", it looks like UTF-16" if raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else ""
        raise DataError(f"{path}, line {line}: not UTF-8 text (byte 0x{body[e.start]:02x} at byte offset "
                        f"{e.start + len(raw) - len(body)}{utf16}); re-save the file as UTF-8") from None
    if "\x00" in text:
        # NUL is valid UTF-8, but no JSON text holds one: UTF-16 without a BOM (or not a text file at all)
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise DataError(f"{path}, line {line}: not UTF-8 text (it holds NUL bytes, as UTF-16 does); "
                        "re-save the file as UTF-8")
    return text


def _read_array(path: Path, text: str) -> _Rows:
    """A JSON array of records (the .json files of SVAMP and ReFT)."""
    try:
        rows = _DECODER.decode(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":
            raise DataError(f"{path}, line {e.lineno}, column {e.colno}: text after the array's closing ']'; "
                            "a .json file holds one array of records -- remove the extra text") from None
        raise DataError(f"{path}, line {e.lineno}, column {e.colno}: not valid JSON ({e.msg}); "
                        "fix the file (or re-download it)") from None
    except _RepeatedField as e:
        # The hook does not know which record it is in: walk the array until the same error comes again.
        starts: list[int] = []
        try:
            _array_starts(text, starts)
        except _RepeatedField:
            pass
        out = _Rows(path, [], text=text, starts=starts)
        raise DataError(f"{out.where(len(starts) - 1)}: field {e.name!r} appears twice in the record; "
                        "keep one") from None
    except (ValueError, RecursionError) as e:   # valid JSON that Python will not hold (see _json_limit)
        raise _json_limit(f"{path}", e) from None
    return _Rows(path, rows, text=text)


def _read_jsonl(path: Path, text: str) -> _Rows:
    """One JSON object per line (GSM8K's and the synthetic set's .jsonl files); blank lines are skipped."""
    rows, lines = [], []
    for n, line in enumerate(text.split("\n"), start=1):
        if not _SPACE_RUN.fullmatch(line):
            try:
                rows.append(_DECODER.decode(line))
            except json.JSONDecodeError as e:
                if e.msg == "Extra data":
                    # json read one value and found more after it: a second record, or stray text?
                    try:
                        _DECODER.raw_decode(line, e.pos)
                        what = f"a second JSON value starts at column {e.colno}"
                    except (ValueError, _RepeatedField):
                        what = f"stray text after the JSON object, at column {e.colno}"
                    raise DataError(f"{path}, line {n}: {what}; a .jsonl line must hold exactly one JSON "
                                    "object -- put each record on its own line") from None
                raise DataError(f"{path}, line {n}, column {e.colno}: not valid JSON ({e.msg}); every line of a "
                                ".jsonl file must be one JSON object -- fix or remove that line") from None
            except _RepeatedField as e:
                raise DataError(f"{path}, line {n}: field {e.name!r} appears twice in the record; keep one") from None
            except (ValueError, RecursionError) as e:
                raise _json_limit(f"{path}, line {n}", e) from None
            lines.append(n)
    return _Rows(path, rows, jsonl=True, lines=lines)


def _json_limit(where: str, e: Exception) -> DataError:
    """Valid JSON that Python refuses: an integer of more than 4,300 digits (a ValueError since Python
    3.11, against a denial-of-service attack) or values nested thousands deep (RecursionError)."""
    why = "values nested too deeply" if isinstance(e, RecursionError) else str(e).split(";")[0][:120]
    return DataError(f"{where}: cannot read this JSON ({why}); fix the file")


def _one_object_error(path: Path, text: str) -> DataError | None:
    """A file that is ONE JSON object, not records: pretty-printed (so spread over several lines), or
    holding the records in a list under some key ({"data": [{...}, ...]}). A single object on a single
    line is also a valid one-record JSONL file, so that alone is not an error."""
    try:
        whole = _DECODER.decode(text)
    except (ValueError, RecursionError):   # not one JSON value: JSONL (or broken, which _read_jsonl names)
        return None
    if not isinstance(whole, dict):
        return None
    nested = [k for k, v in whole.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
    if nested:
        return DataError(f"{path}: the file is one JSON object whose records are in the list under key "
                         f"{nested[0]!r}; make that list the whole file (a JSON array of records)")
    if "\n" in text.strip(" \t\r\n"):
        return DataError(f"{path}: the file is one JSON object spread over several lines, not a list of "
                         "records; write a JSON array [{...}, {...}] or one object per line (JSONL)")
    return None


def _read_local(path: Path) -> _Rows:
    """All records of a local file: a JSON array of objects, or JSONL (one object per line).

    The format is told by the content, not the name: a file whose first character (after space) is '['
    is an array, anything else is read as JSONL (so a .json file in JSONL layout reads fine)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e.strerror}); check {PATH_FLAG}") from None
    text = _decode(path, raw)
    body = text.lstrip(" \t\r\n")
    if not body:
        raise DataError(f"{path}: the file is empty: no records; point {PATH_FLAG} at the data file")
    if body.startswith("["):
        rows = _read_array(path, text)
    else:
        error = _one_object_error(path, text) if body.startswith("{") else None
        if error is not None:
            raise error
        rows = _read_jsonl(path, text)
    if not rows.rows:
        raise DataError(f"{path}: no records (an empty array); point {PATH_FLAG} at the data file")
    for i, r in enumerate(rows.rows):
        if not isinstance(r, dict):
            raise DataError(f"{rows.where(i)}: a record must be a JSON object {{\"field\": value, ...}}, "
                            f"got a JSON {_json_type(r)}; fix or remove that record")
    return rows


def _non_finite(v: float) -> str:
    """NaN / Infinity as the file spells them (json reads both, though strict JSON has neither)."""
    return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")


def _shown(v) -> str:
    """A field's value in a message, short: a string quoted as Python does ('12 apples'), anything else
    as the file spells it (true, [5, 6])."""
    return repr(v[:60]) if isinstance(v, str) else json.dumps(v)[:60]


def _json_type(v) -> str:
    """The JSON name of a parsed value's type, for messages ('string', not 'str')."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, float) and not math.isfinite(v):
        return _non_finite(v)
    return {str: "string", int: "number", float: "number", list: "array", dict: "object"}.get(type(v), type(v).__name__)


# ----------------------------------------------------------------------------------------------------
# Checking one field of one record
# ----------------------------------------------------------------------------------------------------

def _field(rows: _Rows, i: int, name: str, kind: str = "text"):
    """rows[i][name], checked: a missing/null/empty field is an error naming file, record and field;
    kind "text" must be a JSON string, kind "any" may be anything present."""
    r = rows.rows[i]
    v = r.get(name)
    if v is None or (isinstance(v, str) and not v.strip()):
        present = sorted(k for k, x in r.items() if x is not None)   # a null field counts as absent
        raise DataError(f"{rows.where(i)}: field {name!r} is missing or empty (fields present: {present}); "
                        f"fix the record or point {PATH_FLAG} at the right file")
    if kind == "text" and not isinstance(v, str):
        raise DataError(f"{rows.where(i)}: field {name!r} should be a string, got a JSON {_json_type(v)}; "
                        "fix the record")
    return v


def _optional_text(rows: _Rows, i: int, name: str) -> str | None:
    """A field that may be absent or null (a CoT the record does not have), but if present is a non-empty
    string: a number there would only fail much later, mid-training, far from the file."""
    v = rows.rows[i].get(name)
    if v is None:
        return None
    if not isinstance(v, str):
        raise DataError(f"{rows.where(i)}: field {name!r} should be a string (or null), got a JSON "
                        f"{_json_type(v)}; fix the record")
    if not v.strip():
        raise DataError(f"{rows.where(i)}: field {name!r} is an empty string; write it, or null when the "
                        "record has none")
    return v


def _number_field(rows: _Rows, i: int, name: str, value=None) -> str:
    """A gold answer read by the one number parser ("1,080" -> "1080"); anything else is an error."""
    v = _field(rows, i, name, kind="any") if value is None else value
    if isinstance(v, float) and not math.isfinite(v):   # JSON NaN / Infinity: present, but no answer
        raise DataError(f"{rows.where(i)}: field {name!r} is {_non_finite(v)}, not a finite number; "
                        "fix the record (the gold answer must be a number)")
    c = parse_number(v)
    if c is None:
        raise DataError(f"{rows.where(i)}: field {name!r} = {_shown(v)} is not a number; the gold answer "
                        "must be a number alone (e.g. \"72\", \"-3\", \"0.5\") -- fix the record")
    return c


def _id_field(rows: _Rows, i: int, name: str, seen: dict) -> str:
    """A record's id: a non-empty string or a whole number, different from every id before it.
    Ids key per-problem results (evaluation's per_problem.jsonl, paired comparisons), so two records
    with one id would silently merge. `seen` maps id -> record index, across the file."""
    v = _field(rows, i, name, kind="any")
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise DataError(f"{rows.where(i)}: field {name!r} should be a string or a whole number, "
                        f"got a JSON {_json_type(v)}; fix the record")
    ident = str(v)
    if ident in seen:
        raise DataError(f"{rows.where(i)}: field {name!r} = {ident!r} repeats the id of {rows.at(seen[ident])}; "
                        "ids must be unique -- rename or remove one of the two records")
    seen[ident] = i
    return ident


def _check_program(rows: _Rows, i: int, name: str, program: str) -> None:
    """A P-CoT program is parsed at load time, so a broken one fails here, naming its file, record and
    field, instead of mid-training. The record's place is only worked out when it fails: for a JSON
    array that takes a walk over the file, too slow to do for each of 3,000 good programs."""
    try:
        program_body(program, where="")
    except DataError as e:
        raise DataError(f"{rows.where(i)}, field {name!r}: {str(e).removeprefix(': ')}") from None


def _hub(name: str, split: str):
    """A split from the Hugging Face hub; any failure becomes a one-line error that says what to do."""
    hub_id, config = HUB_IDS[name]
    try:
        import datasets

        args = (hub_id, config) if config else (hub_id,)
        rows = datasets.load_dataset(*args, split=split).to_list()
    except Exception as e:  # noqa: BLE001
        first = (str(e).strip().split("\n") or [""])[0][:160]
        raise DataError(f"could not load {name!r} split {split!r} from the hub ({hub_id}): {type(e).__name__}: "
                         f"{first}. Offline? Pass a local copy: {PATH_FLAG}=/path/to/file-or-folder "
                         f"(load_problems(..., path=...))") from None
    return _Rows(Path(f"hub:{hub_id}[{split}]"), rows)


def _resolve(path: str | os.PathLike, split: str, name: str) -> Path:
    """A file is the split itself; a folder holds {split}.jsonl or {split}.json."""
    p = Path(path).expanduser()
    if p.is_dir():
        for cand in (p / f"{split}.jsonl", p / f"{split}.json"):
            if cand.is_file():
                return cand
        here = sorted(f.name for f in p.iterdir() if f.suffix in (".json", ".jsonl"))[:8]
        raise DataError(f"{p}: no {split}.jsonl or {split}.json for the {name!r} {split!r} split "
                        f"(JSON files here: {here or 'none'}); pass the file itself with {PATH_FLAG}")
    if not p.is_file():
        raise DataError(f"{p}: no such file or folder ({PATH_FLAG})")
    return p


def _rows_for(name: str, split: str, path) -> _Rows:
    if path is not None:
        return _read_local(_resolve(path, split, name))
    if name not in HUB_IDS:
        raise DataError(f"{name!r} has no hub copy in ReFT's format; pass the JSON file with {PATH_FLAG}=...")
    return _hub(name, split)


# ----------------------------------------------------------------------------------------------------
# One loader per data set format
# ----------------------------------------------------------------------------------------------------

_CALC = re.compile(r"<<.*?>>")


def _gsm8k(rows: _Rows, src: str) -> list[Problem]:
    out = []
    for i in range(len(rows.rows)):
        q = _field(rows, i, "question")
        sol = _field(rows, i, "answer")
        if sol.count("####") != 1:
            raise DataError(f"{rows.where(i)}: field 'answer' must contain exactly one '####' followed by the "
                             "final answer (GSM8K format)")
        body, final = sol.split("####")
        gold = _number_field(rows, i, "answer", value=final)
        # The calculator annotations <<48/2=24>> were tool calls for the GSM8K authors' models; a plain
        # CoT is what a model should learn to write. The last line is rewritten with the canonical
        # answer ("#### 1,080" -> "#### 1080") so every data set ends its N-CoT the same way.
        cot = _CALC.sub("", body).rstrip() + f"\n#### {gold}"
        out.append(Problem(f"gsm8k-{i}", q, gold, cot_nl=cot, source=src))
    return out


def _svamp(rows: _Rows, src: str) -> list[Problem]:
    out, seen = [], {}
    for i in range(len(rows.rows)):
        body = _field(rows, i, "Body").strip()
        question = _field(rows, i, "Question").strip()
        gold = _number_field(rows, i, "Answer")
        # ID is optional (SVAMP.json has "chal-1".."chal-1000"); where present it must be unique
        ident = _id_field(rows, i, "ID", seen) if rows.rows[i].get("ID") is not None else f"svamp-{i}"
        out.append(Problem(ident, f"{body} {question}", gold, source=src))
    return out


def _reft(rows: _Rows, src: str, style: str, choices: bool) -> list[Problem]:
    """ReFT's JSON: item_id, question, answer_value (str), optional answer_cot (N-CoT or program)."""
    out, seen = [], {}
    for i in range(len(rows.rows)):
        ident = _id_field(rows, i, "item_id", seen)
        q = _field(rows, i, "question")
        raw = _field(rows, i, "answer_value", kind="any")
        options = None
        if choices or _canonical_letter(raw) is not None:
            gold = _canonical_letter(raw)
            if gold is None:
                raise DataError(f"{rows.where(i)}: field 'answer_value' = {_shown(raw)} is not a letter a-e "
                                 "(multiple choice); use the numeric loader for numeric answers")
            options = parse_options(q.split("\n")[-1])
            if options is None:
                raise DataError(f"{rows.where(i)}: field 'question' does not end with an options line "
                                 "'a ) .. , b ) .. , c ) .. , d ) .. , e ) ..' (5 options); fix the record")
        else:
            gold = _number_field(rows, i, "answer_value")
        cot = _optional_text(rows, i, "answer_cot")   # absent in the test sets
        p = Problem(ident, q, gold, options=options, source=src)
        if cot:
            if style == "program":
                # keep the whole program; target_completion() cuts the header off. Check it now so a
                # broken program fails at load time with its file and record, not mid-training.
                _check_program(rows, i, "answer_cot", cot)
                p.cot_program = cot
            else:
                p.cot_nl = cot  # ReFT's N-CoT ends "Therefore, the answer is <203>." (kept as written)
        out.append(p)
    return out


def _math_qa_hub(rows: _Rows, src: str) -> list[Problem]:
    """allenai/math_qa fields (Problem, options, correct) -> the ReFT layout. Only reachable online."""
    converted = []
    for i in range(len(rows.rows)):
        q = _field(rows, i, "Problem").strip() + "\n" + _field(rows, i, "options").strip()
        converted.append({"item_id": f"mathqa-{i}", "question": q, "answer_value": rows.rows[i].get("correct")})
    return _reft(_Rows(rows.path, converted), src, "nl", choices=True)


def load_problems(name: str, split: str, style: str = "nl", path: str | os.PathLike | None = None) -> list[Problem]:
    """Problems of one data set split. `path` (CLI: --data_path) is a local file or folder; without it,
    real data sets come from the hub (which fails offline with a one-line message saying to pass one).

    name: synthetic (default offline set; splits train, test, svamp_test, mathqa_train, mathqa_test),
          gsm8k (train/test), svamp (the 1000 SVAMP challenge problems; ChilleD/SVAMP on the hub has
          train/test), mathqa / mathqa-numeric (ReFT's test files), reft (ReFT's JSON; `style` says
          whether answer_cot is an N-CoT or a program). For a file path the file *is* the split."""
    if style not in STYLES:
        raise DataError(f"style {style!r}: choose one of {STYLES}")
    if name == "synthetic":
        if path is not None:
            return load_problems_file_synthetic(Path(path), split)
        return synthetic_split(split)
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}: choose one of {DATASETS}")
    rows = _rows_for(name, split, path)
    src = f"{name}:{rows.path}"
    if name == "gsm8k":
        problems = _gsm8k(rows, src)
    elif name == "svamp":
        problems = _svamp(rows, src)
    elif name == "mathqa" and path is None:
        problems = _math_qa_hub(rows, src)
    elif name == "mathqa":
        problems = _reft(rows, src, style, choices=True)
    else:  # mathqa-numeric, reft
        problems = _reft(rows, src, style, choices=False)
    if not problems:
        raise DataError(f"{rows.path}: no records")
    return problems


def synthetic_split(split: str) -> list[Problem]:
    """The default data set: data/synthetic/{split}.jsonl, made once by data/synthetic/synthetic.py.

    The generator is a tool beside its data, not part of the method, so this module never imports it;
    it runs the script (about three seconds) when the files are missing or were written by another
    version of it (meta.json records the sha256 of the script that wrote them)."""
    if not SYNTHETIC_SCRIPT.is_file():
        raise DataError(f"{SYNTHETIC_SCRIPT} is missing: run from a clone of the repository, or pass "
                        f"the synthetic files with {PATH_FLAG}=FOLDER")
    digest = hashlib.sha256(SYNTHETIC_SCRIPT.read_bytes()).hexdigest()
    try:
        made_by = json.loads((SYNTHETIC_DIR / "meta.json").read_text(encoding="utf-8")).get("generator_sha256")
    except (OSError, ValueError, AttributeError):
        made_by = None
    if made_by != digest:
        print(f"making the synthetic data set once: python {SYNTHETIC_SCRIPT.relative_to(REPO)}", flush=True)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        run = subprocess.run([sys.executable, str(SYNTHETIC_SCRIPT)], env=env, capture_output=True, text=True)
        if run.returncode != 0:
            last = (run.stderr.strip().split("\n") or ["?"])[-1]
            raise DataError(f"{SYNTHETIC_SCRIPT.relative_to(REPO)} failed: {last}")
    file = SYNTHETIC_DIR / f"{split}.jsonl"
    if not file.is_file():
        known = sorted(f.stem for f in SYNTHETIC_DIR.glob("*.jsonl"))
        raise DataError(f"unknown synthetic split {split!r}: choose one of {known}")
    problems = load_problems_file_synthetic(file, split)
    for p in problems:
        p.source = f"synthetic:{split}"
    return problems


def load_problems_file_synthetic(path: Path, split: str) -> list[Problem]:
    """Synthetic problems from a folder with {split}.jsonl (as written by data/synthetic/synthetic.py)
    or from one such file: records with id, question, answer, cot_nl, cot_program, options.

    Every field is checked here, types included: a record that loads is a record training can use.
    (A cot_nl of 5 would otherwise pass loading and fail mid-training, in the tokenizer, far from the
    file.) Programs are parsed now for the same reason (~75 us each: 0.2 s for the 3,000 of `train`)."""
    rows = _read_local(_resolve(path, split, "synthetic"))
    out, seen = [], {}
    for i in range(len(rows.rows)):
        ident = _id_field(rows, i, "id", seen)
        q = _field(rows, i, "question")
        options = rows.rows[i].get("options")
        if options is None:
            gold = _number_field(rows, i, "answer")
        else:
            if not isinstance(options, list) or len(options) != 5 or not all(isinstance(o, str) for o in options):
                raise DataError(f"{rows.where(i)}: field 'options' must be a list of 5 strings (the option texts "
                                f"for a..e) or null, got {_shown(options)}; fix the record")
            raw = _field(rows, i, "answer", kind="any")
            gold = _canonical_letter(raw)
            if gold is None:
                raise DataError(f"{rows.where(i)}: field 'answer' = {_shown(raw)} is not a letter a-e (the "
                                "record has options, so it is multiple choice); fix the record")
        cot_nl = _optional_text(rows, i, "cot_nl")
        cot_program = _optional_text(rows, i, "cot_program")
        if cot_program is not None:
            _check_program(rows, i, "cot_program", cot_program)
        out.append(Problem(ident, q, gold, cot_nl, cot_program, options, f"synthetic:{rows.path}"))
    return out
