"""The seed's verdict rule, with its thresholds from the config, plus data-driven recommendations."""

from __future__ import annotations

from typing import Any

from .config import ThresholdsSection

GOOD, MODERATE, INSUFFICIENT, INCOMPLETE = "GOOD", "MODERATE", "INSUFFICIENT", "INCOMPLETE"


LEVELS = (INCOMPLETE, INSUFFICIENT, MODERATE, GOOD)  # worst to best: no verdict is below any verdict


def gate(statistics: dict[str, Any], *, fail_below: str | None, fail_on_regression: bool) -> str | None:
    """Why a CI pipeline should not deploy (None = it may): judged on the best adapter, the one you would ship."""
    best = statistics.get("best_adapter")
    cmp = (statistics.get("comparisons") or {}).get(best or "", {})
    v = cmp.get("verdict")
    if v is None:
        return "no adapter was compared with the base" if (fail_below or fail_on_regression) else None
    if v["level"] == INCOMPLETE and (fail_below or fail_on_regression):
        return (f"best adapter {best} has no verdict (INCOMPLETE: {v['missing_answers']} answer(s) missing or "
                "failed); rerun the same command to finish them")
    if fail_below and LEVELS.index(v["level"]) < LEVELS.index(fail_below):
        return f"best adapter {best} is {v['level']}, below the required {fail_below}"
    if fail_on_regression and v["regressions"] > 0:
        return f"best adapter {best} regresses on {v['regressions']} prompt(s)"
    return None


def decide(relevance: dict[str, Any], keyword_hits: dict[str, Any], regressions: int,
           th: ThresholdsSection) -> dict[str, Any]:
    """GOOD (deploy) = relevance gain > good% and keyword-hits gain > min and regressions <= max;
    MODERATE = gain in [moderate%, good%] or above good% failing another condition; else INSUFFICIENT."""
    gain = relevance["gain"]
    kw_gain = keyword_hits["delta"]

    def rule(g: float) -> tuple[str, dict[str, bool]]:
        checks = {
            "relevance_gain": g > th.good_relevance_gain_pct,
            "keyword_gain": kw_gain > th.min_keyword_gain,
            "no_regression": regressions <= th.max_regressions,
        }
        if all(checks.values()):
            return GOOD, checks
        return (MODERATE if g >= th.moderate_relevance_gain_pct else INSUFFICIENT), checks

    level, checks = rule(gain)
    # The same rule at both ends of the relevance-gain CI: when they disagree, the data cannot decide the level.
    ends = [rule(g)[0] for k in ("ci_low", "ci_high") if (g := _gain_at(relevance, relevance.get(k))) is not None]
    uncertain = sorted(set(ends), key=LEVELS.index) if len(set(ends)) > 1 else None
    return {
        "level": level,
        "relevance_gain": gain,
        "relevance_gain_unit": relevance["gain_unit"],
        "keyword_gain": kw_gain,
        "regressions": regressions,
        "checks": checks,
        "significant": relevance["significant"],
        "p_value": relevance["p_value"],
        "ci": [relevance["ci_low"], relevance["ci_high"]],
        "min_detectable_delta": relevance["min_detectable_delta"],
        "uncertain_between": [uncertain[0], uncertain[-1]] if uncertain else None,
    }


def _gain_at(relevance: dict[str, Any], delta: float | None) -> float | None:
    """The relevance gain (in the verdict's unit) a mean delta of `delta` would give (None: no interval)."""
    if delta is None or delta != delta:
        return None
    if relevance.get("gain_unit") == "percent":
        base = relevance.get("mean_base")
        return delta / base * 100 if base else None
    return delta * 100


def incomplete(measured: dict[str, Any] | None, missing: int, complete: int) -> dict[str, Any]:
    """No verdict while answers are missing or failed: level INCOMPLETE, with what the complete prompts
    alone would say (`measured_level`, for information only) and how many answers are missing."""
    out: dict[str, Any] = dict(measured) if measured else {
        "relevance_gain": None, "relevance_gain_unit": "percent", "keyword_gain": None, "regressions": 0,
        "checks": {}, "significant": False, "p_value": None, "ci": [None, None], "min_detectable_delta": None}
    out.update(level=INCOMPLETE, measured_level=measured["level"] if measured else None, missing_answers=missing,
               complete_prompts=complete, uncertain_between=None)
    return out


def _rec(code: str, fr: str, en: str) -> dict[str, str]:
    return {"code": code, "fr": fr, "en": en}


