"""reft_mini/config.py: parsing, the option rules, --resume's settings check, and --help a newcomer can read."""
import dataclasses
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from reft_mini import config
from reft_mini.config import UserError, parse_config

REPO = Path(__file__).resolve().parents[1]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


import pretrain  # noqa: E402  (data/base/pretrain.py)
import train_ppo  # noqa: E402
import train_warmup  # noqa: E402

evaluate = _load("evaluate_for_config_tests", REPO / "evaluate.py")
SCRIPTS = {"train_warmup.py": (train_warmup, None), "train_ppo.py": (train_ppo, None),
           "evaluate.py": (evaluate, "checkpoints"), "data/base/pretrain.py": (pretrain, None)}


@dataclasses.dataclass
class Toy:
    """A toy config."""
    n: int = 1                          # How many.
    lr: float = 0.5                     # A rate, explained over
                                        # two lines.
    # --- a section comment, not part of lr's help
    name: str | None = None             # A name (none: unnamed).
    flag: bool = False                  # Switch something on.


# ------------------------------------------------------------------------------------------ parsing

@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "1e999"])
def test_floats_must_be_finite(text):
    with pytest.raises(UserError, match="expected a finite number"):
        parse_config(Toy, [f"--lr={text}"])


def test_values_of_the_wrong_type_and_unknown_options_are_refused():
    with pytest.raises(UserError, match="expected a value of type int"):
        parse_config(Toy, ["--n=two"])
    with pytest.raises(UserError, match="expected a value of type bool"):
        parse_config(Toy, ["--flag=maybe"])
    with pytest.raises(UserError, match="unknown option --bogus"):
        parse_config(Toy, ["--bogus=1"])


def test_validate_hears_which_options_were_typed():
    seen = {}
    cfg = parse_config(Toy, ["--n=1", "--flag", "--name="], validate=lambda c, given: seen.update(given=given))
    assert seen["given"] == {"n", "flag", "name"}          # --n=1 equals the default, yet it was typed
    assert cfg.flag is True and cfg.name is None            # a bare flag is true; an empty Optional is None


def test_rules_complain_with_the_option_and_its_value():
    cfg = Toy(n=0, lr=2.0, name="x")
    with pytest.raises(UserError, match=r"^--n=0: must be at least 1$"):
        config.check(cfg, {"n": config.at_least(1)})
    with pytest.raises(UserError, match=r"^--lr=2.0: must be between 0 and 1$"):
        config.check(cfg, {"lr": (config.above(0), config.between(0, 1))})
    with pytest.raises(UserError, match=r"^--name=x: choose one of a, b$"):
        config.check(cfg, {"name": config.one_of("a", "b")})
    config.check(Toy(name=None), {"name": config.one_of("a", "b")})  # None means "not set" and passes
    assert config.device_name("cuda:1") is None and config.device_name("tpu")


def test_an_output_folder_is_checked_without_creating_anything(tmp_path):
    config.check_writable_dir("out_dir", str(tmp_path / "a" / "b"))          # fine: made when first saved
    assert list(tmp_path.iterdir()) == []                                     # ... and nothing made now
    (tmp_path / "f").write_text("x")
    for path, message in [("", "is empty"), (str(tmp_path / "f"), "is a file"),
                          (str(tmp_path / "f" / "sub"), "is a file"), ("/proc/reft_mini_out", "cannot write")]:
        with pytest.raises(UserError, match=message):
            config.check_writable_dir("out_dir", path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_resume_allows_stopping_options_and_names_every_other_change(tmp_path):
    saved = {"lr": 0.002, "seed": 1337, "max_steps": 4, "epochs": 2, "init": str(tmp_path / "a.pt"), "resume": False}
    now = {**saved, "max_steps": 8, "resume": True, "init": str(tmp_path / "." / "a.pt"), "save_every": 3}
    assert config.resume_changes(saved, now, "x/latest.pt") == "--max_steps=8 (was 4)"   # new keys: not compared
    with pytest.raises(UserError) as e:
        config.resume_changes(saved, {**now, "lr": 0.1, "seed": 1}, "x/latest.pt")
    assert "--lr=0.1 (was 0.002)" in str(e.value) and "--seed=1 (was 1337)" in str(e.value)
    assert "max_steps" not in str(e.value)


def test_main_guard_prints_one_line_and_exits_with_status_2(capsys):
    def fails():
        raise UserError("first line\nsecond line")
    with pytest.raises(SystemExit) as e:
        config.main_guard(fails)
    assert e.value.code == 2
    assert capsys.readouterr().err == "error: first line second line\n"


# ------------------------------------------------------------------------------------------ --help

def test_help_joins_continuation_comments_but_not_section_comments():
    helps = config.field_help(Toy)
    assert helps["lr"] == "A rate, explained over two lines."
    assert helps["name"] == "A name (none: unnamed)."


def _option_rows(text):
    """(column where the meaning starts, line) for each option line; continuation lines separately."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("  --") or line.startswith("  CKPT"))
    return lines[first:]


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_help_is_aligned_self_contained_and_in_sentences(script):
    module, positional = SCRIPTS[script]
    text = config.usage(module.Config, script, positional)
    rows = _option_rows(text)
    columns = set()
    for line in rows:
        if line.startswith("  --") or line.startswith("  CKPT"):
            m = re.match(r"^  (\S+(?: \[CKPT \.\.\.\])?)( +)\S", line)
            assert m, line
            columns.add(len(m.group(0)) - 1)
        else:  # a wrapped meaning continues exactly under the first line's meaning
            assert line.strip() and len(line) - len(line.lstrip()) in columns, line
    assert len(columns) == 1, f"meanings start in columns {columns}"
    col = columns.pop()
    # The left column is as wide as the longest --name=default, plus two spaces.
    widest = max(len(line[2:].split("  ")[0]) for line in rows if line.startswith(("  --", "  CKPT")))
    assert col == widest + 4
    for forbidden in ("top of this file", "see README", "see reft_mini", ".py)"):
        assert forbidden not in text, forbidden
    for name, meaning in config.field_help(module.Config).items():
        assert meaning[:1].isupper() and meaning.endswith("."), f"{script} --{name}: {meaning!r}"
    assert {f.name for f in dataclasses.fields(module.Config)} == set(config.field_help(module.Config))


def test_help_keeps_the_papers_value_beside_ours():
    helps = config.field_help(train_ppo.Config)
    assert "(the paper: 0.95)" in helps["lam"] and "(the paper: 5)" in helps["vf_coef"]
    assert "(the paper: 2)" in helps["ppo_epochs"]
    assert "(the paper: 0.1)" in config.field_help(train_warmup.Config)["warmup_frac"]


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_every_default_passes_its_own_rules(script):
    module, _ = SCRIPTS[script]
    config.check(module.Config(), module.RULES)
