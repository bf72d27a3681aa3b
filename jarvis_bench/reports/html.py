"""benchmark_report.html: one self-contained file (no network, no CDN; data and script inline) that
shows the verdict with its evidence and every answer side by side, with filters. French by default.

Without JavaScript the page is complete (summary, chart, every row); the small inline script only adds
the filters, the search and the sort. Every number comes from the results JSON, like the text report.

The markup is `templates/report.html.j2` (Jinja2, autoescaped), its style and script
`templates/report.css` and `report.js`, inlined when the page is rendered; the words are `messages.T`.
This module builds what the template shows (the view) and draws the charts as inline SVG.
"""

from __future__ import annotations

import difflib
import functools
import html
import json
import re
from pathlib import Path
from typing import Any

from ..analysis import flip_status, relevance_of
from ..text import clip
from . import ANSWER_CHARS
from .messages import T
from .txt import _overlap, robustness_parts, verdict_notes, where_it_ran, why

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: Above this many characters on either side, an answer is shown without its word diff against the base:
#: difflib is quadratic in the number of words (~0.06 s for two answers of 2,000 characters here).
DIFF_CHARS = 2000

def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _diff(base: str, tuned: str) -> str:
    """The tuned answer with words added (<ins>) and removed (<del>) against the base answer, when the
    two are alike enough for that to help (half their words shared); otherwise the tuned answer as is."""
    a, b = re.findall(r"\S+|\s+", base), re.findall(r"\S+|\s+", tuned)
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    if matcher.ratio() < 0.5:
        return _e(tuned)
    out = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.append(_e("".join(b[j1:j2])))
            continue
        if op in ("delete", "replace") and "".join(a[i1:i2]).strip():
            out.append(f"<del>{_e(''.join(a[i1:i2]))}</del>")
        if op in ("insert", "replace"):
            out.append(f"<ins>{_e(''.join(b[j1:j2]))}</ins>")
    return "".join(out)


def _answer(ans: dict[str, Any] | None, base_text: str | None, t: dict[str, Any], lang: str) -> dict[str, Any]:
    """What the template shows of one answer: the text up to ANSWER_CHARS (with its word diff against the
    base when both are short enough), why it scored what it did, and notes (thinking stripped, cut at
    max_new_tokens, characters not shown)."""
    from markupsafe import Markup

    if not ans:
        return {"missing": True}
    if ans.get("error"):
        return {"missing": False, "error": clip(str(ans["error"]), ANSWER_CHARS)[0]}
    text = str(ans.get("response") or "")
    shown, more = clip(text, ANSWER_CHARS)
    notes = []
    if ans.get("thinking_chars"):
        notes.append(t["thinking"].format(n=ans["thinking_chars"]))
    if ans.get("truncated"):
        notes.append(t["truncated"])
    if more:
        notes.append(T[lang]["more_chars"].format(n=more))
    m = ans.get("metrics") or {}
    rel = f'{t["relevance"]} {m["relevance"]:.2f} · ' if m.get("relevance") is not None else ""
    diff = base_text is not None and len(base_text) <= DIFF_CHARS and len(text) <= DIFF_CHARS
    return {"missing": False, "error": None,
            "body": Markup(_diff(base_text, text) if diff else _e(shown)),
            "why": f"{rel}{why(m, lang) if m else ''}", "notes": " · ".join(notes)}


COLORS = ["#6b7280", "#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777"]
W, H, LEFT, TOP, BOTTOM = 560, 240, 40, 10, 40


def _frame(ymax: float, title: str, fmt: str = ".2f") -> list[str]:
    span = H - BOTTOM - TOP
    parts = [f'<figure><figcaption>{_e(title)}</figcaption><svg role="img" viewBox="0 0 {W} {H + 30}" width="100%" '
             f'style="max-width:{W}px"><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" stroke="#999"/>']
    for k in range(5):
        y = ymax * k / 4
        yy = H - BOTTOM - y / ymax * span
        parts.append(f'<line x1="{LEFT}" y1="{yy:.1f}" x2="{W}" y2="{yy:.1f}" stroke="#eee"/>'
                     f'<text x="{LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end">{y:{fmt}}</text>')
    return parts


