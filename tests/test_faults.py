"""Faults: every command-line mistake is one line and exit status 2 before anything is written; a killed run
resumes from its last periodic checkpoint; a diverging run stops without saving NaN weights."""
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reft_mini import config
from reft_mini.checkpoint import first_non_finite, load_checkpoint, remove_stale_tmp, resume_checkpoint, save_checkpoint
from reft_mini.config import UserError, parse_config

import pretrain  # noqa: E402  (data/base/pretrain.py)
import train_ppo  # noqa: E402
import train_warmup  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("evaluate_for_fault_tests", REPO / "evaluate.py")
evaluate = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = evaluate
_spec.loader.exec_module(evaluate)

SCRIPTS = {"train_warmup.py": (train_warmup, None), "train_ppo.py": (train_ppo, None),
           "evaluate.py": (evaluate, "checkpoints"), "data/base/pretrain.py": (pretrain, None)}

# Small enough that a mistake the checks missed would still end in seconds (and fail the test, not hang it).
BASE = {
    "train_warmup.py": ["--max_steps=1", "--max_train=16", "--batch_size=4", "--eval_questions=2", "--max_new_tokens=4",
                        "--progress=false", "--out_dir={out}"],
    "train_ppo.py": ["--init={ckpt}", "--iters=1", "--questions_per_iter=2", "--samples_per_question=1",
                     "--max_new_tokens=4", "--eval_questions=1", "--minutes=none", "--progress=false",
                     "--out_dir={out}"],
    "evaluate.py": ["--limit=1", "--k=", "--n_boot=10", "--progress=false", "--out={out}"],
    "data/base/pretrain.py": ["--model=tiny", "--row_len=64", "--steps=1", "--batch_size=2", "--eval_questions=1",
                              "--max_new_tokens=4", "--minutes=none", "--progress=false", "--out_dir={out}"],
}
FRESH = ["--model=tiny", "--init=none", "--cot=nl"]  # the warm-up fixture run: a fresh tiny model

