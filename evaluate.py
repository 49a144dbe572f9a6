"""Evaluating checkpoints the way ReFT does, and comparing them honestly.

ReFT (Luong et al., 2024, Sec. 4) reports three numbers per model:
  * greedy accuracy: one answer per question, temperature 0;
  * majority voting (maj@k): sample k chains of thought at temperature 1.0, extract their answers,
    take the most common one (the paper: k = 100);
  * reranking (rerank@k): sample k chains of thought and keep the one a separately trained outcome
    scorer likes best.
We add pass@k (is any of k samples right? the unbiased estimator of Chen et al., 2021), the share of
answers with nothing extractable (reward 0), and for every checkpoint after the first its difference
to the first with a 95% paired-bootstrap interval and McNemar's p-value: on a few hundred questions a
few points can be noise, and the table should say so.

    python evaluate.py runs/warmup/best.pt runs/ppo/best.pt          # SFT baseline vs ReFT, side by side
    python evaluate.py runs/ppo/best.pt --k=1,4,16 --limit=100      # quick look
    python evaluate.py CKPT --dataset=gsm8k --data_path=$DATA_DIR/gsm8k --splits=test
    python evaluate.py --help

Writes (to --out, default runs/eval): results.md (the tables printed at the end), results.json (all
numbers) and per_problem.jsonl (every question, its greedy completion, answer and correctness).
Everything random is seeded: the same checkpoints, options and --seed give the same results.json.

Reading order: Config -> validate() -> main() -> evaluate_split() -> score() -> compare(). Sampling, the value pass
and answer reading are reft_mini/evaluation.py: the same path the training scripts evaluate with.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from reft_mini import data, reward
from reft_mini.checkpoint import load_checkpoint, model_from_checkpoint
from reft_mini.config import (SEED, UserError, above, at_least, check, check_writable_dir, device_name, main_guard,
                              one_of, parse_config)
from reft_mini.dist import pick_device
from reft_mini.evaluation import complete, score_completion
from reft_mini.stats import bootstrap_paired_diff, mcnemar, pass_at_k
from reft_mini.tokenizer import TokenizerError, get_tokenizer

SYNTHETIC_SPLITS = "test,svamp_test,mathqa_test"  # GSM8K-, SVAMP- and MathQA-style held-out sets


@dataclass
class Config:
    """Greedy, maj@k, pass@k and rerank@k of one or more checkpoints; differences to the first one."""
    checkpoints: list[str] = field(default_factory=list)  # The checkpoint files to evaluate; the first one is the
                                                          # baseline the others are compared with.
    dataset: str | None = None          # The data set: synthetic, gsm8k, svamp, mathqa, mathqa-numeric or reft (none:
                                        # the first checkpoint's).
    data_path: str | None = None        # A local file or folder that holds a real data set (none: the first
                                        # checkpoint's).
    splits: str | None = None           # Comma-separated splits to evaluate on (none: test,svamp_test,mathqa_test for
                                        # synthetic data, else the checkpoint's eval_split).
    limit: int | None = None            # Evaluate only the first N problems of each split, for a quick look (none:
                                        # all).
    k: str = "1,4,16"                   # Comma-separated values of k for maj@k, pass@k and rerank@k; an empty value
                                        # reports greedy accuracy only.
    samples: int | None = None          # Samples per problem behind the sampled metrics (none: the largest k).
    temperature: float = 1.0            # The sampling temperature (the paper: 1.0).
    max_new_tokens: int | None = None   # The longest answer, in tokens (none: the checkpoint's training setting, else
                                        # 160).
    batch_size: int = 64                # Sequences per generation batch; lower it if memory runs out.
    n_boot: int = 10000                 # Bootstrap replicates behind each 95% interval.
    seed: int = 0                       # The seed of sampling and of the bootstrap: the same seed gives the same
                                        # results.json.
    out: str = "runs/eval"              # The output folder: results.md, results.json, per_problem.jsonl.
    device: str = "auto"                # Where to run: auto (CUDA when there is a GPU), cpu, cuda or cuda:N.
    progress: bool = True               # Show progress bars.


# What each option may be, checked right after parsing (config.check); None always passes.
RULES = {
    "dataset": one_of(*data.DATASETS), "device": device_name, "seed": SEED, "limit": at_least(1),
    "samples": at_least(0), "max_new_tokens": at_least(1), "batch_size": at_least(1), "n_boot": at_least(1),
    "temperature": above(0),
}


def validate(cfg: Config, given=frozenset()) -> None:
    """Refuse a mistake on the command line before any checkpoint is loaded (one line, exit 2)."""
    if not cfg.checkpoints:
        raise UserError("no checkpoint given: python evaluate.py CKPT [CKPT ...] (see --help)")
    check(cfg, RULES)
    parse_ks(cfg)
    if cfg.splits is not None and not [s for s in cfg.splits.split(",") if s.strip()]:
        raise UserError("--splits is empty: name at least one split, e.g. --splits=test")
    for path in cfg.checkpoints:
        if not Path(path).is_file():
            raise UserError(f"checkpoint {path} not found (train one first, or pass the right path)")
    check_writable_dir("out", cfg.out)


# Metrics whose per-problem values are 0/1: these also get McNemar's test. pass@k is a per-problem
# probability, so it only gets the bootstrap interval.
def is_binary(metric: str) -> bool:
    return metric == "greedy" or metric.startswith(("maj@", "rerank@"))


# ----------------------------------------------------------------------------------------------------
# Input checks and loading

def parse_ks(cfg: Config) -> tuple[list[int], int]:
    """--k=1,4,16 -> [1, 4, 16] and the number of samples per problem (the largest k by default)."""
    try:
        ks = sorted({int(x) for x in cfg.k.replace(" ", "").split(",") if x})
    except ValueError:
        raise UserError(f"--k={cfg.k}: expected comma-separated whole numbers, e.g. --k=1,4,16") from None
    if any(k < 1 for k in ks):
        raise UserError(f"--k={cfg.k}: every k must be at least 1")
    n = cfg.samples if cfg.samples is not None else (max(ks) if ks else 0)
    if ks and n < max(ks):
        raise UserError(f"k={max(ks)} is larger than the number of samples per problem (--samples={n}); "
                        f"raise --samples or drop that k")
    if n and cfg.temperature <= 0:
        raise UserError(f"--temperature={cfg.temperature}: sampled metrics need a temperature > 0 "
                        "(greedy accuracy is always reported; use --k= for greedy only)")
    return ks, n


def load_model(path: str, device):
    """A checkpoint -> (model in eval mode, tokenizer, CoT style, its script config, kind)."""
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or "model" not in ckpt:
        raise UserError(f"{path} is not a reft_mini checkpoint (no model_config/model); "
                        "pass a .pt file written by train_warmup.py or train_ppo.py")
    model = model_from_checkpoint(ckpt, path).to(device).eval()
    run_cfg = ckpt.get("config") or {}
    try:
        enc = get_tokenizer(ckpt.get("tokenizer", "reft_mini"), run_cfg.get("tokenizer_path"))
    except TokenizerError as e:
        raise UserError(f"{path}: {e}") from None
    if enc.n_vocab != model.config.vocab_size:
        raise UserError(f"{path}: the model has a vocabulary of {model.config.vocab_size} tokens but its tokenizer "
                        f"{ckpt.get('tokenizer', 'reft_mini')!r} has {enc.n_vocab}; the checkpoint was trained "
                        "with another tokenizer file")
    style = run_cfg.get("cot", "nl")
    if style not in data.STYLES:
        raise UserError(f"{path}: unknown chain-of-thought style {style!r} in its config")
    return model, enc, style, run_cfg, ckpt.get("kind", "unknown")


def load_split(dataset: str, split: str, style: str, path: str | None, limit: int | None) -> list[data.Problem]:
    try:
        problems = data.load_problems(dataset, split, style, path)
    except (ValueError, KeyError, FileNotFoundError) as e:
        msg = str(e).strip().split("\n")[0]
        raise UserError(f"cannot load split {split!r} of data set {dataset!r}: {msg}") from None
    if not problems:
        raise UserError(f"split {split!r} of data set {dataset!r} has no problems")
    return problems[:limit] if limit is not None else problems


def unique_labels(paths: list[str]) -> list[str]:
    """Checkpoint column names: the paths as given, with #2, #3 added when a file is passed twice.
    (Also makes problem ids unique, should a data file repeat one.)"""
    labels, seen = [], {}
    for p in paths:
        seen[p] = seen.get(p, 0) + 1
        labels.append(p if seen[p] == 1 else f"{p}#{seen[p]}")
    return labels


# ----------------------------------------------------------------------------------------------------
# Answering (the one path: reft_mini/evaluation.py) and per-problem records

def evaluate_split(model, enc, style: str, problems: list[data.Problem], n_samples: int, cfg: Config,
                   max_new_tokens: int, seed: int, bar=None) -> list[dict]:
    """One record per problem: greedy completion/answer/reward, and per-sample answers, rewards, values.

    A prompt that does not fit the model's context cannot be answered at all; it stays in the split
    (so every checkpoint is scored on the same questions, out of the same total) as "no answer".
    """
    greedy, _ = complete(model, enc, problems, style, max_new_tokens, 0.0, 1, cfg.batch_size, None, bar)
    samples = values = None
    if n_samples:
        gen = torch.Generator(device=model.lm_weight().device).manual_seed(seed)
        samples, values = complete(model, enc, problems, style, max_new_tokens, cfg.temperature, n_samples,
                                   cfg.batch_size, gen, bar, with_values=True)
    records = []
    for i, p in enumerate(problems):
        too_long = not greedy[i]
        g_answer, g_reward = (None, 0.0) if too_long else score_completion(p.question, p.answer, greedy[i][0], style)
        rec = {"id": p.id, "question": p.question, "gold": p.answer, "greedy_completion": "" if too_long else greedy[i][0],
               "greedy_answer": g_answer, "greedy_reward": g_reward, "too_long": too_long}
        if n_samples:
            if too_long:
                answers, rewards, vals = [None] * n_samples, [0.0] * n_samples, [0.0] * n_samples
            else:
                answers, rewards = map(list, zip(*(score_completion(p.question, p.answer, c, style)
                                                   for c in samples[i])))
                vals = values[i]
            rec.update(sample_answers=answers, sample_rewards=rewards, sample_values=vals)
        records.append(rec)
    if bar is not None:
        bar.update(sum(r["too_long"] for r in records) * (1 + n_samples))
    return records


def score(rec: dict, ks: list[int]) -> dict[str, float]:
    """Per-problem metric values (0/1, or a probability for pass@k) from one problem's record."""
    m = {"greedy": float(rec["greedy_reward"] == 1.0)}
    if "sample_answers" in rec:
        answers, rewards, values = rec["sample_answers"], rec["sample_rewards"], rec["sample_values"]
        n, c = len(rewards), sum(r == 1.0 for r in rewards)
        for k in ks:  # maj@k and rerank@k look at the FIRST k samples; pass@k uses all n, unbiased
            m[f"maj@{k}"] = float(reward.answers_match(reward.majority_vote(answers[:k]), rec["gold"]))
        for k in ks:
            m[f"pass@{k}"] = pass_at_k(n, c, k)
        for k in ks:
            best = max(range(k), key=lambda j: values[j])  # ties (e.g. an all-zero head): the first sample
            m[f"rerank@{k}"] = float(rewards[best] == 1.0)
    m["no answer (greedy)"] = float(rec["greedy_reward"] == 0.0)
    if "sample_rewards" in rec:
        m["no answer (samples)"] = sum(r == 0.0 for r in rec["sample_rewards"]) / len(rec["sample_rewards"])
    return m