def _legend(variants: list[str], first: int = 0) -> str:
    return "".join(f'<rect x="{LEFT + i * 150}" y="{H + 6}" width="12" height="12" '
                   f'fill="{COLORS[(i + first) % len(COLORS)]}"/>'
                   f'<text x="{LEFT + i * 150 + 16}" y="{H + 16}">{_e(v)}</text>' for i, v in enumerate(variants))


def _bars(data: dict[str, Any], key: str, title: str, *, ci: bool) -> str:
    """Grouped bars: the mean of `key` per category and variant (the adapters' bootstrap CI as whiskers
    when `ci`); each bar's value on hover (<title>)."""
    variants = data["metadata"]["variants"]
    by_cat = data.get("by_category") or {}
    cats = list(by_cat)
    if not cats:
        return ""
    values = [(by_cat[c].get(v) or {}).get(key) for c in cats for v in variants]
    ymax = 1.0 if key == "relevance" else max(1.0, *(x for x in values if x is not None))
    span = H - BOTTOM - TOP
    group = (W - LEFT) / len(cats)
    bar = min(40.0, group * 0.8 / len(variants))
    parts = _frame(ymax, title)
    comps = (data.get("statistics") or {}).get("comparisons") or {}
    for ci_, c in enumerate(cats):
        x0 = LEFT + ci_ * group + (group - bar * len(variants)) / 2
        for vi, v in enumerate(variants):
            mean = (by_cat[c].get(v) or {}).get(key)
            if mean is None:
                continue
            x, bh = x0 + vi * bar, mean / ymax * span
            parts.append(f'<rect x="{x:.1f}" y="{H - BOTTOM - bh:.1f}" width="{bar - 3:.1f}" height="{bh:.1f}" '
                         f'fill="{COLORS[vi % len(COLORS)]}"><title>{_e(f"{v} · {c}: {mean:.3f}")}</title></rect>')
            rel = ((comps.get(v) or {}).get("by_category") or {}).get(c, {}).get(key) if ci else None
            base = (by_cat[c].get("base") or {}).get(key)
            if rel and base is not None:
                lo, hi = max(base + rel["ci_low"], 0), min(base + rel["ci_high"], ymax)
                cx = x + (bar - 3) / 2
                parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{H - BOTTOM - hi / ymax * span:.1f}" '
                             f'y2="{H - BOTTOM - lo / ymax * span:.1f}" stroke="#111"><title>'
                             f'{_e(f"{v} · {c}: [{lo:.3f}, {hi:.3f}]")}</title></line>')
        parts.append(f'<text x="{LEFT + ci_ * group + group / 2:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">'
                     f'{_e(c)}</text>')
    return "".join([*parts, _legend(variants), "</svg></figure>"])


def _histogram(data: dict[str, Any], title: str) -> str:
    """How many answers of each variant fall in each tenth of relevance; counts on hover."""
    variants = data["metadata"]["variants"]
    counts = {v: [0] * 10 for v in variants}
    for r in data["results"]:
        for v in variants:
            m = (r["variants"].get(v) or {}).get("metrics")
            if m and m.get("relevance") is not None:
                counts[v][min(int(m["relevance"] * 10), 9)] += 1
    ymax = max(1, *(n for c in counts.values() for n in c))
    ymax = -(-ymax // 4) * 4  # a multiple of 4: whole numbers on the axis
    span = H - BOTTOM - TOP
    group = (W - LEFT) / 10
    bar = group * 0.8 / len(variants)
    parts = _frame(float(ymax), title, ".0f")
    for b in range(10):
        for vi, v in enumerate(variants):
            n = counts[v][b]
            x, bh = LEFT + b * group + group * 0.1 + vi * bar, n / ymax * span
            parts.append(f'<rect x="{x:.1f}" y="{H - BOTTOM - bh:.1f}" width="{bar:.1f}" height="{bh:.1f}" '
                         f'fill="{COLORS[vi % len(COLORS)]}"><title>{_e(f"{v} · {b / 10:.1f}–{(b + 1) / 10:.1f}: {n}")}'
                         "</title></rect>")
        parts.append(f'<text x="{LEFT + b * group + group / 2:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">'
                     f"{b / 10:.1f}</text>")
    return "".join([*parts, _legend(variants), "</svg></figure>"])


def _verdict_card(name: str, cmp: dict[str, Any], th: dict[str, Any], lang: str) -> dict[str, Any] | None:
    """One adapter's verdict: the level, the rule's conditions met or not (the text report's words,
    said once), the relevance delta with its interval, the recommendations."""
    t, rt = T[lang]["html"], T[lang]
    v = cmp.get("verdict")
    if not v:
        return None
    card: dict[str, Any] = {"name": name, "level": v["level"], "incomplete": None, "checks": [], "delta": None,
                            "recs": [rec[lang] for rec in cmp.get("recommendations") or []]}
    card["notes"] = verdict_notes(v, cmp.get("overall", {}).get("relevance", {}).get("confidence", 0.95), lang)
    if v["level"] == "INCOMPLETE":
        card["incomplete"] = t["incomplete"].format(m=v["missing_answers"])
    if v.get("relevance_gain") is not None:
        vals = {"g": th.get("good_relevance_gain_pct"), "k": th.get("min_keyword_gain"), "r": th.get("max_regressions")}
        card["checks"] = [(ok, rt["checks"][k].format(**vals)) for k, ok in v["checks"].items()]
        r = cmp["overall"]["relevance"]
        sig = t["sig"] if r["significant"] else t["nosig"]
        card["delta"] = (f"{t['delta']} {r['delta']:+.3f} ({t['ci']} {r['confidence']:.0%} "
                         f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}], p = {r['p_value']:.3g}, {sig}) · "
                         f"{r['wins']} / {r['ties']} / {r['losses']} {t['wtl']}")
    return card