W, P, E, S = "train_warmup.py", "train_ppo.py", "evaluate.py", "data/base/pretrain.py"
MISTAKES = [
    # --- the warm-up: counts, rates, choices, combinations, files
    (W, ["--batch_size=0"], "--batch_size=0: must be at least 1"),
    (W, ["--grad_accum=0"], "--grad_accum=0: must be at least 1"),
    (W, ["--batch_size=6", "--grad_accum=4"], "must divide by --grad_accum=4"),
    (W, ["--eval_every=0"], "--eval_every=0: must be at least 1"),
    (W, ["--save_every=0"], "--save_every=0: must be at least 1"),
    (W, ["--epochs=0"], "--epochs=0: must be at least 1"),
    (W, ["--max_steps=-1"], "--max_steps=-1: must be at least 1"),
    (W, ["--minutes=-1"], "--minutes=-1.0: must be above 0"),
    (W, ["--lr=-1"], "--lr=-1.0: must be above 0"),
    (W, ["--lr=nan"], "--lr=nan: expected a finite number"),
    (W, ["--grad_clip=inf"], "--grad_clip=inf: expected a finite number"),
    (W, ["--warmup_frac=1.5"], "--warmup_frac=1.5: must be between 0 and 1"),
    (W, ["--min_lr_frac=-0.1"], "must be between 0 and 1"),
    (W, ["--weight_decay=-1"], "--weight_decay=-1.0: must be at least 0"),
    (W, ["--dropout=1", "--init=none"], "--dropout=1.0: must be below 1"),
    (W, ["--seed=-1"], "--seed=-1: must be between 0 and"),
    (W, ["--max_new_tokens=-1"], "--max_new_tokens=-1: must be at least 1"),
    (W, ["--eval_questions=0"], "--eval_questions=0: must be at least 1"),
    (W, ["--max_train=-5"], "--max_train=-5: must be at least 1"),
    (W, ["--max_train=0"], "--max_train=0: must be at least 1"),
    (W, ["--schedule=bogus"], "--schedule=bogus: choose one of cosine, linear, constant"),
    (W, ["--model=huge", "--init=none"], "--model=huge: choose one of tiny, demo"),
    (W, ["--tokenizer=foo"], "--tokenizer=foo: choose one of reft_mini, gpt2"),
    (W, ["--device=tpu"], "--device=tpu: choose auto, cpu, cuda"),
    (W, ["--cot=latex"], "--cot=latex: choose one of nl, program"),
    (W, ["--dataset=nope"], "--dataset=nope: choose one of synthetic"),
    (W, ["--epochs=two"], "--epochs=two: expected a value of type int"),
    (W, ["--progress=maybe"], "expected a value of type bool"),
    (W, ["--bogus=1"], "unknown option --bogus"),
    (W, ["--model=tiny"], "--model only shape a fresh model, but --init=auto"),
    (W, ["--dropout=0.1", "--init={ckpt}"], "--dropout only shape a fresh model"),
    (W, ["--init={emptydir}"], "config.json"),
    (W, ["--init=/nonexistent/ckpt.pt"], "--init=/nonexistent/ckpt.pt: not found"),
    (W, ["--init={file}", "--max_train=8"], "could not be read"),
    (W, ["--data_path=/nonexistent/gsm8k", "--dataset=gsm8k"], "--data_path=/nonexistent/gsm8k: not found"),
    (W, ["--tokenizer_path=/nonexistent/gpt2"], "--tokenizer_path=/nonexistent/gpt2: not found"),
    (W, ["--out_dir={file}"], "that is a file, not a folder"),
    (W, ["--out_dir={file}/sub"], "is a file, so no folder can be made below it"),
    (W, ["--out_dir=/proc/reft_mini_out"], "cannot write in /proc"),
    (W, ["--out_dir="], "--out_dir is empty"),
    (W, ["--init={ckpt}", "--out_dir={warm}"], "holds the --init checkpoint"),
    (W, ["--resume"], "--resume: no checkpoint to continue"),
    (W, ["--resume", "--out_dir={ppo}"], "written by PPO (train_ppo.py), not the warm-up"),
    (W, FRESH + ["--resume", "--out_dir={warm}", "--lr=0.5", "--seed=1"], "--lr=0.5 (was 0.002), --seed=1 (was 1337)"),
    # --- PPO
    (P, ["--questions_per_iter=0"], "--questions_per_iter=0: must be at least 1"),
    (P, ["--samples_per_question=0"], "--samples_per_question=0: must be at least 1"),
    (P, ["--temperature=0"], "--temperature=0.0: must be above 0"),
    (P, ["--ppo_epochs=0"], "--ppo_epochs=0: must be at least 1"),
    (P, ["--minibatch_size=0"], "--minibatch_size=0: must be at least 1"),
    (P, ["--max_new_tokens=0"], "--max_new_tokens=0: must be at least 1"),
    (P, ["--lr=-1"], "--lr=-1.0: must be above 0"),
    (P, ["--value_lr=nan"], "--value_lr=nan: expected a finite number"),
    (P, ["--kl_coef=-0.1"], "--kl_coef=-0.1: must be at least 0"),
    (P, ["--gamma=0"], "--gamma=0.0: must be above 0"),
    (P, ["--lam=2"], "--lam=2.0: must be between 0 and 1"),
    (P, ["--clip=0"], "--clip=0.0: must be above 0"),
    (P, ["--partial_reward=1.5"], "--partial_reward=1.5: must be below 1"),
    (P, ["--iters=0"], "--iters=0: must be at least 1"),
    (P, ["--minutes=0"], "--minutes=0.0: must be above 0"),
    (P, ["--eval_every=0"], "--eval_every=0: must be at least 1"),
    (P, ["--eval_questions=0"], "--eval_questions=0: must be at least 1"),
    (P, ["--save_every=0"], "--save_every=0: must be at least 1"),
    (P, ["--value_warmup_iters=-1"], "--value_warmup_iters=-1: must be at least 0"),
    (P, ["--cot=latex"], "--cot=latex: choose one of nl, program"),
    (P, ["--device=tpu"], "--device=tpu: choose auto"),
    (P, ["--init=/nonexistent/ckpt.pt"], "--init=/nonexistent/ckpt.pt: checkpoint not found"),
    (P, ["--init={file}"], "could not be read"),
    (P, ["--out_dir={warm}"], "holds the --init checkpoint"),
    (P, ["--resume", "--out_dir={warmcopy}"], "written by the warm-up (train_warmup.py), not PPO"),
    (P, ["--resume", "--out_dir={ppo}", "--lr=0.5"], "--lr=0.5 (was 0.0001)"),
    (P, ["--out_dir={file}"], "that is a file, not a folder"),
    # --- evaluate.py
    (E, [], "no checkpoint given"),
    (E, ["{ckpt}", "--n_boot=0"], "--n_boot=0: must be at least 1"),
    (E, ["{ckpt}", "--limit=0"], "--limit=0: must be at least 1"),
    (E, ["{ckpt}", "--k=0"], "every k must be at least 1"),
    (E, ["{ckpt}", "--k=a,b"], "expected comma-separated whole numbers"),
    (E, ["{ckpt}", "--k=1,8", "--samples=4"], "larger than the number of samples"),
    (E, ["{ckpt}", "--samples=-1"], "--samples=-1: must be at least 0"),
    (E, ["{ckpt}", "--temperature=-1"], "--temperature=-1.0: must be above 0"),
    (E, ["{ckpt}", "--batch_size=0"], "--batch_size=0: must be at least 1"),
    (E, ["{ckpt}", "--max_new_tokens=0"], "--max_new_tokens=0: must be at least 1"),
    (E, ["{ckpt}", "--dataset=nope"], "--dataset=nope: choose one of"),
    (E, ["{ckpt}", "--splits=,"], "--splits is empty"),
    (E, ["{ckpt}", "--device=tpu"], "--device=tpu"),
    (E, ["{ckpt}", "--out={file}"], "that is a file, not a folder"),
    (E, ["/nonexistent/a.pt"], "not found"),
    # --- stage 0
    (S, ["--steps=0"], "--steps=0: must be at least 1"),
    (S, ["--row_len=1"], "--row_len=1: must be at least 2"),
    (S, ["--row_len=1000"], "longer than the tiny model's context (128 tokens)"),
    (S, ["--batch_size=0"], "--batch_size=0: must be at least 1"),
    (S, ["--lr=inf"], "expected a finite number"),
    (S, ["--model=huge"], "--model=huge: choose one of"),
    (S, ["--export={emptydir}"], "is a folder"),
    (S, ["--resume"], "--resume: no checkpoint to continue"),
    (S, ["--resume", "--out_dir={warm}"], "written by the warm-up (train_warmup.py), not stage 0"),
]


