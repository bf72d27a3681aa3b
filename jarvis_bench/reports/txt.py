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
        mc = cmp["overall"].get("tool_correct", {}).get("mcnemar")
        if mc:
            out.append(t["mcnemar"].format(g=mc["gained"], l=mc["lost"], p=mc["p_value"]))

    out += ["", t["verdict"]]
    for name, cmp in st["comparisons"].items():
        v = cmp.get("verdict")
        if not v:
            continue
        unit = "%" if v["relevance_gain_unit"] == "percent" else t["points"]
        out.append(f"  {name}: {t['levels'][v['level']]}")
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
    out.append("")
    return "\n".join(out)
