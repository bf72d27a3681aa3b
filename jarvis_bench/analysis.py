"""Statistics stage: scored results -> per-variant means, paired comparisons, verdicts, flips."""

from __future__ import annotations

from typing import Any

from . import stats
from .config import Config
from .metrics import SCORER_VERSION
from .verdict import decide, incomplete, recommendations

COMPARED = ("relevance", "keyword_hits", "keyword_ratio", "tool_correct", "args_score", "correction_score",
            "cosine_to_reference")


def _value(m: dict[str, Any] | None, key: str) -> float | None:
    if not m:
        return None
    v = m.get(key)
    if v is None:
        return None
    return float(v)


def relevance_of(answer: dict[str, Any] | None) -> float | None:
    """An answer's relevance (None for a missing or failed answer)."""
    return _value((answer or {}).get("metrics"), "relevance")


def _means(rows: list[dict[str, Any]], variant: str) -> dict[str, Any]:
    ms = [r["variants"][variant]["metrics"] for r in rows if variant in r["variants"]]
    ok = [m for m in ms if m]
    out: dict[str, Any] = {"n": len(ms), "errors": len(ms) - len(ok)}
    for key in (*COMPARED, "cosine_to_base", "tokens", "latency_s"):
        vals = [v for m in ok if (v := _value(m, key)) is not None]
        out[key] = round(stats.mean(vals), 4) if vals else None
    out["truncated"] = sum(bool(m.get("truncated")) for m in ok)
    out["thinking"] = sum(bool(m.get("thinking_stripped")) for m in ok)
    out["malformed_calls"] = sum(bool(m.get("malformed_calls")) for m in ok)
    return out


def flip_status(base: float | None, tuned: float | None, tolerance: float) -> str:
    """improved / regressed / unchanged beyond `tolerance` (error when either answer is missing)."""
    if base is None or tuned is None:
        return "error"
    if tuned > base + tolerance:
        return "improved"
    if tuned < base - tolerance:
        return "regressed"
    return "unchanged"


def _pairs(rows: list[dict[str, Any]], variant: str, key: str) -> tuple[list[float], list[float], list[str]]:
    b, t, ids = [], [], []
    for r in rows:
        mb = r["variants"].get("base", {}).get("metrics")
        mt = r["variants"].get(variant, {}).get("metrics")
        vb, vt = _value(mb, key), _value(mt, key)
        if vb is not None and vt is not None:
            b.append(vb)
            t.append(vt)
            ids.append(r["id"])
    return b, t, ids


def _compare_rows(rows: list[dict[str, Any]], variant: str, cfg: Config, seed: int) -> dict[str, Any]:
    sc = cfg.scoring
    out: dict[str, Any] = {}
    for key in COMPARED:
        b, t, _ = _pairs(rows, variant, key)
        if b:
            tol = sc.regression_tolerance if key == "relevance" else 0.0
            out[key] = stats.compare(b, t, resamples=sc.bootstrap_resamples, confidence=sc.confidence, seed=seed,
                                     tolerance=tol)
            if key == "tool_correct":
                out[key]["mcnemar"] = stats.mcnemar_exact([x > 0 for x in b], [x > 0 for x in t])
    return out


def analyze(data: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """Add `statistics` (seed keys + per adapter blocks) and `by_category` to scored data, in place."""
    rows = data["results"]
    meta = data["metadata"]
    variants = meta["variants"]
    adapters = [v for v in variants if v != "base"]
    primary = meta.get("primary_variant") or (adapters[0] if adapters else None)
    seed = cfg.generation.seed
    categories = list(dict.fromkeys(r["category"] for r in rows))
    by_cat_rows = {c: [r for r in rows if r["category"] == c] for c in categories}

    per_variant = {v: {"overall": _means(rows, v), "by_category": {c: _means(by_cat_rows[c], v) for c in categories}}
                   for v in variants}
    # Adapters are judged on the prompts every variant answered, all on the same ones; a missing or failed
    # answer anywhere leaves every verdict INCOMPLETE (a verdict from the survivors would be biased).
    def answered(r: dict[str, Any], v: str) -> bool:
        return bool((r["variants"].get(v) or {}).get("metrics"))

    complete = [r for r in rows if all(answered(r, v) for v in variants)]
    missing = sum(not answered(r, v) for r in rows for v in variants)
    complete_by_cat = {c: [r for r in complete if r["category"] == c] for c in categories}
    comparisons: dict[str, Any] = {}
    for a in adapters:
        overall = _compare_rows(complete, a, cfg, seed)
        by_category = {c: _compare_rows(complete_by_cat[c], a, cfg, seed) for c in categories}
        by_category = {c: v for c, v in by_category.items() if "relevance" in v}
        b, t, ids = _pairs(complete, a, "relevance")
        tol = cfg.scoring.regression_tolerance
        status = {i: flip_status(x, y, tol) for i, x, y in zip(ids, b, t)}
        regressions = [i for i, s in status.items() if s == "regressed"]
        improvements = [i for i, s in status.items() if s == "improved"]
        cmp = {"overall": overall, "by_category": by_category, "regressions": regressions,
               "improvements": improvements}
        measured = (decide(overall["relevance"], overall["keyword_hits"], len(regressions), cfg.thresholds)
                    if "relevance" in overall and "keyword_hits" in overall else None)
        verdict = incomplete(measured, missing, len(complete)) if missing or len(complete) < 2 else measured
        if verdict is not None:
            cmp["verdict"] = verdict
            o = per_variant[a]["overall"]
            counts = {"truncated": o["truncated"], "thinking": o["thinking"], "errors": o["errors"],
                      "malformed_calls": o["malformed_calls"]}
            cmp["recommendations"] = recommendations(a, cmp, cmp["verdict"], counts)
        comparisons[a] = cmp

    def avg(v: str | None, key: str) -> float | None:
        return per_variant[v]["overall"][key] if v else None

    ranking = sorted(adapters, key=lambda a: -(comparisons[a]["overall"].get("relevance", {}).get("mean_finetuned", 0)))
    data["statistics"] = {
        "primary": primary,
        "avg_cosine_similarity": avg(primary, "cosine_to_base"),
        "avg_keyword_match_base": avg("base", "keyword_hits"),
        "avg_keyword_match_finetuned": avg(primary, "keyword_hits"),
        "avg_relevance_base": avg("base", "relevance"),
        "avg_relevance_finetuned": avg(primary, "relevance"),
        "variants": per_variant,
        "comparisons": comparisons,
        "ranking": ranking,
        "best_adapter": ranking[0] if ranking else None,
    }
    data["by_category"] = {c: {v: per_variant[v]["by_category"][c] for v in variants} for c in categories}
    return data


def evaluate(data: dict[str, Any], cfg: Config, *, embed_cache: bool = True) -> dict[str, Any]:
    """Scoring then statistics: what benchmark.py runs after generating and `analyze --rescore` reruns."""
    from .scoring import Embedder, score

    embedder = Embedder(cfg.scoring.embedding_model, base_dir=cfg.base_dir, cache=embed_cache)
    try:
        score(data, cfg, embedder)
    finally:
        embedder.close()
    data["metadata"]["scorer_version"] = SCORER_VERSION
    data["metadata"]["scoring"] = {**cfg.scoring.model_dump(mode="json"), "embedding_source": embedder.source}
    data["metadata"]["thresholds"] = cfg.thresholds.model_dump(mode="json")
    return analyze(data, cfg)