def _run_main(script, argv):
    """The script's own entry point, in this process: parse (and validate), then main(), under main_guard."""
    module, positional = SCRIPTS[script]
    return config.main_guard(lambda: module.main(parse_config(module.Config, argv, prog=script, positional=positional,
                                                              validate=module.validate)))


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """A tiny warm-up run, a tiny PPO run from it, a copy of the warm-up folder, a plain file, an empty folder."""
    root = tmp_path_factory.mktemp("faults")
    fill = {"out": str(root / "unused")}
    warm, ppo = root / "warm", root / "ppo"
    _run_main(W, [a.format(out=warm) for a in BASE[W]] + FRESH)
    _run_main(P, [a.format(ckpt=warm / "latest.pt", out=ppo) for a in BASE[P]])
    shutil.copytree(warm, root / "warmcopy")
    (root / "file.txt").write_text("not a checkpoint\n")
    (root / "emptydir").mkdir()
    fill.update(root=root, warm=str(warm), ppo=str(ppo), ckpt=str(warm / "latest.pt"), warmcopy=str(root / "warmcopy"),
                file=str(root / "file.txt"), emptydir=str(root / "emptydir"))
    return fill


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else "folder"
            for p in root.rglob("*")}


def test_there_are_many_mistakes_over_every_script():
    assert len(MISTAKES) >= 40 and {script for script, _, _ in MISTAKES} == set(SCRIPTS)


