"""Problems, the one prompt format, SFT encoding with an answer-only loss mask, and the data loaders.

Paper: ReFT (Luong et al. 2024), Sec. 3 and 4. Both stages read the same records:
  * stage 1 (warm-up / SFT) trains on prompt + gold chain of thought (CoT), with the loss on the CoT only;
  * stage 2 (PPO) samples a CoT after the same prompt and scores it against the gold *answer*.
So this file owns three things that training and evaluation must never disagree on:
  1. the record: `Problem` (question, canonical gold answer, optional N-CoT / P-CoT / options);
  2. the prompt: ReFT's official "Question:\\n{q}\\nAnswer reasoning:\\n" (+ the program header for P-CoT);
  3. what the reward reads: `answer_text` (for P-CoT: header + what the model wrote = a whole program).

Loaders for the data sets of the paper go through the `datasets` library (hub ids, or local files with
`load_dataset("json", ...)`); our offline default is the synthetic set that data/synthetic/synthetic.py
writes beside itself (made on first use, see `synthetic_split`).

    name        file / hub id                         gold answer          CoT
    synthetic   data/synthetic/{split}.jsonl           int or letter a-e    N-CoT and P-CoT (MathQA-style: N-CoT)
    gsm8k       openai/gsm8k or train.jsonl/test.jsonl "#### N"             N-CoT (calculator <<..>> removed)
    svamp       ChilleD/SVAMP or SVAMP.json            float Answer         none (test set)
    mathqa      ReFT's mathqa_test_set.json            letter a-e, options  none (test set)
    mathqa-numeric  ReFT's mathqa-numeric_test_set.json number          none
    reft        any ReFT JSON (item_id, question, answer_cot, answer_value); style says which CoT it holds

Bad input never passes silently: a record that cannot be read raises a DataError (a ValueError) naming
the file, the line (JSONL) or record index (JSON array), the field, and what to do.
"""

from __future__ import annotations

import ast
import hashlib
import json
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
        raise DataError(f"{where}: the program does not parse ({e.msg}, line {e.lineno})") from None
    if not tree.body or not isinstance(tree.body[0], ast.FunctionDef) or tree.body[0].name != "solution" \
            or tree.body[0].args.args:
        raise DataError(f"{where}: a P-CoT program must start with 'def solution():'")
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
        return program_body(problem.cot_program, where=f"problem {problem.id}")
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
# Reading files (through `datasets`, with precise errors)
# ----------------------------------------------------------------------------------------------------

class _Rows:
    """Records of one local file plus how to name a record in an error message."""

    def __init__(self, path: Path, rows: list[dict], jsonl: bool, line_numbers: list[int] | None):
        self.path, self.rows, self.jsonl, self.line_numbers = path, rows, jsonl, line_numbers

    def where(self, i: int) -> str:
        if self.jsonl:
            line = self.line_numbers[i] if self.line_numbers else i + 1
            return f"{self.path}, line {line}"
        return f"{self.path}, record {i} (0-based)"


def _stdlib_read(path: Path) -> tuple[list, bool, list[int] | None]:
    """Read a .json array or .jsonl file with the stdlib; ValueError pinpoints broken JSON."""
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
                             "fix or re-download the file") from None
        return data, False, None
    rows, lines = [], []
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, line {n}: not valid JSON ({e.msg}); every line of a .jsonl file must be "
                             "one JSON object -- fix or remove that line") from None
        lines.append(n)
    return rows, True, lines


def _read_local(path: Path) -> _Rows:
    """All records of a local JSON-array or JSONL file.

    We go through `datasets.load_dataset("json", data_files=...)` (the project's loader library). It is
    fast here (~0.1 s for GSM8K train after a ~0.7 s import) and needs no network for local files.
    When it fails -- broken JSON, or a field whose type differs between records, which Arrow cannot
    hold -- we re-read the file with the stdlib, which either names the broken line or returns the
    records as they are (and the field checks below then name the bad one)."""
    if not path.is_file():
        raise DataError(f"{path}: no such file ({PATH_FLAG})")
    try:
        import datasets  # imported lazily: importing `datasets` costs ~0.7 s
    except ImportError:  # e.g. a GPU machine with torch only: the stdlib reader below does the same job
        datasets = None
    rows = None
    if datasets is not None:
        was_enabled = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        try:
            rows = datasets.load_dataset("json", data_files=str(path), split="train").to_list()
        except Exception:  # noqa: BLE001 -- any failure: let the stdlib reader find (and name) the problem
            rows = None
        finally:
            if was_enabled:
                datasets.enable_progress_bars()
    raw, jsonl, lines = _stdlib_read(path) if rows is None else _layout(path)
    if rows is None:
        rows = raw
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON array of records or one JSON object per line")
    out = _Rows(path, rows, jsonl, lines)
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise DataError(f"{out.where(i)}: a record must be a JSON object, got {type(r).__name__}")
    return out


