"""benchmark_report.html: one self-contained file (no network, no CDN; data and script inline) that
shows the verdict with its evidence and every answer side by side, with filters. French by default.

Without JavaScript the page is complete (summary, chart, every row); the small inline script only adds
the filters, the search and the sort. Every number comes from the results JSON, like the text report.
"""

from __future__ import annotations

import difflib
import html
import json
import re
from typing import Any

from . import report as report_text
from .analysis import flip_status
from .report import where_it_ran, why

T = {
    "fr": {
        "title": "Rapport JARVIS — base vs fine-tuning LoRA", "model": "Modèle de base", "adapters": "Adaptateurs",
        "backend": "Backend", "device": "Matériel", "scorer": "Notation", "date": "Date", "prompts": "Prompts",
        "verdict": "Verdict", "rule": "Règle", "delta": "Delta de pertinence", "ci": "IC", "wtl": "victoires / égalités / défaites",
        "sig": "significatif", "nosig": "non significatif",
        "incomplete": "{m} réponse(s) manquante(s) ou en erreur : relancer la même commande pour terminer.",
        "charts": "Graphiques", "chart": "Pertinence par catégorie (moyenne, IC de l'adaptateur)",
        "chart_kw": "Mots-clés trouvés par réponse, par catégorie", "chart_dist": "Distribution de la pertinence",
        "answers": "Réponses",
        "category": "Catégorie", "status": "Statut", "adapter": "Adaptateur", "all": "toutes", "search": "Rechercher…",
        "tool_wrong": "outil faux", "sort": "trier par delta", "shown": "prompts affichés",
        "statuses": {"improved": "amélioré", "regressed": "régressé", "unchanged": "inchangé", "error": "erreur"},
        "error": "erreur", "thinking": "bloc <think> retiré ({n} caractères)", "truncated": "coupée à max_new_tokens",
        "relevance": "pertinence", "ranking": "Classement", "skipped": "Prompts écartés (trop longs)",
        "recs": "Recommandations",
    },
    "en": {
        "title": "JARVIS report — base vs LoRA fine-tune", "model": "Base model", "adapters": "Adapters",
        "backend": "Backend", "device": "Hardware", "scorer": "Scorer", "date": "Date", "prompts": "Prompts",
        "verdict": "Verdict", "rule": "Rule", "delta": "Relevance delta", "ci": "CI", "wtl": "wins / ties / losses",
        "sig": "significant", "nosig": "not significant",
        "incomplete": "{m} answer(s) missing or failed: rerun the same command to finish.",
        "charts": "Charts", "chart": "Relevance per category (mean, adapter's CI)",
        "chart_kw": "Keywords found per answer, per category", "chart_dist": "Relevance distribution",
        "answers": "Answers",
        "category": "Category", "status": "Status", "adapter": "Adapter", "all": "all", "search": "Search…",
        "tool_wrong": "tool wrong", "sort": "sort by delta", "shown": "prompts shown",
        "statuses": {"improved": "improved", "regressed": "regressed", "unchanged": "unchanged", "error": "error"},
        "error": "error", "thinking": "<think> block stripped ({n} characters)", "truncated": "cut at max_new_tokens",
        "relevance": "relevance", "ranking": "Ranking", "skipped": "Prompts left out (too long)",
        "recs": "Recommendations",
    },
}

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header,main{max-width:1500px;margin:0 auto;padding:0 20px}
h1{font-size:1.5em;margin:18px 0 4px}h2{font-size:1.15em;margin:22px 0 8px}
.meta{color:#555;font-size:.9em}.meta span{margin-right:16px;white-space:nowrap}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:12px 16px;flex:1 1 420px}
.level{font-weight:700;font-size:1.05em}.GOOD{color:#17803d}.MODERATE{color:#b06d00}.INSUFFICIENT,.INCOMPLETE{color:#b3261e}
.ok{color:#17803d}.ko{color:#b3261e}
.filters{position:sticky;top:0;background:#f6f7f9;padding:8px 0;display:flex;flex-wrap:wrap;gap:8px;align-items:center;z-index:1}
.filters select,.filters input[type=search]{font:inherit;padding:3px 6px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border:1px solid #dde1e6;padding:6px 8px;vertical-align:top;text-align:left}
th{background:#eef1f4;position:sticky;top:44px}
td.id a{font-family:ui-monospace,monospace;color:#1d4ed8;text-decoration:none}
pre.answer{white-space:pre-wrap;word-break:break-word;margin:0 0 4px;font:13px/1.4 ui-monospace,Consolas,monospace;
  background:#f8fafc;padding:4px 6px;border-radius:4px;max-height:18em;overflow:auto}
pre.answer.err{background:#fdecea;color:#8a1c14}
ins{background:#d9f5df;text-decoration:none}del{background:#fbe0e0}
.why{font-size:.85em;color:#374151}.note{font-size:.8em;color:#6b7280}
.status{font-weight:600;white-space:nowrap}.improved{color:#17803d}.regressed{color:#b3261e}.unchanged{color:#6b7280}.error{color:#8a1c14}
tr:target{outline:3px solid #2563eb}
svg text{font:12px system-ui,sans-serif}
.charts{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;background:#fff;border:1px solid #dde1e6;border-radius:8px;
  padding:8px;flex:1 1 480px}figcaption{font-weight:600;margin-bottom:4px}
"""

JS = """
(function(){
  var rows=[].slice.call(document.querySelectorAll('tr.prompt'));
  if(!rows.length)return;
  var f={cat:document.getElementById('f-cat'),st:document.getElementById('f-status'),ad:document.getElementById('f-adapter'),
         tw:document.getElementById('f-tool'),q:document.getElementById('f-search'),so:document.getElementById('f-sort')};
  var count=document.getElementById('shown');
  function apply(){
    var a=f.ad.value,q=f.q.value.toLowerCase(),n=0;
    rows.forEach(function(r){
      var ok=(!f.cat.value||r.dataset.category===f.cat.value)&&(!f.st.value||r.getAttribute('data-status-'+a)===f.st.value)
        &&(!f.tw.checked||r.getAttribute('data-toolwrong-'+a)==='1')&&(!q||r.textContent.toLowerCase().indexOf(q)>=0);
      r.hidden=!ok;if(ok)n++;
    });
    document.querySelectorAll('[data-col]').forEach(function(c){c.hidden=c.getAttribute('data-col')!==a&&c.getAttribute('data-col')!=='base';});
    count.textContent=n;
  }
  function sort(){
    var a=f.ad.value,body=rows[0].parentNode;
    var s=rows.slice().sort(function(x,y){
      return f.so.checked?(parseFloat(x.getAttribute('data-delta-'+a)||0)-parseFloat(y.getAttribute('data-delta-'+a)||0))
        :(+x.dataset.order)-(+y.dataset.order);});
    s.forEach(function(r){body.appendChild(r);});
  }
  // the filters can come from the address: benchmark_report.html?status=regressed&q=chrome (shareable)
  var p=new URLSearchParams(location.search);
  if(p.get('cat'))f.cat.value=p.get('cat');if(p.get('status'))f.st.value=p.get('status');
  if(p.get('adapter'))f.ad.value=p.get('adapter');if(p.get('q'))f.q.value=p.get('q');
  f.tw.checked=p.get('tool')==='wrong';f.so.checked=p.get('sort')==='delta';
  sort();
  [f.cat,f.st,f.ad,f.tw].forEach(function(e){e.addEventListener('change',function(){sort();apply();});});
  f.q.addEventListener('input',apply);f.so.addEventListener('change',function(){sort();apply();});
  apply();
})();
"""


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


def _answer(ans: dict[str, Any] | None, base_text: str | None, t: dict[str, Any], lang: str) -> str:
    if not ans:
        return f'<pre class="answer err">{_e(t["error"])}: —</pre>'
    if ans.get("error"):
        return f'<pre class="answer err">{_e(t["error"])}: {_e(ans["error"])}</pre>'
    text = ans.get("response", "")
    body = _diff(base_text, text) if base_text is not None else _e(text)
    notes = []
    if ans.get("thinking_chars"):
        notes.append(t["thinking"].format(n=ans["thinking_chars"]))
    if ans.get("truncated"):
        notes.append(t["truncated"])
    m = ans.get("metrics") or {}
    rel = f'{t["relevance"]} {m["relevance"]:.2f} · ' if m.get("relevance") is not None else ""
    out = f'<pre class="answer">{body}</pre><div class="why">{_e(rel)}{_e(why(m, lang)) if m else ""}</div>'
    if notes:
        out += f'<div class="note">{_e(" · ".join(notes))}</div>'
    return out


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


def _legend(variants: list[str]) -> str:
    return "".join(f'<rect x="{LEFT + i * 150}" y="{H + 6}" width="12" height="12" fill="{COLORS[i % len(COLORS)]}"/>'
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


def _verdict_card(name: str, cmp: dict[str, Any], th: dict[str, Any], lang: str) -> str:
    """The verdict's labels and the rule's conditions are the text report's (report.T), said once."""
    t, rt = T[lang], report_text.T[lang]
    v = cmp.get("verdict")
    if not v:
        return ""
    out = [f'<div class="card"><div>{_e(name)} vs base</div>',
           f'<div class="level {v["level"]}">{_e(rt["levels"][v["level"]])}</div>']
    if v["level"] == "INCOMPLETE":
        out.append(f"<p>{_e(t['incomplete'].format(m=v['missing_answers']))}</p>")
    if v.get("relevance_gain") is not None:
        vals = {"g": th.get("good_relevance_gain_pct"), "k": th.get("min_keyword_gain"), "r": th.get("max_regressions")}
        out.append("<div>" + " · ".join(
            f'<span class="{"ok" if ok else "ko"}">{"✓" if ok else "✗"} {_e(rt["checks"][k].format(**vals))}</span>'
            for k, ok in v["checks"].items()) + "</div>")
        r = cmp["overall"]["relevance"]
        sig = t["sig"] if r["significant"] else t["nosig"]
        out.append(f"<div>{_e(t['delta'])} {r['delta']:+.3f} ({_e(t['ci'])} {r['confidence']:.0%} "
                   f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}], p = {r['p_value']:.3g}, {_e(sig)}) · "
                   f"{r['wins']} / {r['ties']} / {r['losses']} {_e(t['wtl'])}</div>")
    recs = cmp.get("recommendations") or []
    if recs:
        out.append("<details><summary>" + _e(t["recs"]) + "</summary><ul>"
                   + "".join(f"<li>{_e(rec[lang])}</li>" for rec in recs) + "</ul></details>")
    out.append("</div>")
    return "".join(out)


def render(data: dict[str, Any], lang: str = "fr") -> str:
    t = T[lang]
    meta, st = data["metadata"], data.get("statistics") or {}
    variants = meta["variants"]
    adapters = [v for v in variants if v != "base"]
    primary = st.get("best_adapter") or (adapters[0] if adapters else "base")
    tol = (meta.get("scoring") or {}).get("regression_tolerance", 0.0)
    th = meta.get("thresholds") or {}
    adapter_desc = ", ".join(f"{a['name']} ({(a.get('sha256') or '')[:12]})" for a in meta.get("adapters") or []) or "—"
    head = [
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(t["title"])}</title>'
        f"<style>{CSS}</style></head><body><header><h1>{_e(t['title'])}</h1><div class=\"meta\">",
        *(f"<span>{_e(k)}: <b>{_e(v)}</b></span>" for k, v in (
            (t["model"], meta.get("base_model")), (t["adapters"], adapter_desc), (t["backend"], meta.get("backend")),
            where_it_ran(meta, lang), (t["scorer"], f"v{meta.get('scorer_version', 1)}"),
            (t["date"], meta.get("timestamp")), (t["prompts"], meta.get("n_prompts")))),
        "</div></header><main>",
    ]
    body = [f"<h2>{_e(t['verdict'])}</h2><div class=\"cards\">",
            *(_verdict_card(a, (st.get("comparisons") or {}).get(a, {}), th, lang) for a in adapters), "</div>"]
    if len(st.get("ranking") or []) > 1:
        body.append(f"<p>{_e(t['ranking'])}: {_e(' > '.join(st['ranking']))}</p>")
    if meta.get("not_reproducible"):
        body.append(f"<p>{_e(report_text.T[lang]['not_reproducible'].format(v=', '.join(meta['not_reproducible'])))}</p>")
    if meta.get("skipped_prompts"):
        body.append(f"<p>{_e(t['skipped'])}: {_e(', '.join(s['id'] for s in meta['skipped_prompts']))}</p>")
    body += [f"<h2>{_e(t['charts'])}</h2>", '<div class="charts">', _bars(data, "relevance", t["chart"], ci=True),
             _bars(data, "keyword_hits", t["chart_kw"], ci=False), _histogram(data, t["chart_dist"]), "</div>"]
    cats = list(dict.fromkeys(r["category"] for r in data["results"]))
    opts = "".join(f'<option value="{_e(c)}">{_e(c)}</option>' for c in cats)
    st_opts = "".join(f'<option value="{k}">{_e(v)}</option>' for k, v in t["statuses"].items())
    ad_opts = "".join(f'<option value="{_e(a)}"{" selected" if a == primary else ""}>{_e(a)}</option>' for a in adapters)
    body += [
        f"<h2>{_e(t['answers'])}</h2>",
        '<div class="filters">',
        f'<label>{_e(t["category"])} <select id="f-cat"><option value="">{_e(t["all"])}</option>{opts}</select></label>',
        f'<label>{_e(t["status"])} <select id="f-status"><option value="">{_e(t["all"])}</option>{st_opts}</select></label>',
        f'<label>{_e(t["adapter"])} <select id="f-adapter">{ad_opts}</select></label>',
        f'<label><input type="checkbox" id="f-tool"> {_e(t["tool_wrong"])}</label>',
        f'<label><input type="checkbox" id="f-sort"> {_e(t["sort"])}</label>',
        f'<input type="search" id="f-search" placeholder="{_e(t["search"])}">',
        f'<span><b id="shown">{len(data["results"])}</b> {_e(t["shown"])}</span>',
        "</div>",
        "<table><thead><tr><th>id</th><th>" + _e(t["category"]) + "</th><th>prompt</th><th>"
        + _e(t["status"]) + "</th>" + '<th data-col="base">base</th>'
        + "".join(f'<th data-col="{_e(a)}">{_e(a)}</th>' for a in adapters) + "</tr></thead><tbody>",
    ]
    for order, r in enumerate(data["results"]):
        b = r["variants"].get("base")
        base_text = b.get("response") if b and not b.get("error") else None
        rb = ((b or {}).get("metrics") or {}).get("relevance")
        attrs, status_cells = [], []
        for a in adapters:
            ans = r["variants"].get(a) or {}
            m = ans.get("metrics") or {}
            rt = m.get("relevance")
            s = flip_status(rb, rt, tol)
            attrs.append(f'data-status-{_e(a)}="{s}" data-toolwrong-{_e(a)}="{0 if m.get("tool_correct") else 1}" '
                         f'data-delta-{_e(a)}="{(rt - rb) if rt is not None and rb is not None else 0:.4f}"')
            status_cells.append(f'<div data-col="{_e(a)}" class="status {s}">{_e(t["statuses"][s])}</div>')
        rid = _e(r["id"])
        body.append(
            f'<tr class="prompt" id="{rid}" data-order="{order}" data-category="{_e(r["category"])}" {" ".join(attrs)}>'
            f'<td class="id"><a href="#{rid}">{rid}</a></td><td>{_e(r["category"])}</td><td>{_e(r["prompt"])}'
            + (f'<div class="note">→ {_e(r["expected_tool"])}</div>' if r.get("expected_tool") else "")
            + f"</td><td>{''.join(status_cells)}</td>"
            + f'<td data-col="base">{_answer(b, None, t, lang)}</td>'
            + "".join(f'<td data-col="{_e(a)}">{_answer(r["variants"].get(a), base_text, t, lang)}</td>' for a in adapters)
            + "</tr>"
        )
    body.append("</tbody></table>")
    payload = json.dumps({"primary": primary, "variants": variants}, ensure_ascii=False).replace("</", "<\\/")
    tail = [f'<script type="application/json" id="jb-data">{payload}</script><script>{JS}</script></main></body></html>']
    return "\n".join([*head, *body, *tail])
