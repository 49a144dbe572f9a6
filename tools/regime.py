"""When does ReFT beat SFT? One design of the regime study per command, over seeds.

ReFT's claim (Luong et al., 2024, Table 2) is that RL on the *same* annotated questions beats SFT at
its best. This script measures it here for one "design" (which questions are annotated, which are
held out) and writes every number:

    python tools/regime.py --design=worlds12 --seeds=1          # screen one design with one seed
    python tools/regime.py --design=worlds12 --seeds=1,2,3      # then three (a finished seed is reused)
    python tools/regime.py --design=worlds12long --seeds=1,2,3  # README's table: RL 500 iterations, SFT 24 + 40 epochs
    python tools/regime.py --design=chains --seeds=1            # train on 2-3-step questions, test on 4-5 steps
    python tools/regime.py --design=worlds12edge --seeds=1      # RL only on questions at the edge of competence
    python tools/regime.py --design=data300 --quick             # smoke-sized: the plumbing in a minute
    python tools/regime.py --design=worlds12 --ppo="--estimator=drgrpo" --out=runs/regime_drgrpo  # RL variant

For each seed, from the shipped base model:
  1. SFT with a long schedule on the design's annotated questions; every epoch is evaluated on a
     VALIDATION split (never the test questions), and best.pt is SFT at its best epoch; a design may add
     longer schedules (`more_sft`), and SFT-best is then the best of them all on validation;
  2. ReFT: PPO from an early SFT checkpoint (epoch `reft_from`, the paper's warm-up; "best": from
     SFT at its best epoch, as the official small-model recipe starts RL late), on the same
     questions, its best iteration also chosen on the validation split;
  3. both best checkpoints on the same >= 1000 held-out TEST questions with evaluate.py (greedy, the
     paired difference with its 95% bootstrap interval), plus maj@k and pass@k.
It writes runs/regime/DESIGN/results.md and results.json, and over every design run so far
runs/regime/summary.md (one line each) and the figure data/figures/regime.png (SFT-best and ReFT per seed
as dots, means as bars).

The designs' data are new splits of the synthetic generator (data/synthetic/synthetic.py), written to
runs/regime/DESIGN/data/ as train/validation/test.jsonl: test and validation questions come from the
generator's test pool (disjoint from every training question by construction) and from each other.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "data" / "synthetic", REPO / "tools"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import synthetic  # noqa: E402  (the generator, for the designs' splits)
from reproduce import pooled_interval, run  # noqa: E402  (tools/reproduce.py: a command and its log; the
#                                                   mean over seeds with its paired interval)
from reft_mini import data  # noqa: E402
from reft_mini.checkpoint import load_checkpoint  # noqa: E402

WORLDS = sorted(w.name for w in synthetic.WORLDS)
# A design: which annotated questions SFT and ReFT share, which worlds the held-out questions come from,
# how long SFT runs, the SFT epoch ReFT starts from, and PPO's options.
DESIGNS = {
    # the data-efficiency curve: the first N annotated training questions, all worlds
    # (RL 100 iterations, as measured; train_ppo's default has since grown to 115)
    "data300": dict(n_train=300, train_worlds=None, test_worlds=None, epochs=30, reft_from=2, ppo=["--iters=100"]),
    "data1000": dict(n_train=1000, train_worlds=None, test_worlds=None, epochs=20, reft_from=6, ppo=["--iters=100"]),
    "data3000": dict(n_train=3000, train_worlds=None, test_worlds=None, epochs=10, reft_from=2, ppo=["--iters=100"]),
    # fewer worlds, deeper coverage: annotated questions and held-out questions from the same 12 worlds
    "worlds12": dict(n_train=None, train_worlds=WORLDS[::2], test_worlds=WORLDS[::2], epochs=24, reft_from=9,
                     ppo=["--iters=300"]),
    # the same with RL for 500 iterations (about 5.6 passes over the 1,433 questions, 8 samples each): on two
    # of the three seeds validation accuracy was still rising at iteration 300
    # SFT-best is the better (on validation) of the 24-epoch schedule and a 40-epoch one, the paper's length
    "worlds12long": dict(n_train=None, train_worlds=WORLDS[::2], test_worlds=WORLDS[::2], epochs=24, reft_from=9,
                         ppo=["--iters=500"], more_sft=[40]),
    # the same, ReFT from SFT at its best epoch (chosen on validation): the official small-model recipe
    # starts RL from a late SFT checkpoint
    "worlds12late": dict(n_train=None, train_worlds=WORLDS[::2], test_worlds=WORLDS[::2], epochs=24,
                         reft_from="best", ppo=["--iters=200"]),
    # unseen worlds: annotated questions from 12 worlds, held-out questions from the other 12
    "unseen12": dict(n_train=None, train_worlds=WORLDS[::2], test_worlds=WORLDS[1::2], epochs=24, reft_from=2,
                     ppo=["--iters=200"]),
    # longer chains than annotated: the annotated questions of 2-3 steps, held-out questions of 4-5 steps
    # (all worlds); RL may find longer programs that SFT never saw (Chu et al. 2025: RL generalises to
    # out-of-distribution variants, SFT memorises)
    "chains": dict(n_train=None, train_worlds=None, test_worlds=None, train_steps=(2, 3), test_steps=(4, 5),
                   epochs=20, reft_from=3, ppo=["--iters=300"]),
    # edge of competence: worlds12long, but ReFT practises only the questions whose pass rate at its start
    # (4 samples each, temperature 1) is strictly between 0 and 1, where a sampled contrast exists
    # (Zhang, Neubig, Yue 2025, arXiv 2512.07783)
    "worlds12edge": dict(n_train=None, train_worlds=WORLDS[::2], test_worlds=WORLDS[::2], epochs=24, reft_from=9,
                         ppo=["--iters=500"], more_sft=[40], edge_samples=4),
}
# ReFT's learning rates in the study, as in every seed measured so far: the policy's constant after its warm-up
# ramp (the paper's) and the value head's 1e-3. train_ppo.py's defaults have since become a linear decay and a
# value-head rate of 1e-4 (the 5-minute demo's choices), and a study's seeds must not mix settings.
# `--ppo="--lr_decay=true --value_lr=1e-4"` runs the study with the demo's.
RL_SCHEDULE = ["--lr_decay=false", "--value_lr=1e-3"]
SIZES = {"full": dict(test=1000, validation=300),
         "quick": dict(test=8, validation=4)}
QUICK_SFT = ["--max_steps=4", "--batch_size=8", "--eval_every=2", "--eval_questions=4", "--max_new_tokens=16"]
QUICK_PPO = ["--iters=2", "--questions_per_iter=2", "--samples_per_question=2", "--max_new_tokens=16",
             "--eval_questions=4", "--value_warmup_iters=1", "--lr_warmup_iters=1", "--minutes=none"]


def world_of(problem) -> str:
    """The story world of a synthetic problem, from its id: 'syn-train-42-egg_farm' -> 'egg farm'."""
    return problem.id.split("-", 3)[3].replace("_", " ")


def steps_of(problem) -> int:
    """Arithmetic steps of a synthetic problem: its N-CoT has one line per step, then '#### answer'."""
    return len(problem.cot_nl.strip().splitlines()) - 1


def make_design_data(design: dict, folder: Path, sizes: dict) -> dict:
    """train/validation/test.jsonl for a design; returns how many questions each holds."""
    train = data.load_problems("synthetic", "train")                  # the annotated questions
    if design["train_worlds"] is not None:
        train = [p for p in train if world_of(p) in design["train_worlds"]]
    if "train_steps" in design:
        lo, hi = design["train_steps"]
        train = [p for p in train if lo <= steps_of(p) <= hi]
    if design["n_train"] is not None:
        train = train[:design["n_train"]]
    # Held-out questions: fresh draws from the generator's test pool (its own seed, not the test split's),
    # of the design's worlds (and chain lengths); the first ones are the test set, the next distinct ones
    # the validation set.
    keep = design["test_worlds"]
    steps = dict(zip(("min_steps", "max_steps"), design["test_steps"])) if "test_steps" in design else {}
    pool, seen, n_want = [], set(), sizes["test"] + sizes["validation"]
    for draw in range(1, 20):
        for p in synthetic.make_split("test", n=4000, seed=90_000 + draw, **steps):
            if (keep is None or world_of(p) in keep) and p.question not in seen:
                seen.add(p.question)
                pool.append(p)
        if len(pool) >= n_want:
            break
    test, validation = pool[:sizes["test"]], pool[sizes["test"]:n_want]
    folder.mkdir(parents=True, exist_ok=True)
    for name, probs in (("train", train), ("validation", validation), ("test", test)):
        lines = [synthetic.problem_to_json(p) for p in probs]
        (folder / f"{name}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return {"train": len(train), "validation": len(validation), "test": len(test)}


def sft_stage(d: Path, name: str, epochs: int, seed: int, source: list[str], sizes: dict, quick: bool) -> None:
    """One SFT schedule of `epochs` epochs into d/name, skipped once d/name.done exists.

    Each finished stage leaves a marker, so a run stopped midway starts again at the stage it lost (and a
    variant of ReFT can reuse a copied seedN/sft folder with its sft.done); a schedule stopped within an
    epoch continues from its checkpoint with train_warmup's --resume."""
    if (d / f"{name}.done").is_file():
        return
    t0 = time.time()
    resume = ["--resume"] if (d / name / "latest.pt").is_file() else []
    run(["train_warmup.py", f"--seed={seed}", f"--out_dir={d / name}", *source, "--train_split=train",
         "--eval_split=validation", f"--eval_questions={sizes['validation']}", f"--epochs={epochs}",
         "--eval_every=100000", "--progress=false", *(QUICK_SFT if quick else []), *resume], d / f"{name}.log")
    (d / f"{name}.done").write_text(f"{(time.time() - t0) / 60:.2f}\n")        # minutes


