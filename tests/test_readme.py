"""README.md: every command it shows runs (in a smoke-sized version), and every link and image it uses exists.

Each shell line of a ```bash block is run in README order, in a scratch folder holding copies of the
scripts and data/, so `runs/` from one command feeds the next (warm-up -> PPO -> evaluate). Training
commands get extra flags that make them take seconds (the flags come last, so they win); the
commands' own flags are kept, so a renamed option or a wrong path in README fails here.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA_DIR

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()

SMOKE = {
    "train_warmup.py": ["--max_steps=2", "--max_train=64", "--eval_questions=2", "--max_new_tokens=8",
                        "--batch_size=8", "--progress=false"],
    "train_ppo.py": ["--iters=2", "--questions_per_iter=4", "--samples_per_question=2", "--max_new_tokens=8",
                     "--eval_questions=2", "--value_warmup_iters=1", "--lr_warmup_iters=1", "--minutes=none",
                     "--progress=false"],
    "evaluate.py": ["--limit=2", "--k=1,2", "--max_new_tokens=8", "--progress=false"],
    "tools/bench.py": ["--quick"],
    "tools/gpu_check.py": ["--device=cpu", "--quick"],
    "tools/reproduce.py": ["--seeds=1", "--quick", "--limit=2"],
    "data/base/pretrain.py": ["--steps=3", "--batch_size=4", "--eval_every=2", "--save_every=2", "--eval_questions=2",
                              "--max_new_tokens=8", "--minutes=none", "--progress=false"],
}


def bash_lines():
    """(block number, command) for every command line of every ```bash block."""
    out = []
    for i, block in enumerate(re.findall(r"```bash\n(.*?)```", README, re.S)):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                out.extend((i, part.strip()) for part in line.split("&&"))
    return out


def smoke_command(argv, scratch, cwd=None):
    """The smoke-sized version of one README command, or None when CI itself runs it.

    GPU commands run on the CPU here (--device=cuda becomes --device=cpu). Smoke-sized runs stop after a
    few steps, before any epoch ends, so a checkpoint a README line names that such a run cannot have
    written (epoch2.pt, best.pt) is replaced by the latest.pt beside it."""
    argv = [a.replace("--device=cuda", "--device=cpu") for a in argv]
    if cwd is not None:
        fixed = []
        for a in argv:
            key, eq, val = a.rpartition("=") if a.startswith("--") else ("", "", a)
            path = Path(val)
            if path.suffix == ".pt" and path.parts[:1] == ("runs",) and not (cwd / path).exists() \
                    and (cwd / path.parent / "latest.pt").exists():
                a = f"{key}{eq}{path.parent / 'latest.pt'}"
            fixed.append(a)
        argv = fixed
    if any("$DATA_DIR" in a for a in argv):
        if not DATA_DIR.is_dir():
            return None  # the real data sets are not on this machine
        argv = [a.replace("$DATA_DIR", str(DATA_DIR)) for a in argv]
    head = argv[0]
    if head in ("pip", "pytest", "python3", ".", "source") or argv[:3] == ["python", "-m", "venv"]:
        return None  # installing and testing is what .ci/run does with these very lines
    if head == "torchrun":
        script = next(a for a in argv if a.endswith(".py"))
        rest = argv[argv.index(script) + 1:]
        return ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533", script,
                 *rest, *SMOKE[script]])
    assert head == "python", f"README command not covered by the smoke test: {' '.join(argv)}"
    if argv[1] == "-m":
        module, rest = argv[2], argv[3:]
        return [sys.executable, "-m", module, *rest, *SMOKE.get(module, [])]
    script, rest = argv[1], argv[2:]
    # The tools that made the shipped files write beside them by default; send their output to the
    # scratch folder instead, so that a README command can never rewrite a shipped file and the
    # commands after it still start from the real base model and tokenizer.
    if script == "data/tokenizer/train_bpe.py":
        rest = rest + ["--out", str(scratch / "tokenizer.tiktoken")]
    if script == "data/base/pretrain.py" and "--export=data/base/base.pt" in rest:
        rest = rest + [f"--export={scratch / 'base.pt'}"]
    return [sys.executable, script, *rest, *SMOKE.get(script, [])]


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path):
    scratch = tmp_path / "work"
    scratch.mkdir()
    for name in ("train_warmup.py", "train_ppo.py", "evaluate.py", "pyproject.toml"):
        shutil.copy(REPO / name, scratch / name)
    # The package, the tools and the tests too: `tools/exercises.py make` copies the project it sits in.
    for folder in ("reft_mini", "tools", "tests"):
        shutil.copytree(REPO / folder, scratch / folder, ignore=shutil.ignore_patterns("__pycache__"))
    # data/ with its tools (pretrain.py imports data/synthetic/synthetic.py), not the generated splits.
    shutil.copytree(REPO / "data", scratch / "data",
                    ignore=shutil.ignore_patterns("*.jsonl", "meta.json", "__pycache__"))
    env = {**os.environ, "REFT_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(scratch)}
    cwd, last_block = scratch, None
    ran = 0
    for block, line in bash_lines():
        if block != last_block:                 # each ```bash block starts from the project's root
            cwd, last_block = scratch, block
        argv = shlex.split(line)
        if argv[0] == "cd":
            cwd = (cwd / argv[1]).resolve()
            continue
        cmd = smoke_command(argv, tmp_path, cwd)
        if cmd is None:
            continue
        p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        in_student_copy = re.search(r"exercises(\.py)? check", line) is not None and cwd != scratch
        if in_student_copy:
            # A fresh student copy has every hole open: the check must fail and say what to do.
            assert p.returncode == 1 and "not implemented" in (p.stdout + p.stderr).lower(), line
        else:
            assert p.returncode == 0, f"README command failed: {line}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
        ran += 1
    assert ran >= 10


def test_readme_starts_with_the_two_setup_commands():
    first = re.search(r"```bash\n(.*?)```", README, re.S).group(1).strip().splitlines()
    assert len(first) == 2
    assert "train_warmup.py" in first[0] and "train_ppo.py" in first[0]
    assert first[1].endswith("pytest") and '".[test]"' in first[1]
    ci = (REPO / ".ci" / "run").read_text()
    assert 'pip install -q -e ".[test]"' in ci and "pytest" in ci


def test_every_local_link_and_image_exists():
    for target in re.findall(r"\]\(([^)\s]+)\)", README):
        if re.match(r"[a-z]+://|#|mailto:", target):
            continue
        assert (REPO / target.split("#")[0]).exists(), f"README links to missing {target}"


def test_every_command_is_covered_by_the_smoke_mapping(tmp_path):
    for _, line in bash_lines():
        argv = shlex.split(line)
        if argv[0] != "cd":
            smoke_command(argv, tmp_path)  # raises for a command the smoke test would not know how to run