@pytest.mark.parametrize("script, args, message", MISTAKES,
                         ids=[f"{s.split('/')[-1][:-3]}:{' '.join(a)[:40]}" for s, a, _ in MISTAKES])
def test_a_mistake_is_one_line_exit_status_2_and_nothing_written(script, args, message, places, capsys, tmp_path):
    fill = {**places, "out": str(tmp_path / "out")}
    argv = [a.format(**fill) for a in BASE[script] + args]
    before = _snapshot(places["root"]), _snapshot(tmp_path)
    with pytest.raises(SystemExit) as e:
        _run_main(script, argv)
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err
    assert (_snapshot(places["root"]), _snapshot(tmp_path)) == before, "a refused run wrote something"


@pytest.mark.parametrize("script, args", [
    (W, ["--batch_size=0"]), (P, ["--temperature=0", "--init={file}"]), (E, ["a.pt", "--n_boot=0"]),
    (S, ["--steps=0"])])
def test_the_real_entry_points_print_one_line_and_exit_with_status_2(script, args, places, tmp_path):
    argv = [a.format(**places) for a in args] + [f"--{'out' if script == E else 'out_dir'}={tmp_path / 'o'}"]
    p = subprocess.run([sys.executable, script, *argv], cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "REFT_THREADS": "1", "OMP_NUM_THREADS": "1"})
    assert p.returncode == 2 and p.stderr.startswith("error:") and "Traceback" not in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------ checkpoints

def test_save_checkpoint_refuses_non_finite_weights_and_keeps_the_old_file(tmp_path):
    save_checkpoint({"model": {"w": torch.ones(3)}, "step": 1}, tmp_path / "latest.pt")
    for bad in (float("nan"), float("inf")):
        with pytest.raises(UserError, match=r"model\.w is not a finite number"):
            save_checkpoint({"model": {"w": torch.tensor([1.0, bad])}, "step": 2}, tmp_path / "latest.pt")
    with pytest.raises(UserError, match=r"optimizer\.state\.0\.exp_avg"):
        save_checkpoint({"model": {}, "optimizer": {"state": {0: {"exp_avg": torch.tensor([float("nan")])}}}},
                        tmp_path / "latest.pt")
    assert load_checkpoint(tmp_path / "latest.pt")["step"] == 1
    assert first_non_finite({"model": {"w": torch.ones(2), "n": torch.tensor([3])}}) is None


def test_stale_temporary_files_of_dead_writers_are_removed_and_a_live_writers_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid now belongs to no process (the system may reuse it, but not this quickly)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / f"latest.pt.tmp.{dead.pid}").write_bytes(b"half")
        (tmp_path / f"epoch1.pt.tmp.{os.getpid()}").write_bytes(b"half")   # this process has saved nothing yet
        (tmp_path / f"latest.pt.tmp.{alive.pid}").write_bytes(b"being written")
        (tmp_path / "notes.tmp.txt").write_text("not ours")
        removed = remove_stale_tmp(tmp_path)
        assert sorted(p.name for p in removed) == sorted([f"latest.pt.tmp.{dead.pid}", f"epoch1.pt.tmp.{os.getpid()}"])
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"latest.pt.tmp.{alive.pid}", "notes.tmp.txt"])
    finally:
        alive.kill()
        alive.wait()


