# tools/gpu_check.py -- ONE command that checks the whole GPU path of this project and prints one table.
#
#   python tools/gpu_check.py                         # on a CUDA GPU: about 5 minutes (see SIZES)
#   python tools/gpu_check.py --quick                 # small sizes: a smoke test of the same steps
#   python tools/gpu_check.py --device=cpu --quick    # the same code on a CPU (what tests/test_gpu_check.py runs)
#   python tools/gpu_check.py --out runs/gpu_check --minutes 6
#
# The scripts have --device=cuda, --compile and --bf16 (bf16 autocast, on by default on CUDA), all written
# and tested on CPUs. This command runs the GPU path end to end and says, in one table, whether it works:
#
#   1. the environment: device name, torch version, bf16 autocast on/off, torch.compile on/off, a probe
#      that a matmul inside reft_mini.dist.autocast really returns bfloat16 on CUDA, and one that the
#      fused log-prob kernel still computes float32 log-probs when called inside it;
#   2. the real scripts, as subprocesses, on this device: a short warm-up (train_warmup.py, with --compile
#      when compiling is on), a short PPO run from its checkpoint (train_ppo.py, eager: the scripts'
#      default), and evaluate.py on both checkpoints; their metrics.jsonl / results.json are read back:
#      seconds per PPO iteration, the first learning iteration's PPO ratio, losses, held-out greedy
#      accuracy before and after PPO, peak memory;
#   3. tools/bench.py's rows that make sense on the device: the fused log-prob kernel against the plain
#      reference (time and peak memory; eager and compiled), sampling tokens/s with the KV cache, training
#      tokens/s (fwd+bwd+AdamW; eager and compiled), one PPO iteration's seconds (eager and compiled);
#   4. the checks below (check_results); the exit status is 1 when any fails, and the table says which;
#   5. the table as markdown and JSON in --out (gpu_check.md, gpu_check.json), printed whole at the end,
#      ready to paste into README's "CUDA" paragraph.
#
# The scripts run first (they matter most, and torch.compile's on-disk cache they fill makes the bench's
# compiles faster); --minutes is the budget for all steps: a step that would start after it is skipped,
# and a skipped step fails the check "every step ran" (the table is still written).
#
# Peak memory of a script: the script runs inside a thin wrapper (`--_child`, below) that executes it
# unchanged with runpy, as `python script.py` would, and at exit records torch.cuda.max_memory_allocated
# (CUDA) or the peak resident set (CPU), and whether the fused kernel's compilation is still working.

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

# Run as `python tools/gpu_check.py`, Python puts tools/ on sys.path (so `import bench` works), not the
# repository root: put the root first, so `reft_mini` is this checkout's.
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path[:1]:
    sys.path.insert(0, str(REPO))

import bench  # noqa: E402 -- tools/bench.py, beside this file
from reft_mini import dist, kernels  # noqa: E402
from reft_mini.config import UserError  # noqa: E402

# ----------------------------------------------------------------------------------------------------------
# Sizes
# ----------------------------------------------------------------------------------------------------------

# Full: sized for one GPU and a ~5-minute run (an H200 machine lent for 15 minutes, start-up included).
# The warm-up is short (60 of the 186 steps of the default two epochs) and PPO runs 10 iterations at the
# default batch (16 questions x 8 samples): 5 value-only iterations, then 5 that train the policy. Both
# evaluate on the same 200 held-out questions, and evaluate.py re-scores both checkpoints on them.
# Quick: the same steps at toy sizes (seconds of work per step on a CPU).
SIZES = {
    "full": dict(
        warmup=["--max_steps=60", "--eval_every=60", "--eval_questions=200"],
        ppo=["--iters=10", "--minutes=none", "--eval_every=10", "--eval_questions=200"],
        evaluate=["--splits=test", "--limit=200", "--k=2", "--n_boot=1000"],
        eval_questions=200,
        bench=bench.FULL,
    ),
    "quick": dict(
        warmup=["--max_steps=3", "--batch_size=8", "--eval_every=3", "--eval_questions=16", "--max_new_tokens=48"],
        # value_warmup_iters=1: iterations 2 and 3 train the policy, so a real PPO ratio is measured
        ppo=["--iters=3", "--minutes=none", "--value_warmup_iters=1", "--lr_warmup_iters=1",
             "--questions_per_iter=4", "--samples_per_question=2", "--minibatch_size=8", "--max_new_tokens=48",
             "--eval_every=3", "--eval_questions=16"],
        evaluate=["--splits=test", "--limit=16", "--k=2", "--n_boot=200"],
        eval_questions=16,
        bench=bench.QUICK,
    ),
}
BENCH_SECTIONS = ("logprob", "kv", "train", "ppo")   # bench.py's rows that run on either device
MIN_SECONDS_TO_START = 20        # a step does not start with less of the --minutes budget left