# ----------------------------------------------------------------------------------------------------
# Comparisons

def compare(base: dict[str, dict], other: dict[str, dict], metrics: list[str], n_boot: int, seed: int) -> dict:
    """Differences other - base, paired by problem id (both checkpoints answered the same questions)."""
    ids = [i for i in base if i in other]
    out = {}
    for metric in metrics:
        a = [base[i][metric] for i in ids]
        b = [other[i][metric] for i in ids]
        diff, lo, hi = bootstrap_paired_diff(a, b, n_boot=n_boot, seed=seed)
        out[metric] = {"n_paired": len(ids), "diff": diff, "ci95": [lo, hi],
                       "mcnemar_p": mcnemar(a, b) if is_binary(metric) and ids else None}
    return out


def pct(x: float | None, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def markdown(results: dict) -> str:
    """One table per split: value per checkpoint; difference to the first, its 95% CI and McNemar's p."""
    labels = [c["label"] for c in results["checkpoints"]]
    untrained = {c["label"] for c in results["checkpoints"] if c["value_head"] != "trained"}
    lines = ["# Evaluation", ""]
    for i, c in enumerate(results["checkpoints"]):
        lines.append(f"- [{i + 1}] `{c['label']}`: {c['kind']}, {c['cot']}-CoT"
                     + (", untrained value head" if c["label"] in untrained else ""))
    cfg = results["config"]
    lines += ["", f"Data set {results['dataset']}; greedy + {results['samples']} samples per problem at "
                  f"temperature {cfg['temperature']}; seed {cfg['seed']}. Accuracies in %, differences in points "
                  f"([i] − [1]) with 95% paired-bootstrap intervals; p = exact McNemar test on 0/1 correctness.", ""]
    for split, per_ckpt in results["results"].items():
        ns = ", ".join(f"[{i + 1}] {per_ckpt[l]['n']}" if l in per_ckpt else f"[{i + 1}] skipped"
                       for i, l in enumerate(labels))
        lines += [f"## {split} (problems: {ns})", ""]
        head = ["metric"] + [f"[{i + 1}]" for i in range(len(labels))]
        for i in range(1, len(labels)):
            head += [f"[{i + 1}] − [1] (95% CI)", "p"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
        metrics = next((r["metrics"] for r in per_ckpt.values()), {})
        for metric in metrics:
            row = [metric]
            for l in labels:
                v = per_ckpt.get(l, {}).get("metrics", {}).get(metric)
                mark = " †" if metric.startswith("rerank@") and l in untrained and v is not None else ""
                row.append(pct(v) + mark)
            for l in labels[1:]:
                cmp_ = results["comparisons"].get(split, {}).get(l, {}).get(metric)
                if cmp_ is None:
                    row += ["–", "–"]
                    continue
                lo, hi = cmp_["ci95"]
                row.append(f"{pct(cmp_['diff'], True)} [{pct(lo, True)}, {pct(hi, True)}]")
                p = cmp_["mcnemar_p"]
                row.append("–" if p is None else f"{p:.3g}")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    if untrained:
        lines += ["† rerank@k picks the sample with the highest value-head estimate. This checkpoint's value head "
                  "was never trained (only PPO trains it), so its rerank@k is an arbitrary pick, not a reranker.", ""]
    for note in results["notes"]:
        lines.append(f"Note: {note}")
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------------------------------

def main(cfg: Config) -> dict:
    if not cfg.checkpoints:
        raise UserError("no checkpoint given: python evaluate.py CKPT [CKPT ...] (see --help)")
    ks, n_samples = parse_ks(cfg)
    if cfg.limit is not None and cfg.limit < 1:
        raise UserError(f"--limit={cfg.limit}: must be at least 1")
    if cfg.batch_size < 1:
        raise UserError(f"--batch_size={cfg.batch_size}: must be at least 1")
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    labels = unique_labels(cfg.checkpoints)

    # Load (and check) every checkpoint before spending minutes on the first one.
    models = [load_model(p, device) for p in cfg.checkpoints]
    first_cfg = models[0][3]
    dataset = cfg.dataset or first_cfg.get("dataset", "synthetic")
    data_path = cfg.data_path if cfg.dataset else (cfg.data_path or first_cfg.get("data_path"))
    if dataset not in data.DATASETS:
        raise UserError(f"unknown data set {dataset!r}: choose one of {', '.join(data.DATASETS)}")
    default_splits = SYNTHETIC_SPLITS if dataset == "synthetic" else first_cfg.get("eval_split", "test")
    splits = [s for s in (cfg.splits or default_splits).replace(" ", "").split(",") if s]
    if not splits:
        raise UserError("--splits is empty: name at least one split, e.g. --splits=test")
    # Load every split in every style needed up front: an unknown split fails now, not after an hour.
    problems = {(split, style): load_split(dataset, split, style, data_path, cfg.limit)
                for split in splits for style in sorted({m[2] for m in models})}

    results = {"config": {k: v for k, v in asdict(cfg).items() if k not in ("out", "progress")},
               "dataset": dataset, "samples": n_samples, "checkpoints": [], "results": {}, "comparisons": {},
               "notes": []}
    per_problem_rows, scores = [], {}  # scores[(split, label)] = {problem id: {metric: value}}
    for ci, (label, path) in enumerate(zip(labels, cfg.checkpoints)):
        model, enc, style, run_cfg, kind = models[ci]
        models[ci] = (None,) + models[ci][1:]  # let the weights go once this checkpoint is done
        results["checkpoints"].append({"label": label, "path": path, "kind": kind, "cot": style,
                                       "tokenizer": enc.name, "params": model.num_params(),
                                       "value_head": "trained" if kind == "ppo" else "untrained"})
        max_new = cfg.max_new_tokens or run_cfg.get("max_new_tokens") or 160
        for si, split in enumerate(splits):
            probs = problems[split, style]
            # Programs return numbers, so a multiple-choice split (letters a-e) cannot be scored in P-CoT;
            # ReFT itself runs P-CoT on MathQA-numeric instead.
            if style == "program" and any(reward.is_choice_answer(p.answer) for p in probs):
                results["notes"].append(f"{label}: split {split} is multiple choice, which P-CoT cannot answer; "
                                        "skipped")
                continue
            bar = None
            if cfg.progress:
                from tqdm import tqdm
                bar = tqdm(total=len(probs) * (1 + n_samples), desc=f"{label} {split}", unit="seq",
                           dynamic_ncols=True, leave=False)
            # Every checkpoint gets the same sampling seed on a split (common random numbers).
            records = evaluate_split(model, enc, style, probs, n_samples, cfg, max_new,
                                     seed=cfg.seed * 1_000_003 + si, bar=bar)
            if bar is not None:
                bar.close()
            too_long = sum(r["too_long"] for r in records)
            if too_long:
                results["notes"].append(f"{label}: {too_long} of {len(records)} {split} prompts do not fit the "
                                        f"context ({model.config.block_size} tokens); counted as no answer")
            per = {key: score(r, ks) for key, r in zip(unique_labels([r["id"] for r in records]), records)}
            scores[split, label] = per
            metrics = list(next(iter(per.values())).keys()) if per else []
            results["results"].setdefault(split, {})[label] = {
                "n": len(per), "metrics": {m: sum(v[m] for v in per.values()) / len(per) for m in metrics}}
            for r in records:
                per_problem_rows.append({
                    "checkpoint": label, "split": split, "id": r["id"], "question": r["question"],
                    "gold": r["gold"], "greedy_completion": r["greedy_completion"],
                    "greedy_answer": r["greedy_answer"], "greedy_correct": r["greedy_reward"] == 1.0,
                    "prompt_too_long": r["too_long"],
                    **({"vote": reward.majority_vote(r["sample_answers"]),
                        "samples_correct": sum(x == 1.0 for x in r["sample_rewards"]),
                        "samples": len(r["sample_rewards"])} if "sample_answers" in r else {})})

    # Differences to the first checkpoint, paired by problem id.
    for split in splits:
        base = scores.get((split, labels[0]))
        for label in labels[1:]:
            other = scores.get((split, label))
            if base is None or other is None:
                continue
            metrics = [m for m in next(iter(base.values()), {}) if m in next(iter(other.values()), {})]
            results["comparisons"].setdefault(split, {})[label] = compare(base, other, metrics, cfg.n_boot, cfg.seed)

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    results = _round(results)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    table = markdown(results)
    (out / "results.md").write_text(table)
    with open(out / "per_problem.jsonl", "w") as f:
        for row in per_problem_rows:
            f.write(json.dumps(row) + "\n")
    print(table)
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}, {out / 'per_problem.jsonl'}")
    return results


def _round(x):
    """Round floats to 6 digits (and NaN to null) so results.json is stable, valid JSON."""
    if isinstance(x, float):
        return None if not math.isfinite(x) else round(x, 6)
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_round(v) for v in x]
    return x


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("REFT_THREADS", torch.get_num_threads())))
    # validate runs right after parsing, before any checkpoint is loaded.
    main_guard(lambda: main(parse_config(Config, prog="evaluate.py", positional="checkpoints", validate=validate)))
