"""Paired statistics of an adapter against the base (pure functions of per-prompt scores)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

ABSOLUTE_BELOW = 0.05  # base mean under which a relative gain is meaningless: report absolute points


def mean(xs: Sequence[float]) -> float | None:
    return float(np.mean(xs)) if len(xs) else None


def bootstrap_ci(diff: np.ndarray, *, resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    """Percentile CI of the mean paired difference (prompts resampled with replacement)."""
    if len(diff) == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(resamples, len(diff)))
    means = diff[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def sign_test(wins: int, losses: int) -> float:
    from scipy.stats import binomtest

    n = wins + losses
    return 1.0 if n == 0 else float(binomtest(wins, n, 0.5).pvalue)


def paired_test(diff: np.ndarray) -> tuple[str, float]:
    """Wilcoxon signed-rank; the exact sign test when ties or a tiny n make Wilcoxon degenerate."""
    nonzero = diff[diff != 0]
    wins, losses = int((nonzero > 0).sum()), int((nonzero < 0).sum())
    if len(nonzero) == 0:
        return "none (all paired differences are 0)", 1.0
    if len(nonzero) < 6 or len(nonzero) < len(diff) / 2:
        return "sign test (exact)", sign_test(wins, losses)
    from scipy.stats import wilcoxon

    return "wilcoxon", float(wilcoxon(nonzero, zero_method="wilcox").pvalue)


def mcnemar_exact(base_ok: Sequence[bool], tuned_ok: Sequence[bool]) -> dict[str, Any]:
    """Exact McNemar on paired binary outcomes (tool_correct)."""
    b = sum(1 for x, y in zip(base_ok, tuned_ok) if x and not y)  # lost
    c = sum(1 for x, y in zip(base_ok, tuned_ok) if y and not x)  # gained
    return {"gained": c, "lost": b, "p_value": sign_test(c, b)}


def compare(base: Sequence[float], tuned: Sequence[float], *, resamples: int, confidence: float, seed: int,
            tolerance: float = 0.0) -> dict[str, Any]:
    """Paired comparison of one metric: means, delta, gain, CI, test, wins/ties/losses, smallest detectable delta."""
    b, t = np.asarray(base, dtype=float), np.asarray(tuned, dtype=float)
    n = len(b)
    if n == 0:
        return {"n": 0}
    diff = t - b
    mb, mt = float(b.mean()), float(t.mean())
    delta = mt - mb
    lo, hi = bootstrap_ci(diff, resamples=resamples, confidence=confidence, seed=seed)
    test, p = paired_test(diff)
    relative = mb >= ABSOLUTE_BELOW
    sd = float(diff.std(ddof=1)) if n > 1 else 0.0
    from scipy.stats import norm

    z = norm.ppf(1 - (1 - confidence) / 2) + norm.ppf(0.8)
    return {
        "n": n,
        "mean_base": round(mb, 4),
        "mean_finetuned": round(mt, 4),
        "delta": round(delta, 4),
        "gain": round(delta / mb * 100 if relative else delta * 100, 2),
        "gain_unit": "percent" if relative else "points",
        "ci_low": round(lo, 4),
        "ci_high": round(hi, 4),
        "confidence": confidence,
        "test": test,
        "p_value": round(p, 6),
        "significant": bool((lo > 0 or hi < 0) and p < 1 - confidence),
        "wins": int((diff > tolerance).sum()),
        "ties": int((np.abs(diff) <= tolerance).sum()),
        "losses": int((diff < -tolerance).sum()),
        "min_detectable_delta": round(float(z * sd / math.sqrt(n)), 4) if n > 1 else None,
    }


# ----------------------------------------------------------------------------- intervals that hold at small n


def proportion_ci(successes: int, n: int, confidence: float) -> tuple[float, float] | None:
    """Exact (Clopper-Pearson) interval of a proportion: never narrower than the data allow, even at n = 30
    or with 0 or n successes (where the normal approximation gives a zero-width interval)."""
    if n <= 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="exact")
    return round(float(ci.low), 4), round(float(ci.high), 4)


def paired_proportion_diff(base_ok: Sequence[bool], tuned_ok: Sequence[bool], *, confidence: float, seed: int,
                           draws: int = 20000) -> dict[str, Any]:
    """Bayesian interval of the difference of two paired proportions (tuned - base): the four paired outcomes
    (both right, only base, only tuned, both wrong) get a uniform Dirichlet(1, 1, 1, 1) prior; the difference
    is P(only tuned) - P(only base) under the posterior, summarised by its equal-tailed credible interval."""
    n = len(base_ok)
    if n == 0:
        return {"n": 0}
    only_base = sum(1 for b, t in zip(base_ok, tuned_ok) if b and not t)
    only_tuned = sum(1 for b, t in zip(base_ok, tuned_ok) if t and not b)
    both = sum(1 for b, t in zip(base_ok, tuned_ok) if b and t)
    rng = np.random.default_rng(seed)
    post = rng.dirichlet([both + 1, only_base + 1, only_tuned + 1, n - both - only_base - only_tuned + 1], size=draws)
    diff = post[:, 2] - post[:, 1]
    alpha = (1 - confidence) / 2
    return {"n": n, "delta": round((only_tuned - only_base) / n, 4), "ci_low": round(float(np.quantile(diff, alpha)), 4),
            "ci_high": round(float(np.quantile(diff, 1 - alpha)), 4), "p_better": round(float((diff > 0).mean()), 4),
            "method": "bayes-dirichlet"}


def cluster_bootstrap_ci(values: Sequence[float], clusters: Sequence[str], *, resamples: int, confidence: float,
                         seed: int) -> tuple[float, float]:
    """Percentile CI of the mean of `values` when they come in clusters (the noisy variants of one prompt are
    not independent): whole clusters are resampled with replacement, each resample's mean is over its items."""
    if not len(values):
        return (math.nan, math.nan)
    keys = list(dict.fromkeys(clusters))
    pos = {k: i for i, k in enumerate(keys)}
    sums = np.zeros(len(keys))
    counts = np.zeros(len(keys))
    for v, c in zip(values, clusters):
        sums[pos[c]] += v
        counts[pos[c]] += 1
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(keys), size=(resamples, len(keys)))
    means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment of p-values (family-wise error) for several adapters tested on the same data."""
    order = sorted(p_values, key=lambda k: p_values[k])
    m = len(order)
    out: dict[str, float] = {}
    running = 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * p_values[k]))
        out[k] = round(running, 6)
    return out
