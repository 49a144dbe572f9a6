"""reft_walkthrough.ipynb: committed without outputs, its prose states no numbers of its own, and its code cells run
top to bottom in one namespace (REFT_NOTEBOOK_FAST=1, as CI) with nothing but the standard library's json: no jupyter."""
import json
import re
import shutil
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "reft_walkthrough.ipynb"


def load() -> dict:
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))


def cells(kind: str) -> list[str]:
    return ["".join(c["source"]) for c in load()["cells"] if c["cell_type"] == kind]


def runnable(source: str) -> str:
    """A code cell as plain Python: IPython's `!shell` and `%magic` lines become `pass` (same indentation)."""
    return "\n".join(re.sub(r"^(\s*)[!%].*$", r"\1pass", line) for line in source.split("\n"))


def test_notebook_is_nbformat_4_with_every_output_cleared():
    nb = load()
    assert nb["nbformat"] == 4
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "the notebook has no code cell"
    for i, c in enumerate(code):
        assert c["outputs"] == [] and c["execution_count"] is None, f"code cell {i} was committed with its outputs"


def test_first_code_cell_sets_fast_mode_and_guards_the_colab_install():
    first = cells("code")[0]
    assert 'FAST = os.environ.get("REFT_NOTEBOOK_FAST") == "1"' in first
    assert 'if "google.colab" in sys.modules' in first


def test_markdown_states_no_percentages():
    # Every number the prose talks about comes from an output above it; a percentage typed into the markdown
    # would go stale the first time someone reruns a cell.
    for text in cells("markdown"):
        found = re.findall(r"\d+(?:\.\d+)?\s?%", text)
        assert not found, f"markdown states {found}; print the number in a code cell and refer to it instead:\n{text}"


def test_code_cells_compile():
    for i, source in enumerate(cells("code")):
        compile(runnable(source), f"{NOTEBOOK.name}, code cell {i}", "exec")


def test_notebook_runs_top_to_bottom_in_fast_mode(monkeypatch):
    # A 3-step warm-up, sampling, one PPO step by hand and a 2-iteration PPO run: a few seconds on one thread. One thread,
    # as the README advises for two jobs on two cores: with two, a busy machine made the same run take minutes.
    monkeypatch.setenv("REFT_NOTEBOOK_FAST", "1")
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "path", list(sys.path))                 # the set-up cell prepends the repository
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    namespace = {"__name__": "reft_walkthrough"}
    try:
        for i, source in enumerate(cells("code")):
            try:
                exec(compile(runnable(source), f"{NOTEBOOK.name}, code cell {i}", "exec"), namespace)
            except Exception as e:  # noqa: BLE001 - name the cell, keep the traceback
                raise AssertionError(f"code cell {i} raised {type(e).__name__}: {e}\n--- cell {i} ---\n{source}") from e
        out = Path(namespace["OUT"])
        assert REPO not in out.parents, f"FAST mode wrote into the repository ({out}), not a temporary folder"
        assert (out / "ppo" / "metrics.jsonl").is_file()
    finally:
        torch.set_num_threads(threads)
        if "OUT" in namespace and REPO not in Path(namespace["OUT"]).parents:
            shutil.rmtree(namespace["OUT"], ignore_errors=True)