def best_or_latest(folder: Path) -> Path:
    """best.pt: the best validation accuracy so far; a run that never beat 0% (tiny --quick runs) has none."""
    return folder / ("best.pt" if (folder / "best.pt").is_file() else "latest.pt")


def sft_at_its_best(d: Path, schedules: list[str]) -> Path:
    """SFT at its best over every schedule run: the best.pt with the highest VALIDATION accuracy (the
    first schedule listed wins a tie). Test questions play no part in the choice."""
    if len(schedules) == 1:
        return best_or_latest(d / schedules[0])
    scored = [(load_checkpoint(best_or_latest(d / name)).get("best_acc", -1.0), best_or_latest(d / name))
              for name in schedules]
    return max(scored, key=lambda pair: pair[0])[1]                   # max keeps the first of equal scores


def edge_of_competence(d: Path, start: Path, folder: Path, k: int, quick: bool) -> dict:
    """RL's practice set in an edge-of-competence design: the annotated training questions whose pass
    rate at RL's start, over k samples at temperature 1 (evaluate.py's sampled metrics), is strictly
    between 0 and 1. A question whose samples are all right or all wrong gives a comparison nothing to
    compare (Zhang, Neubig, Yue 2025: RL pays at the edge of competence). Writes d/edge/data/ (train.jsonl:
    the kept questions; validation.jsonl: the design's) once; returns how many were measured and kept."""
    edge, chosen = d / "edge", d / "edge" / "data"
    if not (chosen / "counts.json").is_file():
        run(["evaluate.py", str(start), f"--data_path={folder}", "--dataset=synthetic", "--splits=train",
             f"--k={k}", f"--out={edge}", "--progress=false", *(["--limit=8"] if quick else [])], d / "edge.log")
        rows = [json.loads(line) for line in (edge / "per_problem.jsonl").read_text().splitlines()]
        keep = {r["id"] for r in rows if 0 < r["samples_correct"] < r["samples"]}
        if not keep and quick:                      # a smoke run's start is untrained: the plumbing is the point
            keep = {r["id"] for r in rows}
        if not keep:
            raise SystemExit(f"{edge / 'per_problem.jsonl'}: no training question is at the edge of competence "
                             f"(every one had all {k} samples right or all wrong); start RL from another epoch")
        lines = [line for line in (folder / "train.jsonl").read_text().splitlines() if json.loads(line)["id"] in keep]
        chosen.mkdir(parents=True, exist_ok=True)
        (chosen / "train.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        (chosen / "validation.jsonl").write_text((folder / "validation.jsonl").read_text(encoding="utf-8"),
                                                 encoding="utf-8")
        counts = {"measured": len(rows), "kept": len(lines),
                  "all_right": sum(r["samples_correct"] == r["samples"] for r in rows),
                  "all_wrong": sum(r["samples_correct"] == 0 for r in rows)}
        (chosen / "counts.json").write_text(json.dumps(counts) + "\n")  # last: its presence means done
    return json.loads((chosen / "counts.json").read_text())


