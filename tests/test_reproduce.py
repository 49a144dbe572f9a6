"""tools/reproduce.py: README's demo over seeds, as one command that prints the table README shows."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_reproduce_runs_each_seed_and_writes_the_table(tmp_path):
    out = tmp_path / "repro"
    cmd = [sys.executable, "tools/reproduce.py", "--seeds=1,2", "--quick", "--limit=3", f"--out={out}"]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    result = json.loads((out / "results.json").read_text())
    rows = result["seeds"]
    diff, lo, hi = result["mean_diff_ci95"]
    assert lo <= diff <= hi and abs(diff - sum(r["diff"] for r in rows) / 2) < 1e-9
    assert [r["seed"] for r in rows] == [1, 2]
    for r in rows:
        assert r["n"] == 3 and 0 <= r["warmup"] <= 1 and 0 <= r["ppo"] <= 1 and r["ppo_iters"] == 2
        assert r["ci95"][0] <= r["diff"] <= r["ci95"][1]
    table = (out / "results.md").read_text()
    assert "| mean |" in table and table in p.stdout
    # A second call reads the finished seeds back instead of training again (an interrupted run resumes).
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.count("already done") == 2


def test_bad_seeds_are_a_one_line_usage_error():
    p = subprocess.run([sys.executable, "tools/reproduce.py", "--seeds=a,b"], cwd=REPO, capture_output=True,
                       text=True)
    assert p.returncode == 2 and "expected comma-separated whole numbers" in p.stderr
