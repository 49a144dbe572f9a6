"""The benchmark (tools/bench.py) runs end to end in --quick mode and writes every row as a finite number.

It checks that the benchmark works, not that the targets are met: quick sizes are too small for the
ratios to mean much, and timings depend on the machine.
"""
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import DATA_DIR

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_benchmark_writes_every_row_with_finite_numbers(tmp_path):
    out = tmp_path / "bench.json"
    # As the README runs it: a script, from the repository root.
    # The real data sets' folder comes from the tests' one lookup (conftest.py), passed as REFT_DATA_DIR.
    env = {**os.environ, "REFT_DATA_DIR": str(DATA_DIR)}
    proc = subprocess.run([sys.executable, "tools/bench.py", "--quick", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "met?" in proc.stdout                       # the table was printed
    result = json.loads(out.read_text())
    assert result["quick"] is True
    for key in ("cpu", "cores", "torch", "threads"):
        assert result["machine"][key], f"machine info {key} missing"

    rows = {r["id"]: r for r in result["rows"]}
    for r in result["rows"]:
        assert math.isfinite(r["value"]), f"{r['id']} = {r['value']}"
        assert r["met"] in (True, False, None)
    # Rows that must always be there: log-prob time and memory at both vocabularies (eager at least),
    # KV cache, MFU, training tokens/s and the PPO breakdown whose shares add up to one.
    expected = ["kv_cache_speedup", "mfu", "train_tokens_per_s_eager", "ppo_iteration_s", "ppo_share_sampling",
                "ppo_share_scoring", "ppo_share_evaluating", "ppo_share_learning", "rollout_drop_finished_speed",
                "rollout_prompt_once_learner_speed", "rl_samples_per_min_today", "rl_samples_per_min_default",
                "rl_samples_per_min_ratio", "rl_samples_per_min_grpo", "rl_samples_per_min_drgrpo"]
    for V in (50257, 2048):
        for mode in ("ent", "logp"):
            expected += [f"logprob_V{V}_{mode}_eager_time", f"logprob_V{V}_{mode}_eager_memory"]
    if importlib.util.find_spec("transformers") is not None:
        expected += ["hf_train_speed", "hf_sample_speed"]
    if (DATA_DIR / "mwp_ReFT" / "svamp_python_sdp.json").is_file():
        expected += ["program_us_cold", "program_us_cached"]
    missing = [k for k in expected if k not in rows]
    assert not missing, f"rows missing from the JSON: {missing}"
    shares = sum(rows[f"ppo_share_{p}"]["value"] for p in ("sampling", "scoring", "evaluating", "learning"))
    assert shares == pytest.approx(1.0, abs=1e-6)
    assert rows["kv_cache_speedup"]["extra"]["same_tokens"], "cached and uncached greedy decoding disagree"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when no GPU is visible")
def test_device_cuda_without_a_gpu_is_a_clean_usage_error(capsys):
    import bench   # tools/ is on pytest's pythonpath
    with pytest.raises(SystemExit) as e:
        bench.main(["--device=cuda", "--quick"])
    assert e.value.code == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err
