"""train_warmup.py end to end: runs, resumes exactly, survives SIGKILL, matches under torchrun, fails politely."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY = ["--model=tiny", "--init=none", "--cot=nl", "--max_train=96", "--batch_size=8", "--eval_questions=4", "--max_new_tokens=8",
        "--eval_every=1000", "--progress=false", "--epochs=2"]


def run(args, cwd=REPO, check=True, env_extra=None, launcher=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "REFT_THREADS": "1", **(env_extra or {})}
    cmd = (launcher or [sys.executable]) + ["train_warmup.py", *args]
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")
    return p


def losses(out_dir):
    rows = [json.loads(x) for x in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.mark.slow
def test_resumed_run_continues_with_exactly_the_losses_of_an_uninterrupted_one(tmp_path):
    run(TINY + ["--max_steps=8", f"--out_dir={tmp_path / 'full'}"])
    run(TINY + ["--max_steps=4", f"--out_dir={tmp_path / 'cut'}"])
    ck = torch.load(tmp_path / "cut" / "latest.pt", weights_only=True)
    assert ck["step"] == 4 and ck["kind"] == "warmup" and "optimizer" in ck and "rng" in ck
    run(TINY + ["--max_steps=8", "--resume", f"--out_dir={tmp_path / 'cut'}"])
    full, cut = losses(tmp_path / "full"), losses(tmp_path / "cut")
    assert sorted(full) == sorted(cut) == list(range(1, 9))
    for step in range(1, 9):
        assert cut[step] == pytest.approx(full[step], abs=1e-6), f"step {step}"


@pytest.mark.slow
def test_an_epoch_writes_its_own_checkpoint_and_a_best_one(tmp_path):
    run(["--model=tiny", "--init=none", "--cot=nl", "--max_train=32", "--batch_size=16", "--eval_questions=2", "--max_new_tokens=4",
         "--progress=false", "--epochs=2", f"--out_dir={tmp_path}"])
    names = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert names == ["best.pt", "epoch1.pt", "epoch2.pt", "latest.pt"]
    assert (tmp_path / "metrics.jsonl").exists()


@pytest.mark.slow
def test_torchrun_with_two_processes_matches_one_process_with_the_same_global_batch(tmp_path):
    run(TINY + ["--max_steps=3", f"--out_dir={tmp_path / 'one'}"])
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517"]
    run(TINY + ["--max_steps=3", f"--out_dir={tmp_path / 'two'}"], launcher=launcher)
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert sorted(one) == sorted(two) == [1, 2, 3]
    for step in one:
        assert abs(one[step] - two[step]) < 1e-4, f"step {step}: {one[step]} vs {two[step]}"


def test_sigkill_during_a_checkpoint_write_leaves_the_previous_checkpoint_intact(tmp_path):
    target = tmp_path / "latest.pt"
    marker = tmp_path / "writing"
    script = f"""
import time, torch
from reft_mini.checkpoint import save_checkpoint
save_checkpoint({{"step": 1, "w": torch.ones(3)}}, {str(target)!r})
real_save = torch.save
def slow_save(obj, f):
    real_save(obj, f)           # the bytes are half way to disk...
    open({str(marker)!r}, "w").close()
    time.sleep(60)              # ...when the process is killed
torch.save = slow_save
save_checkpoint({{"step": 2, "w": torch.zeros(3)}}, {str(target)!r})
"""
    p = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    deadline = time.time() + 60
    while not marker.exists():
        assert time.time() < deadline and p.poll() is None, "child never reached the write"
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    from reft_mini.checkpoint import load_checkpoint
    ck = load_checkpoint(target)
    assert ck["step"] == 1 and torch.equal(ck["w"], torch.ones(3))
    assert list(tmp_path.glob("latest.pt.tmp.*")), "the interrupted write should only have touched a temp file"


@pytest.mark.parametrize("args, message", [
    (["--bogus=1"], "unknown option --bogus"),
    (["--epochs=two"], "expected a value of type int"),
    (["--dataset=gsm8k", "--data_path=/nonexistent/gsm8k"], "/nonexistent/gsm8k"),
    (["--cot=latex"], "--cot=latex"),
    (["--init=/nonexistent/ckpt.pt"], "not found"),
])
def test_user_errors_are_one_line_without_a_traceback(args, message):
    p = run(args + ["--progress=false"], check=False)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_resuming_with_another_model_shape_is_refused(tmp_path):
    run(TINY + ["--max_steps=1", f"--out_dir={tmp_path}"])
    p = run(TINY + ["--model=demo", "--resume", f"--out_dir={tmp_path}"], check=False)
    assert p.returncode == 2 and "--model=demo (was tiny)" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.slow
def test_a_diverging_loss_stops_with_advice(tmp_path):
    p = run(TINY + ["--max_steps=30", "--lr=1e6", "--grad_clip=1e9", f"--out_dir={tmp_path}"], check=False)
    assert p.returncode == 2 and "lower --lr" in p.stderr
