"""tools/gpu_check.py: the one command that checks the GPU path. Here it runs on the CPU (--device=cpu
--quick: the same steps at toy sizes), and its checks are tested on made-up results: one bad number must
turn the exit status non-zero and name the failed check.
"""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gpu_check   # tools/ is on pytest's pythonpath (pyproject.toml)

REPO = Path(__file__).resolve().parents[1]


def good_summary() -> dict:
    """What a healthy run collects (the numbers the checks read)."""
    return {"numbers": {"ppo[0].pg_loss": 0.1, "bench: x": 2.0}, "steps_not_ok": [], "compile": True,
            "compile_problems": [], "first_ratio_mean": 1.003, "ppo_losses": [0.1, -0.2, 0.05, 0.3],
            "bf16_expected": True, "bf16_dtype": "bfloat16", "bf16_supported": True, "kernel_autocast_err": 2e-6,
            "warmup_acc": 0.40, "acc_before": 0.40, "acc_after": 0.38, "eval_greedy_warmup": 0.40,
            "eval_greedy_ppo": 0.385, "eval_questions": 200}


def failed(summary: dict) -> list[str]:
    return [c["name"] for c in gpu_check.check_results(summary) if not c["ok"]]


def test_a_healthy_run_passes_every_check():
    assert failed(good_summary()) == []


@pytest.mark.parametrize("change, check", [
    ({"first_ratio_mean": 1.2}, "first PPO ratio near 1"),
    ({"first_ratio_mean": None}, "first PPO ratio near 1"),               # not measured is not a pass
    ({"ppo_losses": [0.1, float("nan")]}, "PPO losses finite"),
    ({"numbers": {"bench: x": float("inf")}}, "every number finite"),
    ({"bf16_dtype": "float32"}, "bf16 autocast active"),                  # autocast silently off on CUDA
    ({"kernel_autocast_err": 0.07}, "log-probs float32 under autocast"),  # the kernel's logits in bf16
    ({"compile_problems": ["train_warmup.py: torch.compile failed"]}, "torch.compile without fallback"),
    ({"acc_after": 0.25, "eval_greedy_ppo": 0.25}, "held-out accuracy kept"),   # more than 10 points lost
    ({"eval_greedy_ppo": 0.30}, "evaluate.py reproduces the scripts' accuracy"),
    ({"steps_not_ok": ["bench: ppo (skipped: budget)"]}, "every step ran"),
])
def test_each_check_fails_on_its_bad_number(change, check):
    assert failed({**good_summary(), **change}) == [check]


def test_a_failed_check_makes_the_exit_status_non_zero_and_is_named(tmp_path, capsys):
    result = {"command": "python tools/gpu_check.py", "quick": False, "seconds": 12.0,
              "environment": {"device_name": "test GPU", "torch": "x", "bf16": True, "compile": True},
              "steps": [{"name": "PPO (train_ppo.py)", "seconds": 3.0, "status": "ok", "note": ""}],
              "measurements": [{"section": "PPO", "name": "mean PPO ratio", "value": 1.2, "text": "1.2000",
                                "detail": ""}],
              "summary": {**good_summary(), "first_ratio_mean": 1.2}}
    assert gpu_check.finish(result, tmp_path) == 1
    out = capsys.readouterr()
    assert "| first PPO ratio near 1 | **FAIL** |" in out.out
    assert "FAILED checks: first PPO ratio near 1" in out.err
    written = json.loads((tmp_path / "gpu_check.json").read_text())
    assert written["passed"] is False
    assert (tmp_path / "gpu_check.md").read_text().startswith("**GPU check**")

    result["summary"] = good_summary()
    assert gpu_check.finish(result, tmp_path) == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when no GPU is visible")
def test_default_device_cuda_without_a_gpu_says_so(capsys):
    with pytest.raises(SystemExit) as e:
        gpu_check.main([])
    assert e.value.code == 2
    assert "--device=cpu" in capsys.readouterr().err


@pytest.mark.slow
def test_cpu_quick_run_passes_and_writes_the_table(tmp_path):
    # As a user runs it: a script, from the repository root.
    out = tmp_path / "gpu_check"
    proc = subprocess.run([sys.executable, "tools/gpu_check.py", "--device=cpu", "--quick", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    assert "| check | result | seen | passes when |" in proc.stdout      # the table was printed
    assert "all checks passed" in proc.stdout
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["passed"] and all(c["ok"] for c in result["checks"])
    assert result["environment"]["bf16"] is False and result["environment"]["compile"] is False
    assert [s["status"] for s in result["steps"]] == ["ok"] * len(result["steps"])
    names = {m["section"] + ": " + m["name"] for m in result["measurements"]}
    for expected in ("PPO: held-out greedy accuracy before -> after", "PPO: peak memory", "warm-up: peak memory"):
        assert expected in names, f"{expected} missing from {sorted(names)}"
    # Every bench section contributed rows, and all the numbers are finite.
    assert {m["section"] for m in result["measurements"]} >= {"bench logprob", "bench kv", "bench train", "bench ppo"}
    assert all(math.isfinite(m["value"]) for m in result["measurements"] if m["value"] is not None)
    assert 0.95 <= result["summary"]["first_ratio_mean"] <= 1.05
