"""benchmark_report.txt (French by default, English on request): every number comes from the JSON, every
word from `messages.T`."""

from __future__ import annotations

from typing import Any

from .messages import T


def why(m: dict[str, Any], lang: str = "fr") -> str:
    """The reasons behind an answer's scores, in one line: the call judged, its arguments, the keywords
    found, the correction ("appel open_app_tool ✓ · arguments 1.00 · mots-clés 2/2 (chrome, ouvre)")."""
    w = T[lang]["reasons"]
    ok = "✓" if m.get("tool_correct") else "✗"
    first = m.get("first_call")
    if first is None:
        parts = [f"{w['no_call']} {ok}"]
    else:
        unknown = f" ({w['unknown']})" if first in m.get("unknown_tools", []) else ""
        parts = [f"{w['call']} {first.replace('(malformed)', '(' + w['malformed'] + ')')}{unknown} {ok}"]
    if m.get("tool_credit") == "mention":
        parts[0] += " (mention)"
    if m.get("args_score") is not None:
        colon = " :" if lang == "fr" else ":"
        extra = f" (+{w['extra']}{colon} {', '.join(m['extra_args'])})" if m.get("extra_args") else ""
        detail = ", ".join(f"{d['name']} « {d['got']} » {'✓' if d['ok'] else '✗'}" if d["got"] is not None
                           else f"{d['name']} {w['absent']} ✗" for d in m.get("args_detail") or [])
        parts.append(f"{w['args']} {m['args_score']:.2f}{f' ({detail})' if detail else ''}{extra}")
    if m.get("keyword_total"):
        found = f" ({', '.join(m['keywords_found'])})" if m.get("keywords_found") else ""
        parts.append(f"{w['kw']} {m['keyword_hits']}/{m['keyword_total']}{found}")
    if m.get("correction_score") is not None:
        parts.append(f"{w['corr']} {m['correction_score']:.2f} (CER {m['cer']:.2f})")
    return " · ".join(parts)


def verdict_notes(v: dict[str, Any], conf: float, lang: str = "fr") -> list[str]:
    """What qualifies a verdict: the data cannot decide between two levels (the rule gives different ones at
    the two ends of the relevance-gain CI), prompts the adapter saw in training. Empty when nothing does."""
    t = T[lang]
    out = []
    u = v.get("uncertain_between")
    if u and v.get("level") != "INCOMPLETE":
        out.append(t["uncertain"].format(c=conf, lo=u[0], hi=u[-1]))
    if v.get("seen_in_training"):
        out.append(t["seen_note"].format(n=v["seen_in_training"]))
    return out


def _f(x: Any, fmt: str = ".4f") -> str:
    return "-" if x is None else format(x, fmt)


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    out = [line, "-" * len(line)]
    out += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    return out


