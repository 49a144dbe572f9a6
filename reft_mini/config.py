"""Configuration: one dataclass per script, overridden from the command line as ``--key=value``.

The nanoGPT habit: every knob sits at the top of the script with a comment, and the command line
overrides it. Here the comment *is* the help text: ``--help`` reads each field's trailing comment
from the dataclass source (a comment line whose ``#`` sits right under it continues it), so the two
cannot drift apart. The parsed config is stored in every checkpoint, and evaluation reads it back.

Every mistake a user can make on the command line is caught right after parsing, before anything is
loaded or written: each script lists what its options may be (a small table of rules built from
`at_least`, `above`, `between`, `one_of`; see `check`) and adds the checks that involve several
options or the file system in its own `validate(cfg, given)`. A mistake raises `UserError`;
`main_guard` turns it into one line, ``error: ...``, and exit status 2 instead of a traceback.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import re
import sys
import textwrap
import typing
from pathlib import Path
from typing import Callable


class UserError(Exception):
    """A mistake in what the user asked for; the message says what to do."""


# ----------------------------------------------------------------------------------------------------
# Reading --key=value

def show(value) -> str:
    """A value as the user would type it on the command line (None -> none, True -> true)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _convert(name: str, text: str, typ):
    """Turn the command-line string into the field's type (int, float, bool, str, or Optional[...])."""
    origin = typing.get_origin(typ)
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        if text.lower() in ("none", "null", ""):
            return None
        typ = args[0]
    try:
        if typ is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is float:
            value = float(text)
            # float() happily reads "nan" and "inf"; no option of ours means anything with them, and a
            # NaN learning rate would only show up minutes later as a NaN loss.
            if not math.isfinite(value):
                raise UserError(f"--{name}={text}: expected a finite number")
            return value
        if typ in (int, str):
            return typ(text)
    except ValueError:
        raise UserError(f"--{name}={text}: expected a value of type {typ.__name__}") from None
    raise UserError(f"--{name}: unsupported type {typ}")


def parse_config(cls, argv: list[str] | None = None, prog: str | None = None, positional: str | None = None,
                 validate: Callable | None = None):
    """Build `cls()` and apply `--key=value` / `--key value` overrides from `argv` (default sys.argv[1:]).

    `positional`: name of a list[str] field that collects bare arguments (e.g. checkpoint paths).
    `validate(cfg, given)`: the script's checks, run at once; `given` is the set of option names the user
    typed, so that a check can tell an explicit `--model=demo` from the default.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if "-h" in argv or "--help" in argv:
        try:
            print(usage(cls, prog, positional), flush=True)
        except BrokenPipeError:  # `--help | head`: the reader left early, which is fine
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0)
    values, extra = {}, []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            if positional is None:
                raise UserError(f"unexpected argument {arg!r}; options look like --key=value (see --help)")
            extra.append(arg)
            i += 1
            continue
        key, eq, text = arg[2:].partition("=")
        key = key.replace("-", "_")
        if key not in fields or key == positional:
            close = [k for k in fields if k.startswith(key[:3]) and k != positional]
            hint = f" (did you mean {', '.join('--' + c for c in close[:3])}?)" if close else ""
            raise UserError(f"unknown option --{key}{hint}; see --help for every option")
        if not eq:
            if hints[key] is bool and (i + 1 >= len(argv) or argv[i + 1].startswith("--")):
                text = "true"  # a bare --flag switches a boolean on
            elif i + 1 < len(argv):
                i += 1
                text = argv[i]
            else:
                raise UserError(f"--{key} needs a value")
        values[key] = _convert(key, text, hints[key])
        i += 1
    given = frozenset(values)
    if positional is not None:
        values[positional] = extra
    cfg = cls(**values)
    if validate is not None:
        validate(cfg, given)
    return cfg


# ----------------------------------------------------------------------------------------------------
# What an option may be. A rule takes the value and returns a complaint, or None when the value is fine.

def at_least(lo):
    return lambda v: None if v >= lo else f"must be at least {lo}"


def above(lo):
    return lambda v: None if v > lo else f"must be above {lo}"


def below(hi):
    return lambda v: None if v < hi else f"must be below {hi}"


def between(lo, hi):
    return lambda v: None if lo <= v <= hi else f"must be between {lo} and {hi}"


def one_of(*choices):
    return lambda v: None if v in choices else f"choose one of {', '.join(map(str, choices))}"


def device_name(v: str):
    """auto, cpu, cuda or cuda:N (whether a GPU is there is checked when the script picks its device)."""
    return None if re.fullmatch(r"auto|cpu|cuda(:\d+)?", v) else "choose auto, cpu, cuda or cuda:N"


SEED = between(0, 2 ** 31 - 1)  # the scripts derive further seeds from it by arithmetic; keep it in range


def check(cfg, rules: dict) -> None:
    """Apply `rules` ({field: rule or tuple of rules}) to `cfg`; the first complaint becomes a UserError.

    None always passes: in these configs it means "not set" (no limit, the checkpoint's value, ...)."""
    for name, field_rules in rules.items():
        value = getattr(cfg, name)
        if value is None:
            continue
        for rule in field_rules if isinstance(field_rules, tuple) else (field_rules,):
            complaint = rule(value)
            if complaint:
                raise UserError(f"--{name}={show(value)}: {complaint}")


def check_writable_dir(option: str, path: str) -> None:
    """Refuse an output folder that cannot be written, before training for an hour to find out.

    Nothing is created: the probe file goes into the folder itself when it exists, else into the
    nearest folder above it that exists (the script creates the rest when it first saves)."""
    if not path:
        raise UserError(f"--{option} is empty: name the folder to write to, e.g. --{option}=runs/mine")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"--{option}={path}: that is a file, not a folder; choose a folder")
    probe_dir = p
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise UserError(f"--{option}={path}: {probe_dir} is a file, so no folder can be made below it")
    probe = probe_dir / f".reft_mini_probe.{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"--{option}={path}: cannot write in {probe_dir} ({e.strerror}); "
                        "choose a folder you can write to") from None


