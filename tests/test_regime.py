"""tools/regime.py: the ReFT-vs-SFT regime study -- its designs' data are honest splits, and one command
runs SFT (best epoch on validation), ReFT and the paired test evaluation, then writes table, summary and figure."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import regime  # tools/ is on pytest's pythonpath

REPO = Path(__file__).resolve().parents[1]


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_worlds_design_keeps_its_worlds_and_test_validation_and_training_questions_apart(tmp_path):
    design = regime.DESIGNS["unseen12"]
    counts = regime.make_design_data(design, tmp_path, dict(test=40, validation=20))
    train, val, test = (_read(tmp_path / f"{n}.jsonl") for n in ("train", "validation", "test"))
    assert counts == {"train": len(train), "validation": 20, "test": 40}
    world = lambda r: r["id"].split("-", 3)[3].replace("_", " ")              # noqa: E731
    assert {world(r) for r in train} <= set(design["train_worlds"]) and len(train) > 1000
    assert {world(r) for r in test + val} <= set(design["test_worlds"])
    assert not set(design["train_worlds"]) & set(design["test_worlds"])      # unseen: no world in common
    questions = [{r["question"] for r in rows} for rows in (train, val, test)]
    assert not questions[0] & questions[1] and not questions[0] & questions[2] and not questions[1] & questions[2]


def test_chains_design_annotates_short_chains_and_holds_out_longer_ones(tmp_path):
    design = regime.DESIGNS["chains"]
    regime.make_design_data(design, tmp_path, dict(test=30, validation=10))
    train, val, test = (regime.data.load_problems("synthetic", n, path=tmp_path) for n in ("train", "validation", "test"))
    assert {regime.steps_of(p) for p in train} == {2, 3} and len(train) > 1500   # train has 2-4 steps: 4 left out
    assert {regime.steps_of(p) for p in val + test} <= {4, 5} and len(test) == 30 and len(val) == 10
    assert not {p.question for p in train} & {p.question for p in val + test}


def test_steps_of_counts_the_lines_of_the_chain_of_thought_before_the_answer():
    problem = regime.data.Problem("x", "q?", "6", "a 1+2=3.\nb 3*2=6.\n#### 6\n", None, None, "test")
    assert regime.steps_of(problem) == 2


def _edge_fixture(tmp_path, correct):
    """A design folder with 4 annotated questions and a fake evaluate.py whose k=4 samples on them got
    `correct` right; returns (the calls made, the folder)."""
    folder = tmp_path / "data"
    folder.mkdir()
    rows = [{"id": f"q{i}", "question": f"question {i}?", "answer": 1} for i in range(4)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "validation.jsonl").write_text(json.dumps(rows[0]) + "\n")
    calls = []

    def fake_run(args, log):
        calls.append(args)
        if args[0] == "evaluate.py" and "--splits=train" in args:
            out = Path(next(a.split("=", 1)[1] for a in args if a.startswith("--out=")))
            out.mkdir(parents=True, exist_ok=True)
            (out / "per_problem.jsonl").write_text("".join(
                json.dumps({"id": f"q{i}", "samples_correct": c, "samples": 4}) + "\n" for i, c in enumerate(correct)))
        elif args[0] == "evaluate.py":
            raise StopIteration                         # the test evaluation is not needed here
    return calls, folder, fake_run


def test_edge_design_lets_rl_practise_only_questions_its_start_sometimes_gets_right(tmp_path, monkeypatch):
    calls, folder, fake_run = _edge_fixture(tmp_path, correct=[0, 2, 4, 1])
    monkeypatch.setattr(regime, "run", fake_run)
    design = {**regime.DESIGNS["worlds12edge"], "more_sft": []}
    d = tmp_path / "seed1"
    (d / "sft").mkdir(parents=True)
    (d / "sft.done").write_text("1\n")
    with pytest.raises(StopIteration):
        regime.one_seed("worlds12edge", design, 1, tmp_path, False, regime.SIZES["quick"], [])
    measure, rl = calls[0], calls[1]
    assert measure[0] == "evaluate.py" and "--k=4" in measure and measure[1] == str(d / "sft" / "latest.pt")
    kept = [json.loads(line)["id"] for line in (d / "edge" / "data" / "train.jsonl").read_text().splitlines()]
    assert kept == ["q1", "q3"]                        # 0 of 4 and 4 of 4 right are left out
    assert (d / "edge" / "data" / "validation.jsonl").read_text() == (folder / "validation.jsonl").read_text()
    assert rl[0] == "train_ppo.py" and f"--data_path={d / 'edge' / 'data'}" in rl
    assert json.loads((d / "edge" / "data" / "counts.json").read_text()) == {
        "measured": 4, "kept": 2, "all_right": 1, "all_wrong": 1}
    calls.clear()
    with pytest.raises(StopIteration):                  # measured once: a rerun goes straight to the test
        regime.one_seed("worlds12edge", design, 1, tmp_path, False, regime.SIZES["quick"], [])
    assert [c[0] for c in calls] == ["evaluate.py"] and "--splits=test" in calls[0]


def test_edge_design_stops_with_a_message_when_no_question_is_at_the_edge(tmp_path, monkeypatch):
    calls, folder, fake_run = _edge_fixture(tmp_path, correct=[0, 4, 0, 0])
    monkeypatch.setattr(regime, "run", fake_run)
    d = tmp_path / "seed1"
    (d / "sft").mkdir(parents=True)
    (d / "sft.done").write_text("1\n")
    design = {**regime.DESIGNS["worlds12edge"], "more_sft": []}
    with pytest.raises(SystemExit, match="no training question is at the edge of competence"):
        regime.one_seed("worlds12edge", design, 1, tmp_path, False, regime.SIZES["quick"], [])
    assert [c[0] for c in calls] == ["evaluate.py"]    # RL never started


def test_data_design_takes_the_first_n_annotated_questions():
    design = regime.DESIGNS["data300"]
    assert design["n_train"] == 300 and design["train_worlds"] is None and design["reft_from"] < design["epochs"]


def test_a_seed_restarts_at_the_stage_it_lost_and_reuses_finished_ones(tmp_path, monkeypatch):
    calls = []

    class Stop(Exception):
        pass

    def fake_run(args, log):
        calls.append(args[0])
        if args[0] == "evaluate.py":
            raise Stop                                  # the real evaluation is not needed to see the order
    monkeypatch.setattr(regime, "run", fake_run)
    seed_dir = tmp_path / "seed1"
    seed_dir.mkdir()
    (seed_dir / "sft.done").write_text("3.5\n")        # SFT finished before the run was stopped
    with pytest.raises(Stop):
        regime.one_seed("data300", regime.DESIGNS["data300"], 1, tmp_path, False, regime.SIZES["quick"], [])
    assert calls == ["train_ppo.py", "evaluate.py"] and (seed_dir / "reft.done").is_file()
    calls.clear()
    with pytest.raises(Stop):                           # both stages done: only the evaluation runs again
        regime.one_seed("data300", regime.DESIGNS["data300"], 1, tmp_path, False, regime.SIZES["quick"], [])
    assert calls == ["evaluate.py"]


def test_a_stopped_rl_stage_resumes_from_its_latest_checkpoint(tmp_path, monkeypatch):
    commands = []

    def fake_run(args, log):
        commands.append(args)
        if args[0] == "evaluate.py":
            raise StopIteration
    monkeypatch.setattr(regime, "run", fake_run)
    design = {**regime.DESIGNS["worlds12long"], "more_sft": []}     # one SFT schedule, already finished
    seed_dir = tmp_path / "seed1"
    (seed_dir / "reft").mkdir(parents=True)
    (seed_dir / "sft.done").write_text("1\n")
    with pytest.raises(StopIteration):                  # no RL checkpoint yet: a fresh RL run
        regime.one_seed("worlds12long", design, 1, tmp_path, False, regime.SIZES["quick"], [])
    assert commands[0][0] == "train_ppo.py" and "--resume" not in commands[0] and "--iters=500" in commands[0]
    (seed_dir / "reft.done").unlink()                   # as if that run had been killed after a checkpoint
    (seed_dir / "reft" / "latest.pt").write_bytes(b"")
    commands.clear()
    with pytest.raises(StopIteration):
        regime.one_seed("worlds12long", design, 1, tmp_path, False, regime.SIZES["quick"], [])
    assert commands[0][0] == "train_ppo.py" and commands[0][-1] == "--resume"


def test_sft_at_its_best_is_chosen_over_every_schedule_on_validation_and_a_change_is_evaluated_again(
        tmp_path, monkeypatch):
    commands, val_acc, epochs = [], {"sft": 0.60, "sft40": 0.55}, {"sft": 24, "sft40": 40}
    metrics = {"greedy": 0.5}
    results = {"checkpoints": [{"label": "sft"}, {"label": "reft"}],
               "results": {"test": {"sft": {"n": 8, "metrics": metrics}, "reft": {"n": 8, "metrics": metrics}}},
               "comparisons": {"test": {"reft": {"greedy": {"diff": 0.0, "ci95": [0.0, 0.0]}}}}}

    def fake_run(args, log):
        commands.append(args)
        if args[0] == "evaluate.py":
            out = Path(next(a.split("=", 1)[1] for a in args if a.startswith("--out=")))
            out.mkdir(parents=True, exist_ok=True)
            (out / "results.json").write_text(json.dumps(results))
    monkeypatch.setattr(regime, "run", fake_run)
    monkeypatch.setattr(regime, "load_checkpoint", lambda f: {"best_acc": val_acc[Path(f).parent.name], "epoch": 7,
                                                              "config": {"epochs": epochs[Path(f).parent.name]}})
    d = tmp_path / "seed1"
    for stage in ("sft", "sft40", "reft"):
        (d / stage).mkdir(parents=True)
        (d / stage / "best.pt").write_bytes(b"")
    (d / "sft40" / "latest.pt").write_bytes(b"")       # the 40-epoch schedule was stopped midway
    for stage in ("sft", "reft"):
        (d / f"{stage}.done").write_text("1\n")
    design = regime.DESIGNS["worlds12long"]
    assert design["more_sft"] == [40]
    row = regime.one_seed("worlds12long", design, 1, tmp_path, False, regime.SIZES["quick"], [])
    # the unfinished schedule trains on (resuming), then the better SFT on validation is evaluated
    assert commands[0][0] == "train_warmup.py" and "--epochs=40" in commands[0] and commands[0][-1] == "--resume"
    assert commands[1][0] == "evaluate.py" and commands[1][1] == str(d / "sft" / "best.pt")
    assert row["sft_schedule"] == 24 and set(row["minutes"]) == {"sft", "sft40", "reft"}
    commands.clear()
    regime.one_seed("worlds12long", design, 1, tmp_path, False, regime.SIZES["quick"], [])
    assert commands == []                               # nothing changed: nothing runs again
    val_acc["sft40"] = 0.65                             # ... until the longer schedule is better on validation
    row = regime.one_seed("worlds12long", design, 1, tmp_path, False, regime.SIZES["quick"], [])
    assert [c[0] for c in commands] == ["evaluate.py"] and commands[0][1] == str(d / "sft40" / "best.pt")
    assert row["sft_schedule"] == 40


def test_the_late_design_starts_reft_from_sfts_best_checkpoint(tmp_path, monkeypatch):
    inits = []

    def fake_run(args, log):
        inits.extend(a for a in args if a.startswith("--init="))
        if args[0] == "evaluate.py":
            raise StopIteration
    monkeypatch.setattr(regime, "run", fake_run)
    (tmp_path / "seed1").mkdir()
    (tmp_path / "seed1" / "sft.done").write_text("1\n")
    (tmp_path / "seed1" / "sft").mkdir()
    (tmp_path / "seed1" / "sft" / "best.pt").write_bytes(b"")
    with pytest.raises(StopIteration):
        regime.one_seed("worlds12late", regime.DESIGNS["worlds12late"], 1, tmp_path, False, regime.SIZES["quick"], [])
    assert inits == [f"--init={tmp_path / 'seed1' / 'sft' / 'best.pt'}"]


def test_table_lists_every_seed_and_the_mean_with_its_pooled_interval():
    row = dict(design="worlds12", seed=1, n=1000, sft_best=0.6, reft=0.7, diff=0.1, ci95=[0.07, 0.13], sft_maj4=None,
               reft_maj4=None, sft_pass4=0.72, reft_pass4=0.79, sft_best_epoch=23, reft_rerank4=0.655)
    rows = [row, {**row, "seed": 2, "reft": 0.62, "diff": 0.02, "ci95": [-0.01, 0.05]}]
    del rows[1]["reft_rerank4"]                     # a row written before rerank@4 was recorded shows "-"
    text = regime.table(rows, {"train": 1433, "validation": 300}, pooled=(0.06, 0.04, 0.08))
    assert "| 1 | 60.0 (23) | 70.0 | +10.0 [+7.0, +13.0] | - / - | 72.0 / 79.0 | 65.5 |" in text
    assert "| 2 | 60.0 (23) | 62.0 | +2.0 [-1.0, +5.0] | - / - | 72.0 / 79.0 | - |" in text
    assert "| mean | 60.0 | 66.0 | +6.0 [+4.0, +8.0] | | | |" in text


def test_summary_gives_each_design_one_line_with_its_pooled_or_single_seed_interval(tmp_path):
    row = dict(seed=1, sft_best=0.60, reft=0.70, diff=0.10, ci95=[0.07, 0.13])
    for design, rows, pooled in (("one", [row], None),
                                 ("three", [row, {**row, "seed": 2, "reft": 0.64, "diff": 0.04},
                                            {**row, "seed": 3, "reft": 0.61, "diff": 0.01}], [0.05, 0.03, 0.07])):
        (tmp_path / design).mkdir()
        (tmp_path / design / "results.json").write_text(json.dumps({"design": design, "rows": rows,
                                                                     "mean_diff_ci95": pooled}))
    lines = regime.summary(tmp_path).splitlines()
    assert lines[2] == "| one | 1 | 60.0 | 70.0 | +10.0 [+7.0, +13.0] |"
    assert lines[3] == "| three | 1, 2, 3 | 60.0 | 65.0 | +5.0 [+3.0, +7.0] |"


@pytest.mark.slow
def test_one_quick_seed_writes_the_table_the_json_and_the_figure_and_passes_ppo_options_on(tmp_path):
    fig = tmp_path / "regime.png"
    cmd = [sys.executable, "tools/regime.py", "--design=data300", "--seeds=1", "--quick", f"--out={tmp_path / 'r'}",
           f"--figure={fig}", "--ppo=--estimator=rloo"]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    result = json.loads((tmp_path / "r" / "data300" / "results.json").read_text())
    (row,) = result["rows"]
    assert row["n"] == 8 and 0 <= row["sft_best"] <= 1 and 0 <= row["reft"] <= 1 and 0 <= row["reft_rerank4"] <= 1
    assert row["ci95"][0] <= row["diff"] <= row["ci95"][1]
    assert "| 1 |" in (tmp_path / "r" / "data300" / "results.md").read_text()
    assert (tmp_path / "r" / "summary.md").read_text().splitlines()[2].startswith("| data300 | 1 |")
    assert fig.is_file() and fig.stat().st_size > 1000
    reft = torch.load(tmp_path / "r" / "data300" / "seed1" / "reft" / "latest.pt", weights_only=False)
    assert reft["config"]["estimator"] == "rloo" and result["ppo"] == "--estimator=rloo"
