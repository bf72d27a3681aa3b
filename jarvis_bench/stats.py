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
