"""Configuration: one dataclass per script, overridden from the command line as ``--key=value``.

The nanoGPT habit: every knob sits at the top of the script with a comment, and the command line
overrides it. Here the comment *is* the help text: ``--help`` reads each field's trailing comment
from the dataclass source, so the two cannot drift apart. The parsed config is stored in every
checkpoint, and evaluation reads it back from there.

User errors (unknown option, bad value, missing file, ...) raise `UserError`; `main_guard` turns them
into a one-line message and exit status 2 instead of a traceback.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import typing


class UserError(Exception):
    """A mistake in what the user asked for; the message says what to do."""


def _field_help(cls) -> dict[str, str]:
    """Map field name -> its trailing `# comment` in the class source."""
    helps = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for m in re.finditer(r"^\s+(\w+)\s*:[^=\n]*=[^#\n]*#\s*(.*)$", src, re.M):
            helps[m.group(1)] = m.group(2).strip()
    return helps


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
        if typ in (int, float, str):
            return typ(text)
    except ValueError:
        raise UserError(f"--{name}={text}: expected a value of type {typ.__name__}") from None
    raise UserError(f"--{name}: unsupported type {typ}")


def parse_config(cls, argv: list[str] | None = None, prog: str | None = None, positional: str | None = None):
    """Build `cls()` and apply `--key=value` / `--key value` overrides from `argv` (default sys.argv[1:]).

    `positional`: name of a list[str] field that collects bare arguments (e.g. checkpoint paths).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if "-h" in argv or "--help" in argv:
        print(usage(cls, prog))
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
        if key not in fields:
            close = [k for k in fields if k.startswith(key[:3])]
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
    if positional is not None:
        values[positional] = extra
    return cls(**values)


def usage(cls, prog: str | None = None) -> str:
    helps = _field_help(cls)
    lines = [f"usage: python {prog or sys.argv[0]} [--key=value ...]", ""]
    doc = inspect.getdoc(cls)
    if doc:
        lines += [doc, ""]
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        lines.append(f"  --{f.name}={default!s:<14} {helps.get(f.name, '')}")
    return "\n".join(lines)


def main_guard(main, *args, **kwargs):
    """Run `main`; a UserError becomes `error: ...` on stderr and exit status 2 (no traceback)."""
    try:
        return main(*args, **kwargs)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