def check_existing(option: str, path: str, what: str = "file") -> None:
    """An input the script reads must be there (a file, or for what='folder' a directory)."""
    p = Path(path)
    if not path or not p.exists():
        raise UserError(f"--{option}={path}: no such {what}")
    if what == "file" and not p.is_file():
        raise UserError(f"--{option}={path}: that is a folder, expected a file")


# ----------------------------------------------------------------------------------------------------
# --resume: the run continues only with the settings it was started with

# Options a resumed run may change: they decide when to stop, how often to look or save, and where it
# runs, not what is learned. (--epochs and --steps also stretch the lr schedule from then on.)
RESUME_MAY_CHANGE = frozenset({"resume", "out_dir", "progress", "max_steps", "epochs", "steps", "iters",
                               "minutes", "eval_every", "save_every", "device", "compile", "export"})
PATH_OPTIONS = frozenset({"init", "data_path", "tokenizer_path"})


def resume_changes(saved: dict, now: dict, where: str) -> str:
    """Compare a checkpoint's config with this run's: refuse a changed setting, describe allowed changes.

    Returns "" or e.g. "--max_steps=8 (was 4)" for the one resume line; raises UserError naming every
    setting that may not change. Keys missing from an older checkpoint are not compared."""
    def same(key, a, b):
        if key in PATH_OPTIONS and isinstance(a, str) and isinstance(b, str):
            return os.path.realpath(a) == os.path.realpath(b)
        return a == b

    changed = [k for k in now if k in saved and not same(k, saved[k], now[k])]
    refused = [f"--{k}={show(now[k])} (was {show(saved[k])})" for k in changed if k not in RESUME_MAY_CHANGE]
    if refused:
        raise UserError(f"--resume: {where} was trained with other settings: {', '.join(refused)}; resume with "
                        "the same values, or drop --resume (or choose another --out_dir) to start a new run")
    return ", ".join(f"--{k}={show(now[k])} (was {show(saved[k])})" for k in changed if k != "resume")


# ----------------------------------------------------------------------------------------------------
# --help

def field_help(cls) -> dict[str, str]:
    """Map field name -> its trailing `# comment` in the class source, continuation lines joined.

    A continuation is a comment-only line whose `#` is in the same column as the field's `#`; section
    comments (`# --- data`) start further left and belong to no field."""
    helps = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        name, column = None, None
        for line in src.splitlines():
            m = re.match(r"^(\s+)(\w+)\s*:[^=\n]*=[^#\n]*(#)\s*(.*)$", line)
            if m:
                name, column = m.group(2), m.start(3)
                helps[name] = m.group(4).strip()
                continue
            c = re.match(r"^(\s*)#\s*(.*)$", line)
            if name and c and len(c.group(1)) == column:
                helps[name] += " " + c.group(2).strip()
            else:
                name = None
    return helps


def usage(cls, prog: str | None = None, positional: str | None = None, width: int = 110) -> str:
    """Every option as `--name=default`, padded to one column, then its meaning (wrapped under itself)."""
    helps = field_help(cls)
    head = f"usage: python {prog or sys.argv[0]}" + (" CKPT [CKPT ...]" if positional else "") + " [--key=value ...]"
    lines = [head, ""]
    doc = inspect.getdoc(cls)
    if doc:
        lines += [doc, ""]
    rows = []
    for f in dataclasses.fields(cls):
        if f.name == positional:
            rows.append(("CKPT [CKPT ...]", helps.get(f.name, "")))
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        rows.append((f"--{f.name}={show(default)}", helps.get(f.name, "")))
    left = max(len(a) for a, _ in rows) + 2
    for option, text in rows:
        wrapped = textwrap.wrap(text, max(40, width - left - 2), break_on_hyphens=False) or [""]
        lines.append(f"  {option:<{left}}{wrapped[0]}".rstrip())
        lines += [" " * (left + 2) + more for more in wrapped[1:]]
    return "\n".join(lines)


def main_guard(main, *args, **kwargs):
    """Run `main`; a UserError becomes `error: ...` on stderr and exit status 2 (no traceback)."""
    try:
        return main(*args, **kwargs)
    except UserError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)  # one line, whatever the message
        raise SystemExit(2) from None
