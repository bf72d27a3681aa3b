from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from jarvis_bench import stats
from jarvis_bench.config import ThresholdsSection
from jarvis_bench.verdict import GOOD, INSUFFICIENT, MODERATE, decide


def test_compare_matches_an_independent_computation():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, 30)
    tuned = np.clip(base + rng.normal(0.15, 0.2, 30), 0, 1)
    c = stats.compare(base, tuned, resamples=10000, confidence=0.95, seed=3)
    assert c["mean_base"] == round(base.mean(), 4) and c["mean_finetuned"] == round(tuned.mean(), 4)
    assert c["delta"] == round(tuned.mean() - base.mean(), 4)
    assert c["gain"] == round((tuned.mean() - base.mean()) / base.mean() * 100, 2) and c["gain_unit"] == "percent"
    diff = tuned - base
    assert c["test"] == "wilcoxon"
    assert c["p_value"] == pytest.approx(sps.wilcoxon(diff[diff != 0]).pvalue, abs=1e-6)
    # bootstrap by hand with the same generator
    idx = np.random.default_rng(3).integers(0, 30, size=(10000, 30))
    means = diff[idx].mean(axis=1)
    assert c["ci_low"] == round(float(np.quantile(means, 0.025)), 4)
    assert c["ci_high"] == round(float(np.quantile(means, 0.975)), 4)
    assert c["wins"] + c["ties"] + c["losses"] == 30
    assert c["min_detectable_delta"] == pytest.approx(2.8016 * diff.std(ddof=1) / np.sqrt(30), rel=1e-3)


def test_bootstrap_is_reproducible_with_a_seed():
    d = np.array([0.1, -0.2, 0.3, 0.0, 0.5, 0.2])
    a = stats.bootstrap_ci(d, resamples=2000, confidence=0.95, seed=42)
    assert a == stats.bootstrap_ci(d, resamples=2000, confidence=0.95, seed=42)
    assert a != stats.bootstrap_ci(d, resamples=2000, confidence=0.95, seed=43)


def test_small_or_tied_samples_use_the_exact_sign_test():
    c = stats.compare([0, 0, 0, 0, 1], [1, 1, 0, 0, 1], resamples=1000, confidence=0.95, seed=1)
    assert c["test"] == "sign test (exact)" and c["p_value"] == pytest.approx(sps.binomtest(2, 2).pvalue)
    same = stats.compare([0.5] * 4, [0.5] * 4, resamples=1000, confidence=0.95, seed=1)
    assert same["p_value"] == 1.0 and same["significant"] is False


def test_absolute_points_when_base_is_near_zero():
    c = stats.compare([0.0, 0.0, 0.02], [0.5, 0.4, 0.6], resamples=1000, confidence=0.95, seed=1)
    assert c["gain_unit"] == "points" and c["gain"] == pytest.approx((1.5 - 0.02) / 3 * 100, abs=0.01)


def test_mcnemar_exact():
    base = [True, True, False, False, False, False, True]
    tuned = [True, False, True, True, True, True, True]
    m = stats.mcnemar_exact(base, tuned)
    assert m["gained"] == 4 and m["lost"] == 1 and m["p_value"] == pytest.approx(sps.binomtest(4, 5).pvalue)


def _rel(gain, unit="percent", significant=True):
    return {"gain": gain, "gain_unit": unit, "significant": significant, "p_value": 0.01, "ci_low": 0.1,
            "ci_high": 0.2, "min_detectable_delta": 0.1}


TH = ThresholdsSection()
VERDICTS = [
    # (relevance gain %, keyword hits delta, regressions, expected)
    (10.01, 0.6, 0, GOOD),
    (10.0, 0.6, 0, MODERATE),  # exactly 10%: not above
    (9.99, 0.6, 0, MODERATE),
    (5.0, 0.6, 0, MODERATE),  # exactly 5%: moderate
    (4.99, 0.6, 0, INSUFFICIENT),
    (25.0, 0.5, 0, MODERATE),  # keyword gain must be > 0.5
    (25.0, 0.51, 1, MODERATE),  # one regression
    (-3.0, 1.0, 0, INSUFFICIENT),
    (0.0, 0.0, 0, INSUFFICIENT),
]


@pytest.mark.parametrize("gain, kw, reg, expected", VERDICTS)
def test_verdict_rule_at_its_boundaries(gain, kw, reg, expected):
    assert decide(_rel(gain), {"delta": kw}, reg, TH)["level"] == expected


def test_verdict_thresholds_come_from_the_config():
    th = ThresholdsSection(good_relevance_gain_pct=20, moderate_relevance_gain_pct=8, max_regressions=2)
    assert decide(_rel(15), {"delta": 1}, 0, th)["level"] == MODERATE
    assert decide(_rel(21), {"delta": 1}, 2, th)["level"] == GOOD
    assert decide(_rel(7), {"delta": 1}, 0, th)["level"] == INSUFFICIENT


def test_base_mean_zero_uses_points_in_the_verdict():
    c = stats.compare([0.0] * 6, [0.2] * 6, resamples=500, confidence=0.95, seed=0)
    v = decide(c, {"delta": 1.0}, 0, TH)
    assert v["relevance_gain_unit"] == "points" and v["relevance_gain"] == 20.0 and v["level"] == GOOD


def _stats(level, regressions, best="ft"):
    return {"best_adapter": best, "comparisons": {best: {"verdict": {"level": level, "regressions": regressions}}}}


@pytest.mark.parametrize(("level", "regs", "fail_below", "on_reg", "fails"), [
    ("GOOD", 0, "GOOD", True, False),
    ("MODERATE", 0, "GOOD", False, True),
    ("MODERATE", 0, "MODERATE", False, False),
    ("INSUFFICIENT", 0, "MODERATE", False, True),
    ("GOOD", 2, None, True, True),
    ("MODERATE", 2, None, False, False),
])
def test_deploy_gate(level, regs, fail_below, on_reg, fails):
    from jarvis_bench.verdict import gate

    why = gate(_stats(level, regs), fail_below=fail_below, fail_on_regression=on_reg)
    assert bool(why) is fails
    if fails:
        assert "ft" in why


def test_deploy_gate_without_adapter():
    from jarvis_bench.verdict import gate

    assert gate({"best_adapter": None, "comparisons": {}}, fail_below=None, fail_on_regression=False) is None
    assert "no adapter" in gate({"best_adapter": None, "comparisons": {}}, fail_below="GOOD", fail_on_regression=False)
