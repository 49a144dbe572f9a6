"""The statistics behind honest comparisons: pass@k, a paired bootstrap interval, McNemar's test.

ReFT's tables compare a fine-tuned model with its SFT baseline on the same test questions (Sec. 4).
On a few hundred questions a difference of a few points can be noise, so evaluate.py reports every
difference with a 95% interval and a p-value. Both use the *pairing*: the two checkpoints answer the
same questions, so what matters is how often they disagree, not each accuracy's own spread.

Pure functions, no I/O: lists (or numpy arrays) of per-problem numbers in, numbers out.

* `pass_at_k(n, c, k)`: the chance that at least one of k samples is right, estimated without bias
  from n >= k samples of which c are right (Chen et al., 2021, "Evaluating Large Language Models
  Trained on Code"): 1 - C(n-c, k) / C(n, k). Taking the first k samples instead would waste the
  other n-k and give a noisier number.
* `bootstrap_paired_diff(a, b)`: mean(b - a) with a percentile bootstrap interval, resampling
  *problems* (both checkpoints' results of a problem travel together).
* `mcnemar(a, b)`: exact two-sided McNemar test on 0/1 vectors: under "no difference", each problem
  one checkpoint gets right and the other wrong is equally likely to go either way.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k).

    C(n-c, k) / C(n, k) is the chance that k samples drawn without replacement from the n are all
    wrong. The binomials overflow floats for n in the hundreds, so we use the product form
        C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    (each factor is at most 1; the product shrinks smoothly instead of dividing two huge numbers).
    """
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n (got n={n}, c={c}, k={k})")
    if n - c < k:  # fewer than k wrong samples: every k-subset contains a right one
        return 1.0
    all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        all_wrong *= 1.0 - k / i
    return 1.0 - all_wrong


def _paired(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired vectors must be 1-D and of equal length (got {a.shape} and {b.shape})")
    return a, b


def bootstrap_paired_diff(a, b, n_boot: int = 10000, seed: int = 0, level: float = 0.95,
                          chunk: int = 1000) -> tuple[float, float, float]:
    """mean(b - a) over problems and its percentile bootstrap interval: (mean_diff, lo, hi).

    a, b: per-problem scores of two checkpoints on the SAME problems, in the same order (0/1
    correctness, or fractions such as pass@k). Each bootstrap replicate draws n problems with
    replacement and averages d = b - a over them; the interval is the central `level` share of the
    replicates. Seeded, so the same inputs always give the same interval.
    """
    a, b = _paired(a, b)
    n = len(a)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    d = b - a                                                     # (n,) per-problem difference
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, chunk):                         # chunks keep memory at chunk x n
        m = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(m, n))                     # (m, n) resampled problem indices
        means[start:start + m] = d[idx].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(d.mean()), float(lo), float(hi)


def mcnemar(a, b) -> float:
    """Exact two-sided McNemar p-value for paired 0/1 outcomes a, b.

    Only discordant problems carry information: n01 = right under a only, n10 = right under b only.
    If a and b are equally good, each of the n = n01 + n10 discordant problems is a fair coin, so
    min(n01, n10) ~ Binomial(n, 1/2) in the lower tail; the two-sided p-value doubles that tail
    (capped at 1). Exact integer arithmetic, so no normal approximation for small n.
    """
    a, b = _paired(a, b)
    if not np.all(np.isin(a, (0, 1))) or not np.all(np.isin(b, (0, 1))):
        raise ValueError("mcnemar needs 0/1 outcomes")
    n01 = int(np.sum((a == 1) & (b == 0)))
    n10 = int(np.sum((a == 0) & (b == 1)))
    n = n01 + n10
    if n == 0:
        return 1.0                                                # no disagreement: no evidence at all
    tail = sum(math.comb(n, i) for i in range(min(n01, n10) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2 ** n)))
