"""Statistics stage: scored results -> per-variant means, paired comparisons, verdicts, flips."""

from __future__ import annotations

from pathlib import Path
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


def _means(rows: list[dict[str, Any]], variant: str, confidence: float = 0.95) -> dict[str, Any]:
    """Means of every metric of one variant; tool and argument accuracy with exact (Clopper-Pearson) intervals."""
    ms = [r["variants"][variant]["metrics"] for r in rows if variant in r["variants"]]
    ok = [m for m in ms if m]
    out: dict[str, Any] = {"n": len(ms), "errors": len(ms) - len(ok)}
    for key in (*COMPARED, "cosine_to_base", "tokens", "latency_s"):
        vals = [v for m in ok if (v := _value(m, key)) is not None]
        out[key] = round(stats.mean(vals), 4) if vals else None
    tools = [bool(m.get("tool_correct")) for m in ok]
    ci = stats.proportion_ci(sum(tools), len(tools), confidence)
    out["tool_correct_ci"] = list(ci) if ci else None
    args = [float(m["args_score"]) >= 1 for m in ok if m.get("args_score") is not None]
    out["args_accuracy"] = round(sum(args) / len(args), 4) if args else None
    ci = stats.proportion_ci(sum(args), len(args), confidence)
    out["args_accuracy_n"] = len(args)
    out["args_accuracy_ci"] = list(ci) if ci else None
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
                out[key]["bayes"] = stats.paired_proportion_diff([x > 0 for x in b], [x > 0 for x in t],
                                                                 confidence=sc.confidence, seed=seed)
            if key == "args_score":
                out[key]["bayes"] = stats.paired_proportion_diff([x >= 1 for x in b], [x >= 1 for x in t],
                                                                 confidence=sc.confidence, seed=seed)
    return out


def _holm(comparisons: dict[str, Any], confidence: float) -> dict[str, Any]:
    """Several adapters tested against the base on the same prompts: Holm-adjusted p-values (relevance and
    tool accuracy), written beside the raw ones; a verdict is significant only on its adjusted p."""
    for key, field in (("relevance", "p_value"), ("tool_correct", None)):
        ps = {a: (c["overall"][key]["mcnemar"]["p_value"] if field is None else c["overall"][key][field])
              for a, c in comparisons.items() if key in c["overall"]}
        for a, p in stats.holm(ps).items():
            comparisons[a]["overall"][key]["p_value_holm"] = p
    for c in comparisons.values():
        v, rel = c.get("verdict"), c["overall"].get("relevance")
        if v is not None and rel is not None:
            v["p_value_holm"] = rel["p_value_holm"]
            v["significant"] = bool(v["significant"] and rel["p_value_holm"] < 1 - confidence)
    return {"method": "holm", "adapters": len(comparisons), "best_chosen_on_same_data": True}


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

    conf = cfg.scoring.confidence
    per_variant = {v: {"overall": _means(rows, v, conf),
                       "by_category": {c: _means(by_cat_rows[c], v, conf) for c in categories}}
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

    multiple = _holm(comparisons, cfg.scoring.confidence) if len(adapters) > 1 else None
    seen = set((data.get("training_overlap") or {}).get("seen") or [])
    if seen:  # the same comparison without the prompts the adapter was trained on
        unseen = [r for r in complete if r["id"] not in seen]
        for a in adapters:
            comparisons[a]["unseen"] = _compare_rows(unseen, a, cfg, seed) | {"n_seen": len(seen & {r["id"] for r in rows})}
            if comparisons[a].get("verdict") is not None:
                comparisons[a]["verdict"]["seen_in_training"] = comparisons[a]["unseen"]["n_seen"]

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
        "multiple_comparisons": multiple,
    }
    data["by_category"] = {c: {v: per_variant[v]["by_category"][c] for v in variants} for c in categories}
    from . import robustness

    robustness.analyze(data, cfg)
    return data


def training_overlap(data: dict[str, Any], cfg: Config, embed: Any) -> dict[str, Any] | None:
    """`data["training_overlap"]`: every benchmark prompt (and noisy variant) against the training files of
    `cfg.training_data`, the ones found there listed as seen (None, and no section, without training files)."""
    # the config's files, else those the run was given (--train-data is no config field: a rescore keeps them)
    files = [cfg.resolve(p) for p in cfg.training_data] or [Path(p) for p in data["metadata"].get("training_data") or []]
    if not files:
        data.pop("training_overlap", None)
        return None
    from . import overlap

    training = overlap.read_training(files)
    asked = [(r["id"], r["prompt"]) for r in data["results"]]
    noisy = [(r["id"], r["prompt"]) for r in data.get("noisy_results") or []]
    found = overlap.nearest(asked + noisy, training, embed)
    clean_ids = {i for i, _ in asked}
    out = {
        "files": [str(f) for f in files],
        "training_prompts": len(training),
        "thresholds": {"fuzzy": overlap.FUZZY_SEEN, "cosine": overlap.COSINE_SEEN},
        "seen": [f["id"] for f in found if f["seen"] and f["id"] in clean_ids],
        "seen_noisy": [f["id"] for f in found if f["seen"] and f["id"] not in clean_ids],
        "prompts": found,
    }
    data["training_overlap"] = out
    return out


def evaluate(data: dict[str, Any], cfg: Config, *, embed_cache: bool = True) -> dict[str, Any]:
    """Scoring then statistics: what benchmark.py runs after generating and `analyze --rescore` reruns."""
    from .scoring import Embedder, score

    embedder = Embedder(cfg.scoring.embedding_model, base_dir=cfg.base_dir, cache=embed_cache)
    try:
        score(data, cfg, embedder)
        training_overlap(data, cfg, embedder)
    finally:
        embedder.close()
    data["metadata"]["scorer_version"] = SCORER_VERSION
    data["metadata"]["scoring"] = {**cfg.scoring.model_dump(mode="json"), "embedding_source": embedder.source}
    data["metadata"]["thresholds"] = cfg.thresholds.model_dump(mode="json")
    return analyze(data, cfg)