def one_seed(name: str, design: dict, seed: int, out: Path, quick: bool, sizes: dict, ppo: list[str]) -> dict:
    d, folder = out / f"seed{seed}", out / "data"
    d.mkdir(parents=True, exist_ok=True)
    source = [f"--data_path={folder}", "--dataset=synthetic", "--cot=program"]
    # 1. SFT: the design's schedule (ReFT starts from one of its epochs), then any longer schedules that
    #    compete only for "SFT at its best" (the paper's SFT baseline trains 40 epochs).
    schedules = ["sft"] + [f"sft{epochs}" for epochs in design.get("more_sft", [])]
    for stage, epochs in zip(schedules, [design["epochs"], *design.get("more_sft", [])]):
        sft_stage(d, stage, epochs, seed, source, sizes, quick)
    # 2. ReFT from the design's SFT schedule.
    start = d / "sft" / ("best.pt" if design["reft_from"] == "best" else f"epoch{design['reft_from']}.pt")
    if not start.is_file():                                           # --quick stops before that epoch
        start = d / "sft" / "latest.pt"
    edge, practice = None, []
    if "edge_samples" in design:                                      # RL practises only the edge questions
        edge = edge_of_competence(d, start, folder, design["edge_samples"], quick)
        practice = [f"--data_path={d / 'edge' / 'data'}"]
    if not (d / "reft.done").is_file():
        t1 = time.time()
        # An RL stage stopped midway (or copied from a shorter design) continues from its latest.pt
        # rather than starting over: train_ppo's --resume replays the same question order.
        resume = ["--resume"] if (d / "reft" / "latest.pt").is_file() else []
        run(["train_ppo.py", f"--seed={seed}", f"--init={start}", f"--out_dir={d / 'reft'}",
             f"--eval_questions={sizes['validation']}", "--progress=false", *practice, *RL_SCHEDULE, *design["ppo"],
             *ppo, *(QUICK_PPO if quick else []), *resume], d / "reft.log")
        (d / "reft.done").write_text(f"{(time.time() - t1) / 60:.2f}\n")
    # 3. Both on the test questions; evaluated again when a longer SFT schedule has become SFT's best.
    sft_best, reft_best = sft_at_its_best(d, schedules), best_or_latest(d / "reft")
    done, used = d / "eval" / "results.json", d / "eval" / "sft_checkpoint.txt"
    used_before = used.read_text().strip() if used.is_file() else str(best_or_latest(d / "sft"))
    if not done.is_file() or used_before != str(sft_best):
        run(["evaluate.py", str(sft_best), str(reft_best), *source[:2], "--splits=test",
             f"--limit={sizes['test']}", "--k=4", f"--out={d / 'eval'}", "--progress=false"], d / "eval.log")
        used.write_text(f"{sft_best}\n")
    minutes = {stage: float((d / f"{stage}.done").read_text()) for stage in (*schedules, "reft")}
    (d / "minutes.json").write_text(json.dumps(minutes) + "\n")
    res = json.loads(done.read_text())
    sft, reft = (c["label"] for c in res["checkpoints"])
    m_sft, m_reft = res["results"]["test"][sft]["metrics"], res["results"]["test"][reft]["metrics"]
    cmp_ = res["comparisons"]["test"][reft]["greedy"]
    ck = load_checkpoint(sft_best)                                    # SFT's best epoch on validation
    return {"design": name, "seed": seed, "n": res["results"]["test"][sft]["n"],
            "sft_best": m_sft["greedy"], "reft": m_reft["greedy"], "diff": cmp_["diff"], "ci95": cmp_["ci95"],
            "sft_maj4": m_sft.get("maj@4"), "reft_maj4": m_reft.get("maj@4"),
            "sft_pass4": m_sft.get("pass@4"), "reft_pass4": m_reft.get("pass@4"), "sft_best_epoch": ck.get("epoch"),
            # rerank@4 by ReFT's own value head (evaluate.py); SFT's head was never trained, so it has none
            "reft_rerank4": m_reft.get("rerank@4"),
            "sft_schedule": ck["config"]["epochs"], "minutes": minutes, **({"edge": edge} if edge else {})}


