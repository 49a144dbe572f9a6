"""data/base/pretrain.py (stage 0, the base model): a deterministic text stream, exact resumes, the float16 export."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import pretrain  # data/base/pretrain.py
from reft_mini.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from reft_mini.model import GPT, config_from_preset
from reft_mini.tokenizer import get_tokenizer

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "data" / "base" / "pretrain.py"
TINY = ["--model=tiny", "--steps=12", "--batch_size=4", "--row_len=64", "--eval_every=1000", "--save_every=2",
        "--eval_questions=2", "--max_new_tokens=8", "--minutes=none", "--progress=false"]


def run(args, check=True, **popen):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "REFT_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), *args]
    if popen:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")
    return p


def losses(out_dir):
    rows = [json.loads(x) for x in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_the_text_stream_depends_only_on_seed_and_step():
    enc = get_tokenizer()
    rows = pretrain.pretraining_rows(enc, 1337, 5, 3, 64)
    assert rows == pretrain.pretraining_rows(enc, 1337, 5, 3, 64)       # a resumed run sees the same batch
    assert rows != pretrain.pretraining_rows(enc, 1337, 6, 3, 64)       # fresh text every step
    assert rows != pretrain.pretraining_rows(enc, 1338, 5, 3, 64)
    assert len(rows) == 3
    for ids, mask in rows:
        assert len(ids) == len(mask) == 64
        assert mask == [0] + [1] * 63                                     # every predicted token counts
    stream = [t for ids, _ in rows for t in ids]
    assert enc.eot_token in stream                                        # texts are packed, EOT-separated


def test_defaults_are_the_recipe_of_the_shipped_base_model():
    shipped = load_checkpoint(REPO / "data" / "base" / "base.pt")
    assert shipped["kind"] == "base" and shipped["step"] == 2369                # README and the docstring say so
    ran, ours = shipped["config"], pretrain.Config()
    for key in ("model", "batch_size", "row_len", "steps", "lr", "warmup_frac", "schedule", "min_lr_frac",
                "weight_decay", "grad_clip", "minutes", "seed", "cot", "eval_questions", "max_new_tokens"):
        assert getattr(ours, key) == ran[key], key
    assert shipped["model_config"]["vocab_size"] == get_tokenizer().n_vocab     # made with the shipped tokenizer


def test_export_writes_float16_weights_that_reload_with_the_same_logits(tmp_path):
    torch.manual_seed(0)
    model = GPT(config_from_preset("tiny", vocab_size=64))
    opt = torch.optim.AdamW(model.parameters())
    model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    opt.step()
    save_checkpoint({"kind": "base", "model_config": dataclasses.asdict(model.config), "model": model.state_dict(),
                     "optimizer": opt.state_dict(), "rng": {"torch": torch.get_rng_state()}, "step": 7,
                     "config": {"cot": "nl"}, "tokenizer": "reft_mini"}, tmp_path / "full.pt")
    pretrain.export_weights(tmp_path / "full.pt", tmp_path / "base.pt")
    slim = load_checkpoint(tmp_path / "base.pt")
    assert "optimizer" not in slim and "rng" not in slim and slim["step"] == 7 and slim["kind"] == "base"
    assert not any(k.startswith("value_head") for k in slim["model"])  # PPO adds a fresh critic
    assert all(v.dtype == torch.float16 for v in slim["model"].values() if v.is_floating_point())
    assert (tmp_path / "base.pt").stat().st_size < (tmp_path / "full.pt").stat().st_size / 3
    reloaded = model_from_checkpoint(slim).eval()
    assert next(reloaded.parameters()).dtype == torch.float32           # back to float32 on loading
    x = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        want = model.eval()(x) @ model.lm_weight().T
        got = reloaded(x) @ reloaded.lm_weight().T
    torch.testing.assert_close(got, want, atol=2e-2, rtol=1e-2)           # float16 rounding only


@pytest.mark.parametrize("args, message", [
    (["--bogus=1"], "unknown option --bogus"),
    (["--steps=many"], "expected a value of type int"),
    (["--cot=latex"], "--cot=latex"),
])
def test_user_errors_are_one_line_without_a_traceback(args, message):
    p = run(args + ["--progress=false"], check=False)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_resumed_run_continues_with_exactly_the_losses_of_an_uninterrupted_one(tmp_path):
    run(TINY + ["--max_steps=6", f"--out_dir={tmp_path / 'full'}"])
    run(TINY + ["--max_steps=3", f"--out_dir={tmp_path / 'cut'}"])
    ck = torch.load(tmp_path / "cut" / "latest.pt", weights_only=True)
    assert ck["step"] == 3 and ck["kind"] == "base" and "optimizer" in ck and "rng" in ck
    run(TINY + ["--max_steps=6", "--resume", f"--out_dir={tmp_path / 'cut'}"])
    full, cut = losses(tmp_path / "full"), losses(tmp_path / "cut")
    assert sorted(full) == sorted(cut) == list(range(1, 7))
    for step in range(1, 7):
        assert cut[step] == pytest.approx(full[step], abs=1e-6), f"step {step}"


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_that_resume_finishes(tmp_path):
    p = run(TINY + ["--steps=100000", f"--out_dir={tmp_path}"], popen=True)
    deadline = time.time() + 300
    while not (tmp_path / "metrics.jsonl").exists() or not (tmp_path / "metrics.jsonl").read_text().strip():
        assert time.time() < deadline and p.poll() is None, p.communicate()
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr
    assert "interrupted at step" in stdout and "--resume" in stdout
    step = torch.load(tmp_path / "latest.pt", weights_only=True)["step"]
    assert step >= 1 and max(losses(tmp_path)) == step
    run(TINY + ["--steps=100000", f"--max_steps={step + 2}", "--resume", f"--out_dir={tmp_path}"])
    assert sorted(losses(tmp_path)) == list(range(1, step + 3))


@pytest.mark.slow
def test_a_finished_run_evaluates_exports_and_the_warmup_starts_from_it(tmp_path):
    out = tmp_path / "base"
    p = run(TINY + ["--steps=4", "--eval_every=2", f"--out_dir={out}", f"--export={tmp_path / 'base.pt'}"])
    assert "exported" in p.stdout
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval_loss" in r] == [2, 4]
    assert (out / "latest.pt").exists()
    slim = load_checkpoint(tmp_path / "base.pt")
    assert slim["kind"] == "base" and slim["step"] == 4 and "optimizer" not in slim
    assert all(v.dtype == torch.float16 for v in slim["model"].values() if v.is_floating_point())
    # Stage 1 takes it as its starting point, as it takes the shipped data/base/base.pt.
    warm = subprocess.run([sys.executable, "train_warmup.py", f"--init={tmp_path / 'base.pt'}", "--cot=nl", "--max_steps=1", "--max_train=96", "--batch_size=8", "--eval_questions=2",
                           "--max_new_tokens=4", "--progress=false", f"--out_dir={tmp_path / 'warmup'}"],
                          cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1", "REFT_THREADS": "1"},
                          capture_output=True, text=True, timeout=600)
    assert warm.returncode == 0, warm.stderr