def _full(step, kind="warmup"):
    return {"kind": kind, "model": {"w": torch.full((2,), float(step))}, "optimizer": {}, "rng": {}, "config": {},
            "step": step}


def test_resume_picks_the_newest_checkpoint_that_loads_and_skips_a_broken_one(tmp_path, capsys):
    save_checkpoint(_full(4), tmp_path / "epoch1.pt")
    save_checkpoint(_full(6), tmp_path / "latest.pt")
    time.sleep(0.01)
    save_checkpoint(_full(8), tmp_path / "epoch2.pt")      # killed after the epoch file, before latest.pt
    save_checkpoint(_full(9), tmp_path / "best.pt")        # never a resume point
    path, ck = resume_checkpoint(tmp_path, "warmup", ("latest.pt", "epoch*.pt"))
    assert path.name == "epoch2.pt" and ck["step"] == 8
    (tmp_path / "epoch2.pt").write_bytes(b"truncated by a full disk")
    path, ck = resume_checkpoint(tmp_path, "warmup", ("latest.pt", "epoch*.pt"))
    assert path.name == "latest.pt" and ck["step"] == 6
    assert "note: skipped" in capsys.readouterr().out
    with pytest.raises(UserError, match="not PPO"):
        resume_checkpoint(tmp_path, "ppo", ("latest.pt",))
    with pytest.raises(UserError, match="no checkpoint to continue"):
        resume_checkpoint(tmp_path / "nothing", "warmup")


# ------------------------------------------------------------------------------------------ whole runs

TINY = ["--model=tiny", "--init=none", "--cot=nl", "--max_train=64", "--batch_size=8", "--eval_questions=2",
        "--max_new_tokens=8", "--progress=false"]
ENV = {**os.environ, "REFT_THREADS": "1", "OMP_NUM_THREADS": "1"}


def _rows(out_dir):
    return [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _script(name, *args, check=True):
    p = subprocess.run([sys.executable, name, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


@pytest.mark.slow
def test_a_sigkilled_warmup_resumes_from_its_last_periodic_checkpoint_and_ends_like_an_uninterrupted_run(tmp_path):
    # The questions of the 64 that fit the tiny model's context make a few steps per epoch; latest.pt every 3.
    args = TINY + ["--epochs=15", "--save_every=3", "--eval_every=1000"]
    _script("train_warmup.py", *args, f"--out_dir={tmp_path / 'full'}")
    total = max(r.get("step", 0) for r in _rows(tmp_path / "full"))
    per_epoch = total // 15
    assert per_epoch * 15 == total and per_epoch >= 3

    cut = tmp_path / "cut"
    p = subprocess.Popen([sys.executable, "train_warmup.py", *args, f"--out_dir={cut}"], cwd=REPO, env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not ((cut / "metrics.jsonl").exists() and any(r.get("step", 0) >= 10 for r in _rows(cut))):
        assert p.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)                          # no handler runs: nothing is saved on the way out
    p.wait()
    killed_at = max(r["step"] for r in _rows(cut))
    assert killed_at < total, "the run finished before it was killed"
    saved = torch.load(cut / "latest.pt", weights_only=True)["step"]
    assert killed_at - max(3, per_epoch) <= saved <= killed_at   # lost at most save_every (3) or an epoch's steps
    (cut / f"latest.pt.tmp.{p.pid}").write_bytes(b"a write the kill cut short")

    resumed = _script("train_warmup.py", *args, "--resume", f"--out_dir={cut}")
    lines = [line for line in resumed.stdout.splitlines() if line.startswith("resume:")]
    assert lines == [f"resume: continuing from {cut / 'latest.pt'} at step {saved} (epoch {saved / per_epoch:.2f})"]
    assert f"removed 1 unfinished checkpoint write(s) of a killed run: latest.pt.tmp.{p.pid}" in resumed.stdout
    assert not list(cut.glob("*.tmp.*"))
    full, again = _rows(tmp_path / "full"), _rows(cut)
    assert len(full) == len(again)                         # rows after the checkpoint were dropped, then redone
    for a, b in zip(full, again):
        assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], abs=1e-6) for k in a), (a, b)
    assert "summary: warm-up 15 epochs" in resumed.stdout