def epochs_of(row: dict) -> str:
    """' of 24' after SFT's best epoch (rows written before schedules were recorded have none)."""
    return f" of {row['sft_schedule']}" if row.get("sft_schedule") else ""


def points(diff: float, lo: float, hi: float) -> str:
    """A difference with its interval, in points: 0.1, 0.07, 0.13 -> '+10.0 [+7.0, +13.0]'."""
    return f"{100 * diff:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def mean_difference(rows: list[dict], pooled) -> str:
    """The difference over the seeds: one seed's own interval, else the pooled one (its mean alone when a
    results.json from before pooled intervals has none)."""
    if len(rows) == 1:
        return points(rows[0]["diff"], *rows[0]["ci95"])
    return points(*pooled) if pooled else f"{100 * statistics.mean(r['diff'] for r in rows):+.1f}"


def table(rows: list[dict], counts: dict, pooled: tuple[float, float, float] | None = None) -> str:
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}"                          # noqa: E731
    out = [f"Design {rows[0]['design']}: {counts['train']} annotated questions, {counts['validation']} validation, "
           f"{rows[0]['n']} test questions. Greedy accuracy (%), ReFT - SFT-best with its 95% paired interval.", "",
           "| seed | SFT best (epoch of schedule) | ReFT | ReFT - SFT (95% CI) | maj@4 SFT / ReFT | pass@4 SFT / ReFT "
           "| rerank@4 ReFT (its value head) |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['seed']} | {pct(r['sft_best'])} ({r['sft_best_epoch']}{epochs_of(r)}) | {pct(r['reft'])} | "
                   f"{points(r['diff'], *r['ci95'])} | {pct(r['sft_maj4'])} / {pct(r['reft_maj4'])} | "
                   f"{pct(r['sft_pass4'])} / {pct(r['reft_pass4'])} | {pct(r.get('reft_rerank4'))} |")
    if len(rows) > 1:
        out.append(f"| mean | {pct(statistics.mean(r['sft_best'] for r in rows))} | "
                   f"{pct(statistics.mean(r['reft'] for r in rows))} | {mean_difference(rows, pooled)} | | | |")
    return "\n".join(out) + "\n"