def _short(text: str, n: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def where_it_ran(meta: dict[str, Any], lang: str = "fr") -> tuple[str, str]:
    """(label, value) of the header line saying where the answers were computed: the backend that
    ran says it (hardware, or the server that answered); an unknown backend name gets the hardware line."""
    from ..backends import backend_class
    from ..backends.base import Backend
    from ..errors import ConfigError

    try:
        cls = backend_class(str(meta.get("backend")))
    except ConfigError:
        cls = Backend
    return cls.where_it_ran(meta, T[lang])


def render(data: dict[str, Any], lang: str = "fr") -> str:
    t = T[lang]
    meta, st = data["metadata"], data["statistics"]
    variants = meta["variants"]
    conf = meta.get("scoring", {}).get("confidence", 0.95)
    tol = meta.get("scoring", {}).get("regression_tolerance", 0.1)
    th = meta.get("thresholds", {})
    out = ["=" * 80, t["title"], "=" * 80]
    out.append(f"{t['date']}: {meta['timestamp']}")
    out.append(f"{t['base']}: {meta['base_model']}")
    out.append(f"{t['adapters']}: " + (", ".join(f"{a['name']} ({a['path']})" for a in meta["adapters"]) or "-"))
    label, where = where_it_ran(meta, lang)
    out.append(f"{label}: {where} · backend {meta['backend']}")
    out.append(f"{t['prompts']}: {meta['n_prompts']} · {', '.join(meta['categories'])}")
    if meta.get("skipped_prompts"):
        out.append(t["skipped"].format(n=len(meta["skipped_prompts"]), ids=", ".join(s["id"] for s in meta["skipped_prompts"]),
                                       c=meta["skipped_prompts"][0]["context"]))
    if meta.get("not_reproducible"):
        out.append(t["not_reproducible"].format(v=", ".join(meta["not_reproducible"])))
    out.append(f"{t['config']}: {meta['config_sha256'][:16]} · {t['scorer']} v{meta.get('scorer_version', 1)}")
    if not meta.get("complete", True):
        out.append(t["incomplete"].format(n=meta.get("missing_answers")))

    out += ["", t["global"]]
    rows = []
    for v in variants:
        o = st["variants"][v]["overall"]
        rows.append([v, _f(o["relevance"]), _f(o["keyword_hits"]), _f(o["keyword_ratio"]), _f(o["tool_correct"]),
                     _f(o["cosine_to_base"]), _f(o["cosine_to_reference"]), _f(o["tokens"], ".1f"),
                     str(o["truncated"]), str(o["errors"])])
    out += _table([t["variant"], t["relevance"], t["kw"], t["kw_ratio"], t["tool"], t["cos_base"], t["cos_ref"],
                   t["tokens"], t["truncated"], t["errors"]], rows)

    out += ["", t["by_cat"]]
    for name, cmp in st["comparisons"].items():
        rows = []
        for cat, c in [*cmp["by_category"].items(), ("GLOBAL", cmp["overall"])]:
            if "relevance" not in c:  # no prompt every variant answered
                continue
            r = c["relevance"]
            rows.append([cat, str(r["n"]), _f(r["mean_base"]), _f(r["mean_finetuned"]), _f(r["delta"], "+.4f"),
                         f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]", _f(r["p_value"], ".4g"),
                         f"{c['keyword_hits']['mean_base']:.4f} → {c['keyword_hits']['mean_finetuned']:.4f}"
                         if "keyword_hits" in c else "-"])
        out.append(f"[{name}]")
        out += _table([t["category"], "n", "base", name, t["delta"], t["ci"].format(c=conf), "p", t["kw"]], rows)

    by_id = {r["id"]: r for r in data["results"]}

    def rel(r: dict[str, Any], v: str) -> float | None:
        m = r["variants"].get(v, {}).get("metrics")
        return m["relevance"] if m else None

    for name in st["comparisons"]:
        scored = [(r, rel(r, "base"), rel(r, name)) for r in data["results"]]
        scored = [(r, b, f) for r, b, f in scored if b is not None and f is not None]
        out += ["", f"{t['top_up']} — {name}"]
        gains = [x for x in scored if x[2] > x[1]]
        for r, b, f in sorted(gains, key=lambda x: (x[1] - x[2], x[0]["id"]))[:5]:
            out.append(f"  {r['id']} [{r['category']}] « {r['prompt']} » : {b:.4f} → {f:.4f} ({f - b:+.4f})")
            out.append(f"      {t['answer']}: {_short(r['variants'][name]['response'])}")
            out.append(f"      {t['why']}: {why(r['variants'][name]['metrics'], lang)}  ·  base: "
                       f"{why(r['variants']['base']['metrics'], lang)}")
        out += ["", f"{t['top_down']} — {name}"]
        for r, b, f in sorted(scored, key=lambda x: (x[2], x[0]["id"]))[:5]:
            out.append(f"  {r['id']} [{r['category']}] « {r['prompt']} » : {f:.4f} (base {b:.4f})")
            out.append(f"      {t['answer']}: {_short(r['variants'][name]['response'])}")
            out.append(f"      {t['why']}: {why(r['variants'][name]['metrics'], lang)}")

    out += ["", t["regressions"].format(tol=tol)]
    for name, cmp in st["comparisons"].items():
        regs = cmp["regressions"]
        out.append(f"  {name}: " + (t["none"] if not regs else str(len(regs))))
        for pid in regs:
            r = by_id[pid]
            out.append(f"    {pid} « {r['prompt']} » : {rel(r, 'base'):.4f} → {rel(r, name):.4f}")

    out += ["", t["signif"]]
    for name, cmp in st["comparisons"].items():
        if "relevance" not in cmp["overall"]:
            continue
        r = cmp["overall"]["relevance"]
        out.append(t["sig_line"].format(name=name, d=r["delta"], c=conf, lo=r["ci_low"], hi=r["ci_high"],
                                        test=r["test"], p=r["p_value"], s=t["sig_yes"] if r["significant"] else t["sig_no"]))
        out.append(t["wtl"].format(w=r["wins"], t=r["ties"], l=r["losses"]))
        out.append(t["mdd"].format(n=r["n"], m=_f(r["min_detectable_delta"])))
        if r.get("p_value_holm") is not None:
            out.append(t["holm_p"].format(p=r["p_value_holm"]))
        tc = cmp["overall"].get("tool_correct", {})
        mc = tc.get("mcnemar")
        if mc:
            out.append(t["mcnemar"].format(g=mc["gained"], l=mc["lost"], p=mc["p_value"]))
        ob, ot = st["variants"]["base"]["overall"], st["variants"][name]["overall"]
        if ob.get("tool_correct_ci") and ot.get("tool_correct_ci"):
            out.append(t["prop"].format(b=ob["tool_correct"], blo=ob["tool_correct_ci"][0], bhi=ob["tool_correct_ci"][1],
                                        name=name, t=ot["tool_correct"], tlo=ot["tool_correct_ci"][0],
                                        thi=ot["tool_correct_ci"][1]))
        bay = tc.get("bayes")
        if bay and bay.get("n"):
            out.append(t["bayes"].format(d=bay["delta"], c=conf, lo=bay["ci_low"], hi=bay["ci_high"], pb=bay["p_better"]))
    if st.get("multiple_comparisons"):
        out.append(t["holm"].format(k=st["multiple_comparisons"]["adapters"]))

    out += ["", t["verdict"]]
    for name, cmp in st["comparisons"].items():
        v = cmp.get("verdict")
        if not v:
            continue
        unit = "%" if v["relevance_gain_unit"] == "percent" else t["points"]
        out.append(f"  {name}: {t['levels'][v['level']]}")
        out += [f"    {note}" for note in verdict_notes(v, conf, lang)]
        if v["level"] == "INCOMPLETE":
            out.append("    " + t["incomplete_verdict"].format(m=v["missing_answers"], c=v["complete_prompts"]))
            if v["relevance_gain"] is None:
                continue
        out.append("    " + t["gain"].format(g=v["relevance_gain"], u=unit, k=v["keyword_gain"], r=v["regressions"]))
        checks = t["checks"]
        vals = {"g": th.get("good_relevance_gain_pct"), "k": th.get("min_keyword_gain"), "r": th.get("max_regressions")}
        out.append("    " + " · ".join(f"{'✓' if ok else '✗'} {checks[k].format(**vals)}" for k, ok in v["checks"].items()))
    if len(st.get("ranking", [])) > 1:
        out.append("  " + t["ranking"].format(r=" > ".join(st["ranking"]), b=st["best_adapter"]))

    out += ["", t["recs"]]
    for name, cmp in st["comparisons"].items():
        for rec in cmp.get("recommendations", []):
            out.append(f"  • {rec[lang]}")
    if not st["comparisons"]:
        out.append("  • " + t["no_adapter"])
    out += _robustness(data, lang)
    out += _overlap(data, lang)
    out.append("")
    return "\n".join(out)


