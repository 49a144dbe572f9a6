"""Reproduce README's demo table over several seeds: warm-up, PPO, and evaluation on 1000 held-out questions.

One run of the demo on one machine is an anecdote: float results differ between CPUs (and thread counts)
and training amplifies the difference, so the same command gave 41.0% on one 2-core machine and 45.5% on
another. README's numbers therefore come from this command, which runs README's own two commands once
per seed and evaluates both checkpoints on the same 1000 held-out questions:

    python tools/reproduce.py                          # seeds 1,2,3 (about 45 minutes on 2 cores, alone)
    python tools/reproduce.py --seeds=1 --quick        # a smoke-sized version (a minute)

For each seed it prints the warm-up's and PPO's held-out greedy accuracy and PPO's gain with its 95%
paired-bootstrap interval (evaluate.py's numbers), then the mean over seeds. It writes the table to
runs/reproduce/results.md and every number to runs/reproduce/results.json. A seed already finished
(its results.json present) is not run again, so an interrupted reproduction continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))       # reft_mini from this checkout (for the bootstrap below)

# Smoke-sized settings for --quick (tests and a first look): same commands, tiny runs.
QUICK_WARMUP = ["--max_steps=4", "--max_train=64", "--batch_size=8", "--eval_questions=4", "--max_new_tokens=16"]
QUICK_PPO = ["--iters=2", "--questions_per_iter=4", "--samples_per_question=2", "--max_new_tokens=16",
             "--eval_questions=4", "--value_warmup_iters=1", "--lr_warmup_iters=1", "--minutes=none"]


def run(cmd: list[str], log: Path) -> None:
    """Run one README command; its output goes to a log file, a failure stops with the log's tail."""
    with open(log, "w") as f:
        p = subprocess.run([sys.executable, *cmd], cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        tail = log.read_text().strip().splitlines()[-5:]
        raise SystemExit(f"error: {' '.join(cmd)} failed (exit {p.returncode}); last lines of {log}:\n  "
                         + "\n  ".join(tail))


def one_seed(seed: int, out: Path, quick: bool, limit: int, extra_ppo: list[str]) -> dict:
    """README's demo for one seed: warm-up, PPO, evaluate both on `limit` held-out questions."""
    d = out / f"seed{seed}"
    done = d / "eval" / "results.json"
    if done.is_file():
        print(f"seed {seed}: already done ({done}), reading it back")
    else:
        d.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        run(["train_warmup.py", f"--seed={seed}", f"--out_dir={d / 'warmup'}", "--progress=false",
             *(QUICK_WARMUP if quick else [])], d / "warmup.log")
        t1 = time.time()
        run(["train_ppo.py", f"--seed={seed}", f"--init={d / 'warmup' / 'latest.pt'}", f"--out_dir={d / 'ppo'}",
             "--progress=false", *(QUICK_PPO if quick else []), *extra_ppo], d / "ppo.log")
        t2 = time.time()
        run(["evaluate.py", str(d / "warmup" / "latest.pt"), str(d / "ppo" / "latest.pt"), "--splits=test",
             f"--limit={limit}", "--k=", f"--out={d / 'eval'}", "--progress=false"], d / "eval.log")
        (d / "minutes.json").write_text(json.dumps({"warmup": (t1 - t0) / 60, "ppo": (t2 - t1) / 60}) + "\n")
    res = json.loads(done.read_text())
    warm, ppo = (c["label"] for c in res["checkpoints"])
    cmp_ = res["comparisons"]["test"][ppo]["greedy"]
    minutes = json.loads((d / "minutes.json").read_text()) if (d / "minutes.json").is_file() else {}
    iters = json.loads((d / "ppo" / "metrics.jsonl").read_text().splitlines()[-1]).get("iter") \
        if (d / "ppo" / "metrics.jsonl").is_file() else None
    return {"seed": seed, "n": res["results"]["test"][warm]["n"],
            "warmup": res["results"]["test"][warm]["metrics"]["greedy"],
            "ppo": res["results"]["test"][ppo]["metrics"]["greedy"],
            "diff": cmp_["diff"], "ci95": cmp_["ci95"], "ppo_iters": iters, "minutes": minutes}


def pooled_interval(out: Path, seeds: list[int]) -> tuple[float, float, float]:
    """The mean over seeds of PPO's gain, with a 95% paired-bootstrap interval over the questions.

    Every seed answered the same held-out questions, so each question has a warm-up score and a PPO
    score averaged over the seeds; resampling the questions gives the interval. It covers the luck of
    which questions were asked, not the seed-to-seed spread, which the seeds' own rows show."""
    from reft_mini.stats import bootstrap_paired_diff
    warm, ppo = {}, {}
    for seed in seeds:
        rows = [json.loads(line) for line in (out / f"seed{seed}" / "eval" / "per_problem.jsonl").open()]
        first = rows[0]["checkpoint"]
        for r in rows:
            side = warm if r["checkpoint"] == first else ppo
            side.setdefault(r["id"], []).append(float(r["greedy_correct"]))
    ids = sorted(warm)
    a = [sum(warm[i]) / len(warm[i]) for i in ids]
    b = [sum(ppo[i]) / len(ppo[i]) for i in ids]
    return bootstrap_paired_diff(a, b)


def table(rows: list[dict], pooled: tuple[float, float, float] | None = None) -> str:
    pct = lambda x: f"{100 * x:.1f}"                                          # noqa: E731
    lines = ["| seed | warm-up | PPO | PPO − warm-up (95% CI) | PPO iterations | minutes (warm-up + PPO) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lo, hi = r["ci95"]
        mins = r["minutes"]
        lines.append(f"| {r['seed']} | {pct(r['warmup'])} | {pct(r['ppo'])} | {100 * r['diff']:+.1f} "
                     f"[{100 * lo:+.1f}, {100 * hi:+.1f}] | {r['ppo_iters']} | "
                     f"{mins.get('warmup', float('nan')):.1f} + {mins.get('ppo', float('nan')):.1f} |")
    if len(rows) > 1:
        diffs = [r["diff"] for r in rows]
        spread = f"seeds {min(diffs) * 100:+.1f} to {max(diffs) * 100:+.1f}"
        if pooled is not None:
            spread = f"[{100 * pooled[1]:+.1f}, {100 * pooled[2]:+.1f}]; {spread}"
        lines.append(f"| mean | {pct(statistics.mean(r['warmup'] for r in rows))} | "
                     f"{pct(statistics.mean(r['ppo'] for r in rows))} | {100 * statistics.mean(diffs):+.1f} "
                     f"({spread}) | | |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/reproduce.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    ap.add_argument("--limit", type=int, default=1000, help="held-out questions to evaluate on (default 1000)")
    ap.add_argument("--out", default="runs/reproduce", help="output folder (default runs/reproduce)")
    ap.add_argument("--quick", action="store_true", help="smoke-sized runs (a minute; numbers mean nothing)")
    ap.add_argument("--ppo", default="", help="extra options for train_ppo.py, e.g. '--estimator=rloo'")
    args = ap.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--seeds={args.seeds}: expected comma-separated whole numbers, e.g. --seeds=1,2,3")
    if not seeds or args.limit < 1:
        ap.error("need at least one seed and --limit >= 1")
    out = (REPO / args.out) if not os.path.isabs(args.out) else Path(args.out)
    rows = []
    for seed in seeds:
        rows.append(one_seed(seed, out, args.quick, args.limit, args.ppo.split()))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    pooled = pooled_interval(out, seeds) if len(seeds) > 1 else None
    md = table(rows, pooled)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(md)
    (out / "results.json").write_text(json.dumps({"seeds": rows, "mean_diff_ci95": pooled}, indent=1) + "\n")
    print(md)
    print(f"wrote {out / 'results.md'} and {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
