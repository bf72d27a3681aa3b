"""Robustness to recognition errors: the clean prompts against their noisy-speech variants.

`analyze(data, cfg)` reads the scored `results` (clean) and `noisy_results` (variants, each with its
`source_id`) and writes `data["robustness"]`, beside the clean statistics and never in the verdict:

- per model variant (base, each adapter), on the source prompts and on their noisy variants: tool accuracy
  (share of answers whose first call is the expected tool), argument accuracy (share of the prompts with
  expected arguments whose first call carries all of them right) — both with exact (Clopper-Pearson)
  intervals — and mean relevance; then the drop, paired: per variant, its source's clean score minus its
  own, averaged over the variants, with a CI clustered by source prompt;
- per adapter, its difference with the base on the noisy variants, with a 95 % CI clustered by source
  prompt: the variants of one prompt share its difficulty, so whole source prompts are resampled, not
  variants (resampling variants would count 30 prompts x 4 variants as 120 independent tries).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import stats
from .config import Config

METRICS = ("tool_accuracy", "args_accuracy", "relevance")


def _answered(r: dict[str, Any], v: str) -> dict[str, Any] | None:
    return ((r.get("variants") or {}).get(v) or {}).get("metrics") or None


def _item(m: dict[str, Any], key: str) -> float | None:
    if key == "tool_accuracy":
        return 1.0 if m.get("tool_correct") else 0.0
    if key == "args_accuracy":
        s = m.get("args_score")
        return None if s is None else 1.0 if s >= 1 else 0.0
    v = m.get("relevance")
    return None if v is None else float(v)


def _summary(rows: Sequence[dict[str, Any]], v: str, confidence: float) -> dict[str, Any]:
    ms = [m for r in rows if (m := _answered(r, v))]
    out: dict[str, Any] = {"n": len(rows), "answered": len(ms)}
    for key in METRICS:
        vals = [x for m in ms if (x := _item(m, key)) is not None]
        out[key] = round(sum(vals) / len(vals), 4) if vals else None
        if key != "relevance":
            out[f"{key}_n"] = len(vals)
            ci = stats.proportion_ci(int(sum(vals)), len(vals), confidence)
            out[f"{key}_ci"] = list(ci) if ci else None
    return out


def _drop(clean: Sequence[dict[str, Any]], noisy: Sequence[dict[str, Any]], v: str, key: str,
          cfg: Config) -> dict[str, Any] | None:
    """What noise costs, paired: per noisy variant, its source's clean score minus its own; the mean over the
    variants (so a source weighs by its number of variants, like the noisy column), with a CI from whole
    source prompts resampled (the cluster bootstrap)."""
    src = {r["id"]: _item(m, key) for r in clean if (m := _answered(r, v))}
    diffs, clusters = [], []
    for r in noisy:
        m = _answered(r, v)
        x, c = (_item(m, key) if m else None), src.get(r["source_id"])
        if x is not None and c is not None:
            diffs.append(c - x)
            clusters.append(r["source_id"])
    if not diffs:
        return None
    out: dict[str, Any] = {"value": round(sum(diffs) / len(diffs), 4), "ci": None}
    if len(set(clusters)) > 1:  # one source prompt: nothing to resample, no interval
        lo, hi = stats.cluster_bootstrap_ci(diffs, clusters, resamples=cfg.scoring.bootstrap_resamples,
                                            confidence=cfg.scoring.confidence, seed=cfg.generation.seed)
        out["ci"] = [round(lo, 4), round(hi, 4)]
    return out


def _paired(rows: Sequence[dict[str, Any]], adapter: str, key: str, cfg: Config) -> dict[str, Any] | None:
    """Adapter - base on the rows both answered, CI clustered by source prompt."""
    diffs, clusters = [], []
    for r in rows:
        mb, mt = _answered(r, "base"), _answered(r, adapter)
        if not mb or not mt:
            continue
        b, t = _item(mb, key), _item(mt, key)
        if b is None or t is None:
            continue
        diffs.append(t - b)
        clusters.append(r.get("source_id") or r["id"])
    if len(set(clusters)) < 2:  # one source prompt: nothing to resample, no interval
        return None
    lo, hi = stats.cluster_bootstrap_ci(diffs, clusters, resamples=cfg.scoring.bootstrap_resamples,
                                        confidence=cfg.scoring.confidence, seed=cfg.generation.seed)
    return {"n": len(diffs), "sources": len(set(clusters)), "delta": round(sum(diffs) / len(diffs), 4),
            "ci_low": round(lo, 4), "ci_high": round(hi, 4), "confidence": cfg.scoring.confidence,
            "significant": bool(lo > 0 or hi < 0), "ci_method": "bootstrap clustered by source prompt"}


def analyze(data: dict[str, Any], cfg: Config) -> dict[str, Any] | None:
    """`data["robustness"]` from the scored clean and noisy rows (None, and no section, without variants)."""
    noisy = [r for r in data.get("noisy_results") or [] if r.get("source_id")]
    if not noisy:
        data.pop("robustness", None)
        return None
    variants = data["metadata"]["variants"]
    sources = set(r["source_id"] for r in noisy)
    clean = [r for r in data["results"] if r["id"] in sources]
    conf = cfg.scoring.confidence
    per_variant: dict[str, Any] = {}
    for v in variants:
        c, n = _summary(clean, v, conf), _summary(noisy, v, conf)
        drop: dict[str, Any] = {}
        for k in METRICS:
            d = _drop(clean, noisy, v, k, cfg)
            drop[k], drop[f"{k}_ci"] = (d["value"], d["ci"]) if d else (None, None)
        per_variant[v] = {"clean": c, "noisy": n, "drop": drop}
    comparisons = {a: {"noisy": {k: _paired(noisy, a, k, cfg) for k in METRICS},
                       "clean": {k: _paired(clean, a, k, cfg) for k in METRICS}}
                   for a in variants if a != "base"}
    meta = data["metadata"].get("robustness") or {}
    out = {
        "variants_per_prompt": meta.get("variants_per_prompt"),
        "sources": len(clean),
        "noisy_prompts": len(noisy),
        "max_phoneme_distance": meta.get("max_phoneme_distance"),
        "phonemiser": meta.get("phonemiser"),
        "per_variant": per_variant,
        "comparisons": comparisons,
        "intervals": {"proportions": "exact (Clopper-Pearson)",
                      "differences": "bootstrap clustered by source prompt"},
    }
    data["robustness"] = out
    return out


def gate(data: dict[str, Any], max_drop: float | None) -> str | None:
    """--fail-on-robustness-drop: why the best adapter fails it (None = it passes or no gate)."""
    if max_drop is None:
        return None
    rob = data.get("robustness")
    best = (data.get("statistics") or {}).get("best_adapter")
    if not best:
        return "no adapter was compared with the base"
    if not rob:
        return "no noisy-speech results to judge robustness on (run with --noisy N)"
    d = rob["per_variant"].get(best, {}).get("drop", {}).get("tool_accuracy")
    if d is None:
        return f"best adapter {best} has no tool accuracy on the noisy variants (answers missing or failed)"
    if d > max_drop:
        c = rob["per_variant"][best]["clean"]["tool_accuracy"]
        n = rob["per_variant"][best]["noisy"]["tool_accuracy"]
        return (f"best adapter {best} loses {d:.2f} of tool accuracy under noise (paired per variant; {c:.2f} on the "
                f"source prompts, {n:.2f} on their variants), more than the allowed {max_drop:g}")
    return None