def _robustness(data: dict[str, Any], lang: str) -> list[str]:
    """Section 9: clean vs noisy per variant, each adapter's difference with the base on the noisy variants."""
    parts = robustness_parts(data, lang)
    if not parts:
        return []
    return ["", T[lang]["robust"], parts["head"], *_table(parts["cols"], parts["rows"]), *parts["lines"]]


def robustness_parts(data: dict[str, Any], lang: str) -> dict[str, Any] | None:
    """What section 9 says, in parts (the HTML page shows the table as a table): head, cols, rows, lines."""
    rob = data.get("robustness")
    if not rob:
        return None
    t = T[lang]
    conf = (data["metadata"].get("scoring") or {}).get("confidence", 0.95)
    head = t["robust_head"].format(n=rob["noisy_prompts"], s=rob["sources"], d=rob.get("max_phoneme_distance"),
                                   ph=rob.get("phonemiser"))
    out: list[str] = []
    rows = []
    for v, pv in rob["per_variant"].items():
        c, n, d = pv["clean"], pv["noisy"], pv["drop"]
        rows.append([v, _f(c["tool_accuracy"], ".3f"), _f(n["tool_accuracy"], ".3f"), _f(d["tool_accuracy"], "+.3f"),
                     _f(c["args_accuracy"], ".3f"), _f(n["args_accuracy"], ".3f"), _f(c["relevance"], ".3f"),
                     _f(n["relevance"], ".3f")])
    noisy_by_id = data.get("noisy_results") or []
    clean = {r["id"]: r for r in data["results"]}
    for name, cmp in rob["comparisons"].items():
        tool, rel = cmp["noisy"].get("tool_accuracy"), cmp["noisy"].get("relevance")
        if tool and rel:
            out.append(t["robust_cmp"].format(name=name, d=tool["delta"], lo=tool["ci_low"], hi=tool["ci_high"],
                                              rd=rel["delta"], rlo=rel["ci_low"], rhi=rel["ci_high"], c=conf,
                                              s=tool["sources"]))
        d = rob["per_variant"][name]["drop"]
        if d.get("tool_accuracy") is not None and d.get("tool_accuracy_ci"):
            out.append(t["robust_drop"].format(name=name, d=d["tool_accuracy"], c=conf, lo=d["tool_accuracy_ci"][0],
                                               hi=d["tool_accuracy_ci"][1]))
        broken = [r["id"] for r in noisy_by_id if (m := (r["variants"].get(name) or {}).get("metrics")) is not None
                  and not m.get("tool_correct")  # a failed answer is no failure under noise
                  and ((clean.get(r["source_id"], {}).get("variants", {}).get(name) or {}).get("metrics") or {})
                  .get("tool_correct")]
        if broken:
            out.append(t["robust_worst"].format(name=name, ids=", ".join(broken[:12]) + (" …" if len(broken) > 12 else "")))
    return {"head": head, "cols": list(t["robust_cols"]), "rows": rows, "lines": out}