# Thresholds of the checks.
RATIO_TOLERANCE = 0.05           # |first learning iteration's mean PPO ratio - 1|
ACCURACY_DROP_POINTS = 10.0      # held-out accuracy after PPO >= before - this many points
REPRODUCE_POINTS = 2.0           # evaluate.py vs the scripts' own evaluation (at least one question)
LOGPROB_TOLERANCE = 1e-3         # nats: the fused kernel under autocast vs the float32 reference

# Text in a script's output that means torch.compile fell back to eager code: kernels.py's one warning,
# and Dynamo giving up on a function after too many recompilations.
COMPILE_FALLBACK_MARKERS = ("torch.compile failed", "recompile_limit", "cache_size_limit")


# ----------------------------------------------------------------------------------------------------------
# The wrapper a script runs in (a separate process)
# ----------------------------------------------------------------------------------------------------------


def child_main(report: str, script: str, script_args: list[str]) -> None:
    """Run `script` exactly as `python script args` would (runpy, as __main__), and at exit write to
    `report` (JSON) its peak memory and whether the fused kernel's compilation still works."""
    import atexit
    import runpy

    def write_report() -> None:
        out = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}   # Linux: KiB
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            out["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
        mod = sys.modules.get("reft_mini.kernels")
        out["kernel_compile_available"] = None if mod is None else mod.compile_available()
        try:   # Dynamo's own counters: how many graphs it compiled, how many graph breaks it met
            from torch._dynamo.utils import counters
            out["dynamo_unique_graphs"] = int(counters["stats"].get("unique_graphs", 0))
            out["dynamo_graph_breaks"] = int(sum(counters["graph_break"].values()))
        except Exception:  # noqa: BLE001 -- informative only
            pass
        Path(report).write_text(json.dumps(out))

    atexit.register(write_report)
    sys.argv = [script, *script_args]
    runpy.run_path(script, run_name="__main__")


# ----------------------------------------------------------------------------------------------------------
# Steps
# ----------------------------------------------------------------------------------------------------------


def fmt_seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 60 else f"{int(s // 60)} min {s % 60:02.0f} s"


def fmt_bytes(b: float | None) -> str:
    return "-" if b is None else f"{b / 2**20:,.0f} MiB"


class Run:
    """The state of one check: the budget, the steps taken, the measurements, and the raw numbers."""

    def __init__(self, out: Path, minutes: float):
        self.out = out
        self.start = time.perf_counter()
        self.deadline = self.start + 60 * minutes
        self.steps: list[dict] = []          # name, seconds, status (ok / failed / skipped), note
        self.measurements: list[dict] = []   # section, name, value (float or None), text, detail
        self.summary: dict = {"numbers": {}, "compile_problems": [], "steps_not_ok": []}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def step(self, name: str, fn) -> object:
        """Run one step (or skip it when the budget is spent), print and record its time and status."""
        if self.left() < MIN_SECONDS_TO_START:
            self.steps.append({"name": name, "seconds": 0.0, "status": "skipped", "note": "--minutes budget spent"})
            self.summary["steps_not_ok"].append(f"{name} (skipped: budget)")
            print(f"[gpu_check] {name}: SKIPPED, the --minutes budget is spent", flush=True)
            return None
        print(f"[gpu_check] {name} ...", flush=True)
        t0 = time.perf_counter()
        status, note, result = "ok", "", None
        try:
            result = fn()
        except StepFailed as e:
            status, note = "failed", str(e)
        except Exception as e:  # noqa: BLE001 -- a failing step is a result of the check, not a crash
            status, note = "failed", f"{type(e).__name__}: {e}"
        dt = time.perf_counter() - t0
        self.steps.append({"name": name, "seconds": dt, "status": status, "note": note})
        if status != "ok":
            self.summary["steps_not_ok"].append(f"{name} ({note.splitlines()[0][:200] if note else status})")
        print(f"[gpu_check] {name}: {status} in {fmt_seconds(dt)} (elapsed {fmt_seconds(self.elapsed())})"
              + (f"\n{note}" if note else ""), flush=True)
        return result

    def measure(self, section: str, name: str, value: float | None, text: str | None = None,
                detail: str = "") -> None:
        """One row of the measurement table (value None: a text-only row)."""
        if text is None:
            text = "-" if value is None else f"{value:.4g}"
        self.measurements.append({"section": section, "name": name, "value": value, "text": text, "detail": detail})
        if value is not None:
            self.summary["numbers"][f"{section}: {name}"] = float(value)

    def numbers(self, prefix: str, rows: list[dict]) -> None:
        """Every numeric field of metrics rows, for the 'every number finite' check."""
        for i, r in enumerate(rows):
            for k, v in r.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.summary["numbers"][f"{prefix}[{i}].{k}"] = float(v)


class StepFailed(Exception):
    """A step's own failure (a script's exit status, a missing file), with the message to show."""


def run_script(run: Run, name: str, script: str, args: list[str], device: torch.device) -> dict:
    """Run one of the scripts in a subprocess (through child_main), its output to <out>/<name>.log.
    Returns the child's report (peak memory, compile state) plus the log text and the wall time."""
    log_path, report = run.out / f"{name}.log", run.out / f"{name}.report.json"
    report.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", str(report), str(REPO / script), *args]
    print(f"[gpu_check]   python {script} {' '.join(args)}", flush=True)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        try:
            proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True,
                                  timeout=max(1.0, run.left()), env={**os.environ, "PYTHONUNBUFFERED": "1"})
        except subprocess.TimeoutExpired:
            raise StepFailed(f"{script} ran past the --minutes budget; its output: {log_path}") from None
    wall = time.perf_counter() - t0
    text = log_path.read_text(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(text.splitlines()[-25:])
        raise StepFailed(f"{script} exited with status {proc.returncode}; last lines of {log_path}:\n{tail}")
    info = json.loads(report.read_text()) if report.is_file() else {}
    # torch.compile falling back to eager code is a failed check, not a footnote.
    for marker in COMPILE_FALLBACK_MARKERS:
        if marker in text:
            line = next(ln for ln in text.splitlines() if marker in ln)
            run.summary["compile_problems"].append(f"{script}: {line.strip()[:300]}")
    if "--compile" in args and info.get("kernel_compile_available") is False:
        run.summary["compile_problems"].append(f"{script}: the fused kernel's compilation was disabled")
    info.update(log=text, wall_s=wall)
    return info


def peak_of(info: dict, device: torch.device) -> tuple[float | None, str]:
    """A script's peak memory and what it counts: CUDA allocations on a GPU, the process's RSS on a CPU."""
    if device.type == "cuda" and "peak_cuda_bytes" in info:
        return float(info["peak_cuda_bytes"]), "torch.cuda.max_memory_allocated"
    return (float(info["peak_rss_bytes"]) if "peak_rss_bytes" in info else None), "peak resident memory (RSS)"


def read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        raise StepFailed(f"{path} was not written")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def step_environment(run: Run, device: torch.device, bf16: bool) -> None:
    """Device, versions, and two probes of the scripts' precision (dist.autocast with enabled=None, their
    default): a matmul inside it must come out in bfloat16 on CUDA (float32 on a CPU); and the fused
    log-prob kernel called inside it, as train_warmup.py calls it, must still give float32-accurate
    log-probs (its logits matmul must not be autocast to bfloat16: at logits of size ~15, bfloat16's
    3 significant digits put errors of ~0.05 nats on every log-prob)."""
    a = torch.randn(16, 16, device=device)
    with dist.autocast(device):
        dtype = (a @ a).dtype
    run.summary.update(bf16_expected=bf16, bf16_dtype=str(dtype).removeprefix("torch."))
    run.measure("environment", "matmul dtype inside dist.autocast", None, str(dtype).removeprefix("torch."),
                "bfloat16 expected on CUDA (bf16 autocast), float32 on CPU")
    if device.type == "cuda":
        run.summary["bf16_supported"] = bool(torch.cuda.is_bf16_supported())

    g = torch.Generator().manual_seed(0)             # demo sizes: C = 128, V = 1024, logits up to ~15
    h = torch.randn(1, 256, 128, generator=g).to(device)
    w = (torch.randn(1024, 128, generator=g) * 0.3).to(device)
    y = torch.randint(0, 1024, (1, 256), generator=g).to(device)
    ref, _ = kernels.reference_token_logprobs(h, w, y)               # float32, outside autocast
    with dist.autocast(device):
        logp, _ = kernels.token_logprobs(h, w, y, compile=False)
    err = float((logp.float() - ref).abs().max())
    run.summary["kernel_autocast_err"] = err
    run.measure("environment", "fused log-probs inside dist.autocast: max error vs float32", err, f"{err:.1e}",
                "nats; train_warmup.py calls the kernel inside autocast")


def step_warmup(run: Run, device: torch.device, compile: bool, sizes: dict) -> None:
    args = [f"--device={device.type}", *(["--compile"] if compile else []), *sizes["warmup"],
            f"--out_dir={run.out / 'warmup'}", "--progress=false"]
    info = run_script(run, "warmup", "train_warmup.py", args, device)
    rows = read_metrics(run.out / "warmup" / "metrics.jsonl")
    run.numbers("warmup", rows)
    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval_acc" in r]
    if not train or not evals:
        raise StepFailed("train_warmup.py logged no training step or no evaluation")
    peak, how = peak_of(info, device)
    what = f"{train[-1]['step']} steps{', compiled' if compile else ''}"
    run.measure("warm-up", f"training loss, first -> last step ({what})", train[-1]["loss"],
                f"{train[0]['loss']:.3f} -> {train[-1]['loss']:.3f}")
    run.measure("warm-up", "held-out loss / greedy accuracy at the end", evals[-1]["eval_acc"],
                f"{100 * evals[-1]['eval_acc']:.1f}%", f"held-out loss {evals[-1]['eval_loss']:.3f}")
    run.measure("warm-up", "wall time of the script", info["wall_s"], fmt_seconds(info["wall_s"]),
                "includes start-up, compilation and evaluation")
    run.measure("warm-up", "peak memory", peak, fmt_bytes(peak), how)
    if "dynamo_unique_graphs" in info and compile:
        run.measure("warm-up", "torch.compile graphs / graph breaks", info["dynamo_unique_graphs"],
                    f"{info['dynamo_unique_graphs']} / {info.get('dynamo_graph_breaks', 0)}",
                    "Dynamo's counters (informative)")
    run.summary["warmup_acc"] = evals[-1]["eval_acc"]


def step_ppo(run: Run, device: torch.device, sizes: dict) -> None:
    args = [f"--device={device.type}", f"--init={run.out / 'warmup' / 'latest.pt'}", *sizes["ppo"],
            f"--out_dir={run.out / 'ppo'}", "--progress=false"]
    info = run_script(run, "ppo", "train_ppo.py", args, device)
    rows = read_metrics(run.out / "ppo" / "metrics.jsonl")
    run.numbers("ppo", rows)
    iters = [r for r in rows if "ratio_mean" in r]
    evals = [r for r in rows if "eval_acc" in r]
    learning = [r for r in iters if not r.get("value_only")]
    if not iters or len(evals) < 2 or not learning:
        raise StepFailed("train_ppo.py logged no learning iteration or fewer than two evaluations")
    secs = [r["t_sample"] + r["t_score"] + r["t_learn"] for r in iters]
    steady = secs[1:] or secs                       # the first iteration also pays CUDA's start-up costs
    first = learning[0]
    run.measure("PPO", f"seconds per iteration (median of iterations 2-{len(secs)})", statistics.median(steady),
                f"{statistics.median(steady):.2f} s",
                f"first iteration {secs[0]:.2f} s; sampling {statistics.median(r['t_sample'] for r in iters[1:] or iters):.2f} s,"
                f" learning {statistics.median(r['t_learn'] for r in iters[1:] or iters):.2f} s (medians)")
    run.measure("PPO", f"mean PPO ratio, first learning iteration ({first['iter']})", first["ratio_mean"],
                f"{first['ratio_mean']:.4f}", f"approx. KL {first.get('approx_kl', float('nan')):.2e}; "
                "under bf16 the sampler's and the learner's rounding differ, and it shows here")
    run.measure("PPO", "policy / value loss, last iteration", iters[-1]["pg_loss"],
                f"{iters[-1]['pg_loss']:.4f} / {iters[-1]['vf_loss']:.4f}",
                f"KL to reference {iters[-1]['kl']:.3f} nats/response, {len(iters)} iterations")
    run.measure("PPO", "held-out greedy accuracy before -> after", evals[-1]["eval_acc"],
                f"{100 * evals[0]['eval_acc']:.1f}% -> {100 * evals[-1]['eval_acc']:.1f}%",
                f"{sizes['eval_questions']} questions of the synthetic test split")
    run.measure("PPO", "wall time of the script", info["wall_s"], fmt_seconds(info["wall_s"]),
                "includes start-up and the two evaluations")
    peak, how = peak_of(info, device)
    run.measure("PPO", "peak memory", peak, fmt_bytes(peak), how)
    run.summary.update(first_ratio_mean=first["ratio_mean"],
                       ppo_losses=[r[k] for r in iters for k in ("pg_loss", "vf_loss")],
                       acc_before=evals[0]["eval_acc"], acc_after=evals[-1]["eval_acc"],
                       seconds_per_iter=statistics.median(steady))


def step_evaluate(run: Run, device: torch.device, sizes: dict) -> None:
    ckpts = [str(run.out / "warmup" / "latest.pt"), str(run.out / "ppo" / "latest.pt")]
    args = [*ckpts, f"--device={device.type}", *sizes["evaluate"], f"--out={run.out / 'eval'}", "--progress=false"]
    info = run_script(run, "evaluate", "evaluate.py", args, device)
    path = run.out / "eval" / "results.json"
    if not path.is_file():
        raise StepFailed(f"{path} was not written")
    results = json.loads(path.read_text())["results"]["test"]
    greedy = []
    for name, ck in zip(("warm-up", "PPO"), ckpts):
        m = results[ck]["metrics"]
        greedy.append(m["greedy"])
        run.numbers(f"evaluate.{name}", [m])
        others = ", ".join(f"{k} {100 * v:.1f}%" for k, v in m.items() if k != "greedy")
        run.measure("evaluate.py", f"{name} checkpoint: greedy accuracy", m["greedy"], f"{100 * m['greedy']:.1f}%",
                    others)
    run.measure("evaluate.py", "wall time of the script", info["wall_s"], fmt_seconds(info["wall_s"]),
                "both checkpoints, greedy and sampled")
    run.summary.update(eval_greedy_warmup=greedy[0], eval_greedy_ppo=greedy[1])


def step_bench(run: Run, section: str, device: torch.device, compile: bool, sizes: dict) -> None:
    """One section of tools/bench.py, in this process; compiled variants when `compile`. Any warning
    that kernels.py fell back to eager code is recorded as a compile problem."""
    s = dict(sizes["bench"])
    threads = torch.get_num_threads() if device.type == "cuda" else 1   # the bench's CPU default: 1 thread
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    dynamo_log = _DynamoWarnings()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if section == "ppo":
                rows = bench.bench_ppo(s, s["reps"], device, compile=False)
                if compile:
                    compiled = bench.bench_ppo(s, s["reps"], device, compile=True, layout=False)
                    rows += [dict(r, id=r["id"] + "_compiled") for r in compiled if r["id"] == "ppo_iteration_s"]
            else:
                rows = bench.section_runners(s, s["reps"], threads, device, compile)[section]()
    finally:
        torch.set_num_threads(old_threads)
        dynamo_log.close()
    for w in caught:
        if any(m in str(w.message) for m in COMPILE_FALLBACK_MARKERS):
            run.summary["compile_problems"].append(f"bench {section}: {str(w.message)[:300]}")
    run.summary["compile_problems"] += [f"bench {section}: {m[:300]}" for m in dynamo_log.messages]
    if compile and not kernels.compile_available():
        run.summary["compile_problems"].append(f"bench {section}: the fused kernel's compilation was disabled")
    for r in rows:
        label = r["label"].split(" ", 1)[1] if r["label"][:1].isdigit() else r["label"]   # drop the row number
        target = "" if r["met"] is None else f"; target {bench._fmt_target(r)}: {'met' if r['met'] else 'MISSED'}"
        run.measure(f"bench {section}", label.strip(), r["value"], bench._fmt(r["value"], r["unit"]),
                    r["detail"] + target)
    run.summary.setdefault("bench_rows", []).extend(rows)


class _DynamoWarnings(logging.Handler):
    """Collects Dynamo's warnings that it gave up compiling a function (it then runs it eagerly)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.logger = logging.getLogger("torch._dynamo")
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if any(m in msg for m in COMPILE_FALLBACK_MARKERS):
            self.messages.append(msg)

    def close(self) -> None:
        self.logger.removeHandler(self)
        super().close()


# ----------------------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------------------


def check_results(summary: dict) -> list[dict]:
    """The pass/fail checks, from the numbers the steps collected. Each check: name, ok (bool), value
    (what was seen), condition (what passes). A number the check needs but no step produced fails it."""
    checks = []

    def add(name: str, ok: bool, value: str, condition: str) -> None:
        checks.append({"name": name, "ok": bool(ok), "value": value, "condition": condition})

    not_ok = summary.get("steps_not_ok", [])
    add("every step ran", not not_ok, "; ".join(not_ok) or "all ok", "no step failed or was skipped")

    numbers = summary.get("numbers", {})
    bad = [k for k, v in numbers.items() if not math.isfinite(v)]
    add("every number finite", numbers and not bad, f"{len(bad)} of {len(numbers)} not finite"
        + (f": {', '.join(bad[:5])}" if bad else ""), "no nan / inf anywhere")

    r = summary.get("first_ratio_mean")
    add("first PPO ratio near 1", r is not None and math.isfinite(r) and abs(r - 1) <= RATIO_TOLERANCE,
        "not measured" if r is None else f"{r:.4f}", f"|mean ratio - 1| <= {RATIO_TOLERANCE}")

    losses = summary.get("ppo_losses")
    add("PPO losses finite", bool(losses) and all(math.isfinite(x) for x in losses),
        "not measured" if not losses else f"{sum(not math.isfinite(x) for x in losses)} of {len(losses)} not finite",
        "policy and value loss finite in every iteration")

    expected = "bfloat16" if summary.get("bf16_expected") else "float32"
    dtype = summary.get("bf16_dtype")
    ok = dtype == expected and summary.get("bf16_supported", True)
    add("bf16 autocast active" if summary.get("bf16_expected") else "bf16 autocast off (CPU default)", ok,
        f"matmul in dist.autocast -> {dtype}" + ("" if summary.get("bf16_supported", True) else
                                                 "; torch.cuda.is_bf16_supported() is False"),
        f"{expected}")

    err = summary.get("kernel_autocast_err")
    add("log-probs float32 under autocast", err is not None and err <= LOGPROB_TOLERANCE,
        "not measured" if err is None else f"max error {err:.1e} nats",
        f"fused kernel inside dist.autocast within {LOGPROB_TOLERANCE:g} of float32")

    if summary.get("compile"):
        problems = summary.get("compile_problems", [])
        add("torch.compile without fallback", not problems, "; ".join(problems) or "no fallback, no warning",
            "no eager fallback anywhere")
    else:
        add("torch.compile without fallback", True, "compile off", "(not asked for)")

    before, after = summary.get("acc_before"), summary.get("acc_after")
    add("held-out accuracy kept", before is not None and after is not None
        and after >= before - ACCURACY_DROP_POINTS / 100,
        "not measured" if before is None or after is None else f"{100 * before:.1f}% -> {100 * after:.1f}%",
        f"after >= before - {ACCURACY_DROP_POINTS:g} points")

    # The same checkpoint, the same questions, greedy decoding: the warm-up's last evaluation, PPO's
    # evaluation before its first iteration and evaluate.py must agree (up to rare bf16 ties on a GPU).
    n = summary.get("eval_questions") or 1
    tol = max(REPRODUCE_POINTS / 100, 1 / n) + 1e-9
    pairs = {"warm-up (train_warmup.py / train_ppo.py / evaluate.py)":
             (summary.get("warmup_acc"), before, summary.get("eval_greedy_warmup")),
             "PPO (train_ppo.py / evaluate.py)": (after, summary.get("eval_greedy_ppo"))}
    seen = all(x is not None for xs in pairs.values() for x in xs)
    ok = seen and all(max(xs) - min(xs) <= tol for xs in pairs.values())
    add("evaluate.py reproduces the scripts' accuracy", ok,
        "; ".join(f"{k}: {' / '.join('-' if x is None else f'{100 * x:.1f}%' for x in xs)}" for k, xs in pairs.items()),
        f"within {100 * tol:.1f} points (same checkpoint and questions, greedy)")
    return checks


# ----------------------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------------------


def _cell(x: str) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def markdown(result: dict) -> str:
    """The whole report as markdown: a summary line, then the steps, the measurements and the checks."""
    env = result["environment"]
    lines = [f"**GPU check** (`{result['command']}`): {env['device_name']}; torch {env['torch']}"
             + (f" (CUDA {env['cuda']})" if env.get("cuda") else "")
             + f"; bf16 autocast {'on' if env['bf16'] else 'off'}; torch.compile {'on' if env['compile'] else 'off'}; "
             f"{'quick' if result['quick'] else 'full'} sizes; {fmt_seconds(result['seconds'])} in all; "
             f"**{'all checks passed' if result['passed'] else 'FAILED: ' + ', '.join(c['name'] for c in result['checks'] if not c['ok'])}**."
             + (" Quick sizes: the bench's ratios are indicative only (its targets apply to full sizes)."
                if result["quick"] else ""),
             "", "| step | time | status |", "|---|---:|---|"]
    for s in result["steps"]:
        lines.append(f"| {_cell(s['name'])} | {fmt_seconds(s['seconds'])} | {s['status']} |")
    lines += ["", "| measurement | value | detail |", "|---|---:|---|"]
    for m in result["measurements"]:
        lines.append(f"| {_cell(m['section'])}: {_cell(m['name'])} | {_cell(m['text'])} | {_cell(m['detail'])} |")
    lines += ["", "| check | result | seen | passes when |", "|---|---|---|---|"]
    for c in result["checks"]:
        lines.append(f"| {_cell(c['name'])} | {'pass' if c['ok'] else '**FAIL**'} | {_cell(c['value'])} | "
                     f"{_cell(c['condition'])} |")
    return "\n".join(lines) + "\n"


def finish(result: dict, out: Path) -> int:
    """Run the checks on result['summary'], write gpu_check.md / gpu_check.json into `out`, print the
    table; the exit status: 0 when every check passed, 1 otherwise (the failed ones are listed)."""
    result["checks"] = check_results(result["summary"])
    result["passed"] = all(c["ok"] for c in result["checks"])
    text = markdown(result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.md").write_text(text)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    print("\n" + text)
    print(f"wrote {out / 'gpu_check.md'} and {out / 'gpu_check.json'}")
    failed = [c["name"] for c in result["checks"] if not c["ok"]]
    if failed:
        print(f"FAILED checks: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def environment(device: torch.device, bf16: bool, compile: bool) -> dict:
    env = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
           "bf16": bf16, "compile": compile, "cpu_cores": os.cpu_count()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(device_name=f"{props.name}, {props.total_memory / 2**30:.0f} GiB", cuda=torch.version.cuda)
    else:
        env["device_name"] = f"CPU ({bench.machine_info(1)['cpu']}, {os.cpu_count()} cores)"
    return env


# ----------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--_child"]:                      # internal: the wrapper a script runs in
        child_main(argv[1], argv[2], argv[3:])
        return 0
    parser = argparse.ArgumentParser(prog="python tools/gpu_check.py", description="Check the whole GPU path "
                                     "(scripts, bf16, torch.compile, benchmark rows) and print one table.")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (the same steps, for tests)")
    parser.add_argument("--quick", action="store_true", help="toy sizes: a smoke test of every step")
    parser.add_argument("--out", default="runs/gpu_check", help="folder for the table, the JSON and the runs")
    parser.add_argument("--minutes", type=float, default=6.0,
                        help="time budget; steps that would start after it are skipped (a failed check)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the warm-up and the bench's compiled variants (default: on for CUDA)")
    args = parser.parse_args(argv)
    try:
        device = dist.pick_device(args.device)
    except UserError as e:
        parser.error(str(e))
    compile = device.type == "cuda" if args.compile is None else args.compile
    bf16 = device.type == "cuda"                      # the scripts' --bf16 default (None: on with CUDA)
    sizes = SIZES["quick" if args.quick else "full"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = Run(out, args.minutes)
    run.summary.update(compile=compile, eval_questions=sizes["eval_questions"])
    env = environment(device, bf16, compile)
    print(f"[gpu_check] device {env['device_name']}; torch {env['torch']}"
          + (f", CUDA {env['cuda']}" if env.get("cuda") else "")
          + f"; bf16 autocast {'on' if bf16 else 'off'}; torch.compile {'on' if compile else 'off'}; "
          f"{'quick' if args.quick else 'full'} sizes; budget {args.minutes:g} min", flush=True)

    run.step("environment and bf16 probe", lambda: step_environment(run, device, bf16))
    run.step("warm-up (train_warmup.py" + (", --compile)" if compile else ")"),
             lambda: step_warmup(run, device, compile, sizes))
    run.step("PPO (train_ppo.py)", lambda: step_ppo(run, device, sizes))
    run.step("evaluation (evaluate.py)", lambda: step_evaluate(run, device, sizes))
    for section in BENCH_SECTIONS:
        run.step(f"bench: {section}", lambda section=section: step_bench(run, section, device, compile, sizes))

    command = " ".join(["python tools/gpu_check.py", *argv])
    result = {"command": command, "quick": args.quick, "environment": env, "seconds": run.elapsed(),
              "steps": run.steps, "measurements": run.measurements,
              "summary": {k: v for k, v in run.summary.items() if k != "bench_rows"},
              "bench_rows": run.summary.get("bench_rows", [])}
    return finish(result, out)


if __name__ == "__main__":
    raise SystemExit(main())