def recommendations(name: str, cmp: dict[str, Any], verdict: dict[str, Any], counts: dict[str, int]) -> list[dict[str, str]]:
    """Specific advice from the data: weak categories, regressed prompts, truncation/thinking/errors, next steps."""
    out: list[dict[str, str]] = []
    level = verdict["level"]
    if level == INCOMPLETE:
        m, c = verdict["missing_answers"], verdict["complete_prompts"]
        out.append(_rec(
            "incomplete",
            f"{name} : pas de verdict, {m} réponse(s) manquante(s) ou en erreur ({c} prompts complets) — relancer "
            "la même commande pour terminer (les réponses en erreur sont régénérées, les autres viennent du cache).",
            f"{name}: no verdict, {m} answer(s) missing or failed ({c} complete prompts) — rerun the same command "
            "to finish (failed answers are generated again, the others come from the cache).",
        ))
        if verdict["relevance_gain"] is None:
            return out
    elif level == GOOD:
        out.append(_rec("deploy", f"{name} : déployer en production, puis surveiller les réponses réelles.",
                        f"{name}: deploy to production, then monitor real answers."))
    elif level == MODERATE and verdict["checks"]["relevance_gain"]:
        failed = [k for k, ok in verdict["checks"].items() if not ok]
        why_fr = {"keyword_gain": "gain de mots-clés insuffisant", "no_regression": f"{verdict['regressions']} régression(s)"}
        why_en = {"keyword_gain": "keyword gain too small", "no_regression": f"{verdict['regressions']} regression(s)"}
        out.append(_rec("fix_before_deploy",
                        f"{name} : gain de pertinence net mais {', '.join(why_fr[k] for k in failed)} — corriger avant "
                        "de déployer (données ciblées sur ces prompts).",
                        f"{name}: clear relevance gain but {', '.join(why_en[k] for k in failed)} — fix before deploying "
                        "(targeted data for these prompts)."))
    elif level == MODERATE:
        out.append(_rec("retrain_more_data", f"{name} : progrès limité — collecter plus de données JARVIS et réentraîner.",
                        f"{name}: limited progress — collect more JARVIS data and retrain."))
    else:
        out.append(_rec("rethink", f"{name} : revoir la stratégie (données, hyperparamètres, epochs) avant de re-benchmarker.",
                        f"{name}: revisit the training strategy (data, hyper-parameters, epochs) before re-benchmarking."))
    if not verdict["significant"]:
        mdd = verdict["min_detectable_delta"]
        out.append(_rec(
            "not_significant",
            f"Gain non significatif à n={cmp['overall']['relevance']['n']} (p={verdict['p_value']:.3g}) ; "
            f"avec ce nombre de prompts, seul un écart de pertinence ≥ {mdd} serait détectable : ajouter des prompts.",
            f"Gain not significant at n={cmp['overall']['relevance']['n']} (p={verdict['p_value']:.3g}); this many "
            f"prompts only detects a relevance delta ≥ {mdd}: add prompts.",
        ))
    cats = sorted(cmp["by_category"].items(), key=lambda kv: kv[1]["relevance"]["mean_finetuned"])
    if cats:
        cat, c = cats[0]
        out.append(_rec(
            "weakest_category",
            f"Catégorie la plus faible : {cat} (pertinence {c['relevance']['mean_finetuned']:.2f}) — "
            "ajouter des exemples de ce type à l'entraînement.",
            f"Weakest category: {cat} (relevance {c['relevance']['mean_finetuned']:.2f}) — add training examples of this kind.",
        ))
    if cmp["regressions"]:
        ids = ", ".join(cmp["regressions"][:8])
        out.append(_rec("regressions", f"Régressions par rapport à la base : {ids} — vérifier ces prompts.",
                        f"Regressions against base: {ids} — inspect these prompts."))
    if counts.get("truncated"):
        out.append(_rec("truncated", f"{counts['truncated']} réponses coupées à max_new_tokens : augmenter la limite "
                        "ou entraîner des réponses plus courtes.",
                        f"{counts['truncated']} answers hit max_new_tokens: raise the limit or train shorter answers."))
    if counts.get("malformed_calls"):
        out.append(_rec("malformed_calls",
                        f"{counts['malformed_calls']} réponses contiennent un appel d'outil mal formé (JSON tronqué ou "
                        "invalide), que JARVIS ne peut pas exécuter : voir `malformed_calls` dans le JSON ; entraîner le "
                        "format exact ou augmenter max_new_tokens si les appels sont coupés.",
                        f"{counts['malformed_calls']} answers contain a malformed tool call (truncated or invalid JSON) "
                        "that JARVIS cannot execute: see `malformed_calls` in the JSON; train the exact format, or raise "
                        "max_new_tokens if calls are cut off."))
    if counts.get("thinking"):
        out.append(_rec("thinking", f"{counts['thinking']} réponses contenaient un bloc de raisonnement (<think>, "
                        "[THINK]…), retiré : vérifier enable_thinking.", f"{counts['thinking']} answers contained a "
                        "reasoning block (<think>, [THINK]…), stripped: check enable_thinking."))
    if counts.get("errors"):
        out.append(_rec("errors", f"{counts['errors']} réponses en erreur (non notées) : relancer pour les régénérer.",
                        f"{counts['errors']} answers failed (not scored): rerun to regenerate them."))
    return out
