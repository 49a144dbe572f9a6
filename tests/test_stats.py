"""Tests for reft_mini/stats.py: pass@k, the paired bootstrap interval and McNemar, on hand-worked cases."""
import math
import random

import numpy as np
import pytest

from reft_mini.stats import bootstrap_paired_diff, mcnemar, pass_at_k


# ------------------------------------------------------------------------------------------ pass@k

def test_pass_at_1_is_the_share_of_correct_samples():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(100, 37, 1) == pytest.approx(0.37)


def test_pass_at_k_matches_the_binomial_formula():
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # n=10, c=3, k=4: 1 - C(7,4)/C(10,4) = 1 - 35/210
    assert pass_at_k(10, 3, 4) == pytest.approx(1 - 35 / 210)


def test_pass_at_k_edge_cases_none_right_and_too_few_wrong():
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0      # n - c = 2 < k = 3: any 3 of the 5 include a right one
    assert pass_at_k(5, 5, 1) == 1.0


def test_pass_at_k_is_stable_for_many_samples():
    # C(1000, 500) overflows a float; the product form does not.
    v = pass_at_k(1000, 10, 500)
    assert 0.99 < v <= 1.0 and math.isfinite(v)


def test_pass_at_k_equals_the_empirical_chance_over_all_subsets():
    # Brute force: draw k of the n samples without replacement, many times.
    rng = random.Random(0)
    n, c, k = 8, 3, 3
    samples = [1] * c + [0] * (n - c)
    hits = sum(any(rng.sample(samples, k)) for _ in range(20000)) / 20000
    assert pass_at_k(n, c, k) == pytest.approx(hits, abs=0.02)


def test_pass_at_k_rejects_k_larger_than_n():
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


# ------------------------------------------------------------------------------------------ bootstrap

def test_bootstrap_interval_for_a_known_difference():
    a = np.ones(100)
    b = np.array([1] * 80 + [0] * 20)
    diff, lo, hi = bootstrap_paired_diff(a, b, n_boot=4000, seed=0)
    assert diff == pytest.approx(-0.2)
    # d is -1 on 20 problems, 0 on 80: standard error sqrt(0.2 * 0.8 / 100) = 0.04, so the 95% interval is
    # about -0.2 +- 0.08.
    assert lo < -0.2 < hi
    assert lo == pytest.approx(-0.28, abs=0.02) and hi == pytest.approx(-0.12, abs=0.02)


def test_bootstrap_identical_vectors_give_zero_and_a_zero_width_interval():
    a = np.array([1, 0, 1, 1, 0] * 20)
    assert bootstrap_paired_diff(a, a.copy()) == (0.0, 0.0, 0.0)


def test_bootstrap_is_seeded_and_works_on_fractions():
    a = [0.0, 0.5, 0.25, 1.0, 0.75]
    b = [0.5, 0.5, 1.0, 1.0, 0.0]
    assert bootstrap_paired_diff(a, b, seed=3) == bootstrap_paired_diff(a, b, seed=3)
    diff, lo, hi = bootstrap_paired_diff(a, b, seed=3)
    assert diff == pytest.approx(0.1) and lo <= diff <= hi


def test_bootstrap_rejects_unpaired_lengths():
    with pytest.raises(ValueError):
        bootstrap_paired_diff([1, 0], [1, 0, 1])


# ------------------------------------------------------------------------------------------ McNemar

def test_mcnemar_exact_p_values():
    # 5 problems only b gets right, none only a: p = 2 * (1/2)^5 = 0.0625.
    a = [0] * 5 + [1] * 10
    b = [1] * 5 + [1] * 10
    assert mcnemar(a, b) == pytest.approx(0.0625)
    # discordant 1 vs 9: p = 2 * (C(10,0) + C(10,1)) / 2^10 = 22 / 1024
    a = [1] + [0] * 9 + [1, 0] * 5
    b = [0] + [1] * 9 + [1, 0] * 5
    assert mcnemar(a, b) == pytest.approx(22 / 1024)
    assert mcnemar(b, a) == pytest.approx(22 / 1024)   # two-sided: symmetric


def test_mcnemar_no_disagreement_or_balanced_disagreement_gives_one():
    assert mcnemar([1, 0, 1], [1, 0, 1]) == 1.0
    assert mcnemar([1, 0, 1, 0], [0, 1, 1, 0]) == 1.0


def test_mcnemar_rejects_non_binary_outcomes():
    with pytest.raises(ValueError):
        mcnemar([0.5, 1], [1, 0])