def summary(root: Path) -> str:
    """One line per design under root with results: its seeds, the mean greedy accuracy of SFT-best and
    ReFT, and the mean difference with its interval (the pooled one over seeds; a single seed's own)."""
    out = ["| design | seeds | SFT at its best | ReFT | ReFT - SFT-best (95% CI) |", "|---|---|---:|---:|---:|"]
    for f in sorted(root.glob("*/results.json")):
        res = json.loads(f.read_text())
        rows = res["rows"]
        out.append(f"| {res['design']} | {', '.join(str(r['seed']) for r in rows)} | "
                   f"{100 * statistics.mean(r['sft_best'] for r in rows):.1f} | "
                   f"{100 * statistics.mean(r['reft'] for r in rows):.1f} | "
                   f"{mean_difference(rows, res.get('mean_diff_ci95'))} |")
    return "\n".join(out) + "\n"


def figure(root: Path, file: Path) -> Path | None:
    """Every design under root with results. Left: greedy accuracy of SFT-best and ReFT per seed (dots)
    and their means (bars). Right: the headroom pass@4 - greedy of each (what sampling 4 answers could
    still find; RL is known to narrow it: Yue et al. 2025)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    results = sorted(root.glob("*/results.json"))
    if not results:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(3.2 + 2.4 * len(results), 3.6))
    names = []
    for i, f in enumerate(results):
        rows = json.loads(f.read_text())["rows"]
        names.append(f.parent.name)
        for j, (key, pass_key, color, label) in enumerate((("sft_best", "sft_pass4", "tab:blue", "SFT at its best epoch"),
                                                           ("reft", "reft_pass4", "tab:orange", "ReFT"))):
            x = i + (j - 0.5) * 0.35
            headroom = [100 * (r[pass_key] - r[key]) for r in rows if r[pass_key] is not None]
            for ax, ys in ((axes[0], [100 * r[key] for r in rows]), (axes[1], headroom)):
                if not ys:
                    continue
                ax.bar(x, statistics.mean(ys), width=0.33, color=color, alpha=0.35, label=label if i == 0 else None)
                ax.scatter([x] * len(ys), ys, color=color, s=14, zorder=3)
    for ax, title, ylabel in ((axes[0], "When does ReFT beat SFT? (dots: seeds)", "held-out greedy accuracy (%)"),
                              (axes[1], "headroom: pass@4 - greedy", "points")):
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(file, dpi=110)
    plt.close(fig)
    return file


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/regime.py", description="One design of the ReFT-vs-SFT regime "
                                 "study over seeds: SFT at its best epoch (chosen on validation) vs ReFT, same test.")
    ap.add_argument("--design", required=True, choices=sorted(DESIGNS), help="which design to run")
    ap.add_argument("--seeds", default="1", help="comma-separated seeds (default 1)")
    ap.add_argument("--out", default="runs/regime", help="output folder (default runs/regime)")
    ap.add_argument("--figure", default="data/figures/regime.png", help="the figure over all designs run so far")
    ap.add_argument("--quick", action="store_true", help="smoke-sized runs (a minute; numbers mean nothing)")
    ap.add_argument("--ppo", default="", help="extra train_ppo.py options for ReFT, space-separated, e.g. "
                    "\"--estimator=drgrpo\" (give such a run its own --out: a finished seed is reused)")
    args = ap.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--seeds={args.seeds}: expected comma-separated integers, e.g. 1,2,3")
    if not seeds:
        ap.error("--seeds: give at least one seed")
    sizes = SIZES["quick" if args.quick else "full"]
    design, root = DESIGNS[args.design], Path(args.out)
    out = root / args.design
    counts = make_design_data(design, out / "data", sizes)
    print(f"design {args.design}: {counts['train']} annotated training questions, {counts['validation']} "
          f"validation and {counts['test']} test questions in {out / 'data'}", flush=True)
    rows = []
    for seed in seeds:
        rows.append(one_seed(args.design, design, seed, out, args.quick, sizes, args.ppo.split()))
        r = rows[-1]
        print(f"seed {seed}: SFT best {100 * r['sft_best']:.1f}%, ReFT {100 * r['reft']:.1f}%, "
              f"ReFT - SFT {points(r['diff'], *r['ci95'])}", flush=True)
    # the mean over seeds, its interval from resampling the test questions (seed-averaged per question)
    pooled = pooled_interval(out, seeds) if len(seeds) > 1 else None
    text = table(rows, counts, pooled)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps({"design": args.design, "settings": design, "ppo": args.ppo, "counts": counts, "mean_diff_ci95": pooled,
                                                  "rows": rows}, indent=1) + "\n")
    print(text)
    (root / "summary.md").write_text(summary(root))                  # every design run so far, one line each
    fig = figure(root, Path(args.figure))
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}, {root / 'summary.md'}" + (f" and {fig}" if fig else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