def _row(r: dict[str, Any], adapters: list[str], tol: float, t: dict[str, Any], lang: str) -> dict[str, Any]:
    """One prompt: its base answer and, per adapter, the answer, its flip status and its relevance delta
    (what the filters and the sort read)."""
    b = r["variants"].get("base")
    base_text = b.get("response") if b and not b.get("error") else None
    rb = relevance_of(b)
    cells = []
    for a in adapters:
        ans = r["variants"].get(a)
        m = (ans or {}).get("metrics") or {}
        rt = relevance_of(ans)
        cells.append({"adapter": a, "status": flip_status(rb, rt, tol), "tool_wrong": 0 if m.get("tool_correct") else 1,
                      "delta": f"{(rt - rb) if rt is not None and rb is not None else 0:.4f}",
                      "answer": _answer(ans, base_text, t, lang)})
    return {"id": r["id"], "category": r["category"], "prompt": r["prompt"], "expected_tool": r.get("expected_tool"),
            "base": _answer(b, None, t, lang), "cells": cells}


def _robust_chart(rob: dict[str, Any], t: dict[str, Any]) -> str:
    """Per variant, tool accuracy on the clean source prompts and on their noisy variants, exact CIs as whiskers."""
    names = list(rob["per_variant"])
    span = H - BOTTOM - TOP
    group = (W - LEFT) / max(1, len(names))
    bar = min(40.0, group * 0.8 / 2)
    parts = _frame(1.0, t["robust_chart"])
    for gi, v in enumerate(names):
        x0 = LEFT + gi * group + (group - bar * 2) / 2
        for k, kind in enumerate(("clean", "noisy")):
            block = rob["per_variant"][v][kind]
            acc, ci = block.get("tool_accuracy"), block.get("tool_accuracy_ci")
            if acc is None:
                continue
            x, bh = x0 + k * bar, acc * span
            parts.append(f'<rect x="{x:.1f}" y="{H - BOTTOM - bh:.1f}" width="{bar - 3:.1f}" height="{bh:.1f}" '
                         f'fill="{COLORS[k + 1]}"><title>{_e(f"{v} · {t[kind]}: {acc:.3f}")}</title></rect>')
            if ci:
                cx = x + (bar - 3) / 2
                parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{H - BOTTOM - ci[1] * span:.1f}" '
                             f'y2="{H - BOTTOM - ci[0] * span:.1f}" stroke="#111"><title>'
                             f'{_e(f"{v} · {t[kind]}: [{ci[0]:.3f}, {ci[1]:.3f}]")}</title></line>')
        parts.append(f'<text x="{LEFT + gi * group + group / 2:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">'
                     f'{_e(v)}</text>')
    return "".join([*parts, _legend([t["clean"], t["noisy"]], first=1), "</svg></figure>"])