def _overlap(data: dict[str, Any], lang: str) -> list[str]:
    """Section 10: the benchmark prompts found in the training files, and the comparison without them."""
    ov = data.get("training_overlap")
    if not ov:
        return []
    t = T[lang]
    th = ov.get("thresholds") or {}
    out = ["", t["overlap"], t["overlap_head"].format(n=ov["training_prompts"], files=", ".join(ov["files"]),
                                                       f=th.get("fuzzy"), c=th.get("cosine"))]
    seen = [p for p in ov["prompts"] if p["seen"]]
    if not seen:
        out.append(t["overlap_none"])
    for p in seen[:50]:
        out.append(t["overlap_line"].format(id=p["id"], prompt=_short(p["prompt"], 60), text=_short(p["nearest_text"], 60),
                                            where=p["nearest_where"], by=", ".join(p["seen_by"])))
    if len(seen) > 50:
        out.append(f"  … +{len(seen) - 50}")
    for name, cmp in (data.get("statistics") or {}).get("comparisons", {}).items():
        r = (cmp.get("unseen") or {}).get("relevance")
        if r:
            out.append(t["unseen_cmp"].format(name=name, n=cmp["unseen"]["n_seen"], d=r["delta"], lo=r["ci_low"],
                                              hi=r["ci_high"], m=r["n"]))
    return out