def _layout(path: Path) -> tuple[None, bool, list[int] | None]:
    """Is the file JSONL, and on which physical lines are its records (datasets skips blank lines)?"""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return None, False, None
    return None, True, [n for n, line in enumerate(text.split("\n"), 1) if line.strip()]


def _field(rows: _Rows, i: int, name: str, kind: str = "text"):
    """rows[i][name], checked: a missing/null/empty field is an error naming file, record and field."""
    r = rows.rows[i]
    v = r.get(name)
    if v is None or (isinstance(v, str) and not v.strip()):
        present = sorted(k for k, x in r.items() if x is not None)   # datasets fills absent fields with None
        raise DataError(f"{rows.where(i)}: field {name!r} is missing or empty (fields present: {present}); "
                         f"fix the record or point {PATH_FLAG} at the right file")
    if kind == "text" and not isinstance(v, str):
        raise DataError(f"{rows.where(i)}: field {name!r} should be text, got {type(v).__name__}")
    return v


def _number_field(rows: _Rows, i: int, name: str, value=None) -> str:
    v = _field(rows, i, name, kind="any") if value is None else value
    c = parse_number(v)
    if c is None:
        raise DataError(f"{rows.where(i)}: field {name!r} = {str(v)[:60]!r} is not a number; "
                         "fix the record (the gold answer must be numeric)")
    return c


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
    return _Rows(Path(f"hub:{hub_id}[{split}]"), rows, jsonl=False, line_numbers=None)


def _resolve(path: str | os.PathLike, split: str, name: str) -> Path:
    """A file is the split itself; a folder holds {split}.jsonl or {split}.json."""
    p = Path(path).expanduser()
    if p.is_dir():
        for cand in (p / f"{split}.jsonl", p / f"{split}.json"):
            if cand.is_file():
                return cand
        raise DataError(f"{p}: no {split}.jsonl or {split}.json for the {name!r} {split!r} split; "
                         f"pass the file itself with {PATH_FLAG}")
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
    out = []
    for i in range(len(rows.rows)):
        body = _field(rows, i, "Body").strip()
        question = _field(rows, i, "Question").strip()
        gold = _number_field(rows, i, "Answer")
        ident = rows.rows[i].get("ID") or f"svamp-{i}"
        out.append(Problem(str(ident), f"{body} {question}", gold, source=src))
    return out


def _reft(rows: _Rows, src: str, style: str, choices: bool) -> list[Problem]:
    """ReFT's JSON: item_id, question, answer_value (str), optional answer_cot (N-CoT or program)."""
    out = []
    for i in range(len(rows.rows)):
        ident = str(_field(rows, i, "item_id", kind="any"))
        q = _field(rows, i, "question")
        raw = _field(rows, i, "answer_value", kind="any")
        options = None
        if choices or _canonical_letter(raw) is not None:
            gold = _canonical_letter(raw)
            if gold is None:
                raise DataError(f"{rows.where(i)}: field 'answer_value' = {str(raw)[:40]!r} is not a letter a-e "
                                 "(multiple choice); use the numeric loader for numeric answers")
            options = parse_options(q.split("\n")[-1])
            if options is None:
                raise DataError(f"{rows.where(i)}: field 'question' does not end with an options line "
                                 "'a ) .. , b ) .. , c ) .. , d ) .. , e ) ..' (5 options); fix the record")
        else:
            gold = _number_field(rows, i, "answer_value")
        cot = rows.rows[i].get("answer_cot")
        if cot is not None and not isinstance(cot, str):
            raise DataError(f"{rows.where(i)}: field 'answer_cot' should be text")
        p = Problem(ident, q, gold, options=options, source=src)
        if cot:
            if style == "program":
                # keep the whole program; target_completion() cuts the header off. Check it now so a
                # broken program fails at load time with its file and record, not mid-training.
                program_body(cot, where=f"{rows.where(i)}, field 'answer_cot'")
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
    return _reft(_Rows(rows.path, converted, False, None), src, "nl", choices=True)


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
    or from one such file: records with id, question, answer, cot_nl, cot_program, options."""
    rows = _read_local(_resolve(path, split, "synthetic"))
    out = []
    for i in range(len(rows.rows)):
        r = rows.rows[i]
        ident = str(_field(rows, i, "id", kind="any"))
        q = _field(rows, i, "question")
        raw = _field(rows, i, "answer", kind="any")
        options = r.get("options")
        gold = _canonical_letter(raw) if options else _number_field(rows, i, "answer")
        if gold is None:
            raise DataError(f"{rows.where(i)}: field 'answer' = {raw!r} is not a letter a-e")
        if options is not None and (not isinstance(options, list) or len(options) != 5):
            raise DataError(f"{rows.where(i)}: field 'options' must be a list of 5 option texts")
        out.append(Problem(ident, q, gold, r.get("cot_nl"), r.get("cot_program"), options, f"synthetic:{rows.path}"))
    return out