@pytest.mark.slow
def test_ppo_with_a_huge_learning_rate_stops_with_one_line_and_saves_nothing_non_finite(tmp_path):
    _script("train_warmup.py", *TINY, "--max_steps=2", f"--out_dir={tmp_path / 'w'}")
    p = _script("train_ppo.py", f"--init={tmp_path / 'w' / 'latest.pt'}", "--lr=1e9", "--value_warmup_iters=0",
                "--lr_warmup_iters=1", "--questions_per_iter=4", "--samples_per_question=2", "--max_new_tokens=8",
                "--eval_questions=2", "--iters=20", "--save_every=1", "--minutes=none", "--progress=false",
                f"--out_dir={tmp_path / 'p'}", check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert re.fullmatch(r"error: PPO diverged in iteration \d+: .*lower --lr \(now 1e\+09\).*\n", p.stderr), p.stderr
    assert "summary:" not in p.stdout
    for ckpt in (tmp_path / "p").glob("*.pt"):
        assert first_non_finite(load_checkpoint(ckpt)["model"]) is None, ckpt


@pytest.mark.slow
def test_ppo_resume_says_in_one_line_where_it_continues_and_what_changed(tmp_path):
    _script("train_warmup.py", *TINY, "--max_steps=2", f"--out_dir={tmp_path / 'w'}")
    common = [f"--init={tmp_path / 'w' / 'latest.pt'}", "--questions_per_iter=4", "--samples_per_question=2",
              "--max_new_tokens=8", "--eval_questions=2", "--eval_every=10", "--save_every=2", "--minutes=none",
              "--progress=false", f"--out_dir={tmp_path / 'p'}"]
    first = _script("train_ppo.py", *common, "--iters=3")
    assert re.search(r"^summary: PPO 3 iterations, .* of training; "
                     r"held-out greedy accuracy \S+ -> \S+ \(2 questions\); "
                     r"checkpoint .*latest\.pt, metrics .*metrics\.jsonl, (plot .*curves\.png|no plot: pip install)",
                     first.stdout, re.M), first.stdout
    p = _script("train_ppo.py", *common, "--iters=5", "--resume")
    lines = [line for line in p.stdout.splitlines() if line.startswith("resume:")]
    assert lines == [f"resume: continuing from {tmp_path / 'p' / 'latest.pt'} at iteration 3; "
                     "changed: --iters=5 (was 3)"]
    assert [r["iter"] for r in _rows(tmp_path / "p") if "pg_loss" in r] == [1, 2, 3, 4, 5]


def test_ppo_from_a_warmup_made_with_another_tokenizer_says_to_train_the_warmup_again(tmp_path):
    # A checkpoint of the first tokenizer's era (1024 tokens) against today's shipped tokenizer: one line,
    # not an index error deep inside the sampler.
    from dataclasses import asdict
    from reft_mini.model import GPT, config_from_preset
    model = GPT(config_from_preset("tiny", vocab_size=1024))
    save_checkpoint({"kind": "warmup", "model_config": asdict(model.config), "model": model.state_dict(),
                     "config": {"cot": "program", "dataset": "synthetic"}, "tokenizer": "reft_mini"},
                    tmp_path / "old.pt")
    cfg = train_ppo.Config(init=str(tmp_path / "old.pt"), out_dir=str(tmp_path / "ppo"), progress=False)
    with pytest.raises(UserError, match=r"vocabulary of 1024 tokens but its tokenizer has \d+.*python train_warmup.py"):
        train_ppo.main(cfg)
    assert not (tmp_path / "ppo").exists()