def _robustness_view(data: dict[str, Any], adapters: list[str], t: dict[str, Any], lang: str) -> dict[str, Any] | None:
    """The robustness section: the text report's lines, the chart, and every noisy variant under its source."""
    from markupsafe import Markup

    rob = data.get("robustness")
    if not rob:
        return None
    clean = {r["id"]: r for r in data["results"]}
    groups: dict[str, dict[str, Any]] = {}
    for r in data.get("noisy_results") or []:
        src = clean.get(r["source_id"])
        if src is None:
            continue
        g = groups.setdefault(r["source_id"], {"id": src["id"], "prompt": src["prompt"], "category": src["category"],
                                               "expected_tool": src.get("expected_tool"), "variants": [],
                                               "clean": {v: _answer(src["variants"].get(v), None, t, lang)
                                                         for v in ["base", *adapters]}})
        oks = {}
        for v in ["base", *adapters]:
            m = (r["variants"].get(v) or {}).get("metrics")
            clean_ok = bool(((src["variants"].get(v) or {}).get("metrics") or {}).get("tool_correct"))
            oks[v] = ("error" if m is None else "ok" if m.get("tool_correct") else "broken" if clean_ok else "ko")
        g["variants"].append({"id": r["id"], "prompt": r["prompt"], "rules": ", ".join(r.get("rules") or []),
                              "rules_list": r.get("rules") or [], "oks": oks,
                              "answers": {v: _answer(r["variants"].get(v), None, t, lang) for v in ["base", *adapters]}})
    rules = sorted({x for g in groups.values() for v in g["variants"] for x in v["rules_list"]})
    return {**(robustness_parts(data, lang) or {}), "chart": Markup(_robust_chart(rob, t)), "groups": list(groups.values()),
            "rules": rules}


@functools.cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined,
                              finalize=lambda v: "" if v is None else v)  # a missing value shows empty, not "None"


def render(data: dict[str, Any], lang: str = "fr") -> str:
    from markupsafe import Markup

    t = T[lang]["html"]
    meta, st = data["metadata"], data.get("statistics") or {}
    variants = meta["variants"]
    adapters = [v for v in variants if v != "base"]
    primary = st.get("best_adapter") or (adapters[0] if adapters else "base")
    tol = (meta.get("scoring") or {}).get("regression_tolerance", 0.0)
    th = meta.get("thresholds") or {}
    adapter_desc = ", ".join(f"{a['name']} ({(a.get('sha256') or '')[:12]})" for a in meta.get("adapters") or []) or "—"
    notices = []
    if len(st.get("ranking") or []) > 1:
        notices.append(f"{t['ranking']}: {' > '.join(st['ranking'])}")
    if meta.get("not_reproducible"):
        notices.append(T[lang]["not_reproducible"].format(v=", ".join(meta["not_reproducible"])))
    if meta.get("skipped_prompts"):
        notices.append(f"{t['skipped']}: {', '.join(s['id'] for s in meta['skipped_prompts'])}")
    cards = [_verdict_card(a, (st.get("comparisons") or {}).get(a, {}), th, lang) for a in adapters]
    charts = Markup("".join([_bars(data, "relevance", t["chart"], ci=True),
                             _bars(data, "keyword_hits", t["chart_kw"], ci=False), _histogram(data, t["chart_dist"])]))
    page = {
        "meta": [(t["model"], meta.get("base_model")), (t["adapters"], adapter_desc), (t["backend"], meta.get("backend")),
                 where_it_ran(meta, lang), (t["scorer"], f"v{meta.get('scorer_version', 1)}"),
                 (t["date"], meta.get("timestamp")), (t["prompts"], meta.get("n_prompts"))],
        "cards": [c for c in cards if c], "notices": notices, "charts": charts,
        "categories": list(dict.fromkeys(r["category"] for r in data["results"])),
        "adapters": adapters, "primary": primary,
        "rows": [_row(r, adapters, tol, t, lang) for r in data["results"]],
        "robust": _robustness_view(data, adapters, t, lang),
        "overlap": _overlap(data, lang)[1:] or None,
        "variants": ["base", *adapters],
        # JSON inside <script>: "</" escaped so no answer can close the element
        "payload": Markup(json.dumps({"primary": primary, "variants": variants}, ensure_ascii=False)
                          .replace("</", "<\\/")),
    }
    css = Markup((TEMPLATES / "report.css").read_text(encoding="utf-8"))
    js = Markup((TEMPLATES / "report.js").read_text(encoding="utf-8"))
    return _environment().get_template("report.html.j2").render(page=page, t=t, rt=T[lang], lang=lang, css=css, js=js)
