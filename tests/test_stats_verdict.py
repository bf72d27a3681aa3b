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


# ----------------------------------------------------------------------------- small-sample intervals


def test_exact_proportion_interval_is_clopper_pearson():
    lo, hi = stats.proportion_ci(27, 30, 0.95)
    assert (lo, hi) == (round(sps.beta.ppf(0.025, 27, 4), 4), round(sps.beta.ppf(0.975, 28, 3), 4))
    assert stats.proportion_ci(0, 30, 0.95) == (0.0, round(1 - 0.025 ** (1 / 30), 4))  # never zero-width at 0/n
    assert stats.proportion_ci(30, 30, 0.95)[1] == 1.0 and stats.proportion_ci(0, 0, 0.95) is None


def test_paired_proportion_difference_is_bayesian_over_the_four_outcomes():
    base = [True] * 10 + [False] * 20
    tuned = [True] * 8 + [False] * 2 + [True] * 20
    d = stats.paired_proportion_diff(base, tuned, confidence=0.95, seed=1, draws=200_000)
    assert d["delta"] == round((20 - 2) / 30, 4)
    # posterior Dirichlet(8+1, 2+1, 20+1, 0+1): the difference's mean is (21 - 3) / 34
    assert (d["ci_low"] + d["ci_high"]) / 2 == pytest.approx(18 / 34, abs=0.03)
    assert d["ci_low"] > 0 and d["p_better"] == 1.0
    same = stats.paired_proportion_diff(base, base, confidence=0.95, seed=1)
    assert same["delta"] == 0 and same["ci_low"] < 0 < same["ci_high"]  # no discordant pair: undecided, not 0


def test_cluster_bootstrap_is_wider_than_pretending_variants_are_independent():
    rng = np.random.default_rng(0)
    clusters, values = [], []
    for c in range(30):  # each source prompt has its own difficulty, shared by its 4 variants
        p = rng.uniform(0, 1)
        for _ in range(4):
            clusters.append(f"s{c}")
            values.append(float(p > 0.5))
    lo, hi = stats.cluster_bootstrap_ci(values, clusters, resamples=5000, confidence=0.95, seed=2)
    naive = stats.bootstrap_ci(np.asarray(values), resamples=5000, confidence=0.95, seed=2)
    assert hi - lo > 1.6 * (naive[1] - naive[0])
    assert lo < np.mean(values) < hi


def test_holm_adjustment():
    adj = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    assert adj == {"a": 0.04, "c": 0.09, "b": 0.09, "d": 0.5}
    assert stats.holm({"only": 0.03}) == {"only": 0.03}


def _rel_ci(delta: float, lo: float, hi: float, base: float = 0.5) -> dict:
    return {"gain": delta / base * 100, "gain_unit": "percent", "mean_base": base, "delta": delta, "ci_low": lo,
            "ci_high": hi, "significant": lo > 0, "p_value": 0.1, "min_detectable_delta": 0.2}


def test_verdict_says_when_its_ci_spans_several_levels():
    th, kw = ThresholdsSection(), {"delta": 1.0}
    v = decide(_rel_ci(0.04, -0.01, 0.09), kw, 0, th)  # 8 % gain, CI from -2 % to +18 %
    assert v["level"] == MODERATE and v["uncertain_between"] == [INSUFFICIENT, GOOD]
    v = decide(_rel_ci(0.1, 0.06, 0.14), kw, 0, th)  # 20 %, CI 12 %..28 %: GOOD whichever end
    assert v["level"] == GOOD and v["uncertain_between"] is None
    v = decide(_rel_ci(0.1, 0.06, 0.14), kw, 3, th)  # regressions cap it: MODERATE at both ends
    assert v["level"] == MODERATE and v["uncertain_between"] is None
