"""Every word jarvis-bench shows a person, in French (the default) and English: one table for the text
report, the HTML page, the charts and the console, so a wording is changed in one place and both
languages stay side by side. `T[lang]` is the text report's table; its sections `reasons` (the one-line why of a score), `html`, `charts`
and `console` hold what only that writer says. Placeholders are `str.format` fields.

Logs and error messages are English and stay with the code that raises them: they are for whoever
debugs, not part of the report.
"""

from __future__ import annotations

from typing import Any

LANGS = ("fr", "en")

TEXT = {
    "fr": {
        "title": "RAPPORT DE BENCHMARK JARVIS — base vs fine-tuning LoRA",
        "date": "Date", "base": "Modèle de base", "adapters": "Adaptateurs", "device": "Matériel", "server": "Serveur", "quant": "quantification", "no_quant": "aucune",
        "prompts": "Prompts", "config": "Config (sha256)", "scorer": "notation", "incomplete": "ATTENTION : run incomplet, {n} réponses manquantes",
        "skipped": "Prompts écartés (--skip-too-long, plus longs que le contexte de {c} tokens) : {n} — {ids}",
        "not_reproducible": ("Attention : le serveur a donné une autre réponse à la même requête (température 0) pour "
                             "{v} ; deux exécutions peuvent ne pas s'accorder (voir check_setup.py)"),
        "global": "1. STATISTIQUES GLOBALES", "variant": "variante", "relevance": "pertinence",
        "kw": "mots-clés (moy.)", "kw_ratio": "mots-clés %", "tool": "outil correct", "cos_base": "cos. vs base",
        "cos_ref": "cos. vs réf.", "tokens": "tokens (moy.)", "truncated": "tronquées", "errors": "erreurs",
        "by_cat": "2. COMPARAISON PAR CATÉGORIE", "category": "catégorie", "delta": "delta", "ci": "IC {c:.0%}",
        "top_up": "3. TOP 5 AMÉLIORATIONS", "top_down": "4. TOP 5 FAIBLESSES (pertinence la plus basse)",
        "regressions": "5. RÉGRESSIONS (pertinence sous la base de plus de {tol})", "none": "aucune",
        "signif": "6. SIGNIFICATIVITÉ", "verdict": "7. VERDICT", "recs": "8. RECOMMANDATIONS",
        "sig_line": "{name} : delta de pertinence {d:+.4f}, IC {c:.0%} [{lo:+.4f}, {hi:+.4f}], {test} p = {p:.4g} → {s}",
        "sig_yes": "significatif", "sig_no": "non significatif",
        "mdd": "  Plus petit écart détectable avec n = {n} (puissance 80 %) : {m}",
        "mcnemar": "  Outil correct : {g} gagnés, {l} perdus (McNemar exact p = {p:.4g})",
        "wtl": "  Victoires / égalités / défaites : {w} / {t} / {l}",
        "levels": {"GOOD": "BON FINE-TUNING ✓ — déployer", "MODERATE": "FINE-TUNING MODÉRÉ ~ — réentraîner avec plus de données",
                   "INSUFFICIENT": "FINE-TUNING INSUFFISANT ✗ — revoir la stratégie",
                   "INCOMPLETE": "PAS DE VERDICT — run incomplet"},
        "incomplete_verdict": "{m} réponse(s) manquante(s) ou en erreur : relancer la même commande pour terminer "
                              "(les réponses en erreur sont régénérées) ; mesures ci-dessous sur les {c} prompts "
                              "complets seulement",
        "gain": "gain de pertinence {g:+.2f}{u} · mots-clés {k:+.4f}/réponse · régressions {r}",
        "checks": {"relevance_gain": "gain > {g}%", "keyword_gain": "mots-clés > {k}", "no_regression": "régressions ≤ {r}"},
        "ranking": "Classement des adaptateurs : {r} (meilleur : {b})",
        "answer": "réponse", "points": " pts", "why": "pourquoi",
        "no_adapter": "Aucun adaptateur : seul le modèle de base a été évalué.",
        "more_chars": "… {n} caractères de plus (texte complet dans benchmark_results.json)",
        "uncertain": "l'IC à {c:.0%} va de {lo} à {hi} : ajouter des prompts ou lancer avec --noisy",
        "seen_note": "{n} prompt(s) vus à l'entraînement",
        "holm": ("  {k} adaptateurs comparés à la base sur les mêmes prompts : p corrigées par Holm ; le meilleur "
                 "a été choisi sur ces mêmes données, son gain est donc optimiste"),
        "holm_p": "  p corrigée (Holm) : {p:.4g}",
        "prop": "  Outil correct : base {b:.0%} [{blo:.0%}–{bhi:.0%}] → {name} {t:.0%} [{tlo:.0%}–{thi:.0%}] (IC exact)",
        "bayes": "  Écart d'outil correct {d:+.3f}, intervalle bayésien {c:.0%} [{lo:+.3f}, {hi:+.3f}], P(mieux que la base) = {pb:.2f}",
        "robust": "9. ROBUSTESSE À LA PAROLE BRUITÉE (hors verdict)",
        "robust_head": ("{n} variantes bruitées de {s} prompts (règles de reconnaissance vocale française, distance "
                        "phonétique ≤ {d} selon {ph})"),
        "robust_cols": ("variante", "outil propre", "outil bruité", "chute", "args propre", "args bruité",
                        "pertin. propre", "pertin. bruitée"),
        "robust_cmp": ("  {name} − base sur les variantes : outil {d:+.3f} [{lo:+.3f}, {hi:+.3f}], pertinence "
                       "{rd:+.3f} [{rlo:+.3f}, {rhi:+.3f}] (IC {c:.0%} groupé par prompt source, {s} sources)"),
        "robust_drop": "  {name} perd {d:+.3f} d'outil correct sous le bruit (IC {c:.0%} [{lo:+.3f}, {hi:+.3f}])",
        "robust_worst": "  Variantes où {name} échoue alors qu'il réussit le prompt propre : {ids}",
        "overlap": "10. PROMPTS VUS À L'ENTRAÎNEMENT",
        "overlap_head": ("{n} prompts d'entraînement lus dans {files} ; vu = identique après normalisation, ou "
                         "ressemblance ≥ {f} (rapidfuzz), ou cosinus ≥ {c}"),
        "overlap_none": "  Aucun prompt du benchmark n'est vu à l'entraînement.",
        "overlap_line": "  {id} « {prompt} » ≈ « {text} » ({where}) · {by}",
        "unseen_cmp": ("  {name} sans les {n} prompts vus : delta de pertinence {d:+.4f} [{lo:+.4f}, {hi:+.4f}] "
                       "sur {m} prompts"),
    },
    "en": {
        "title": "JARVIS BENCHMARK REPORT — base vs LoRA fine-tune",
        "date": "Date", "base": "Base model", "adapters": "Adapters", "device": "Hardware", "server": "Server", "quant": "quantization", "no_quant": "none",
        "prompts": "Prompts", "config": "Config (sha256)", "scorer": "scorer", "incomplete": "WARNING: incomplete run, {n} answers missing",
        "skipped": "Prompts left out (--skip-too-long, longer than the {c}-token context): {n} — {ids}",
        "not_reproducible": ("Warning: the server gave another answer to the same request (temperature 0) for {v}; "
                             "two runs may disagree (see check_setup.py)"),
        "global": "1. GLOBAL STATISTICS", "variant": "variant", "relevance": "relevance",
        "kw": "keywords (mean)", "kw_ratio": "keywords %", "tool": "tool correct", "cos_base": "cos. vs base",
        "cos_ref": "cos. vs ref.", "tokens": "tokens (mean)", "truncated": "truncated", "errors": "errors",
        "by_cat": "2. PER-CATEGORY COMPARISON", "category": "category", "delta": "delta", "ci": "CI {c:.0%}",
        "top_up": "3. TOP 5 IMPROVEMENTS", "top_down": "4. TOP 5 WEAKNESSES (lowest relevance)",
        "regressions": "5. REGRESSIONS (relevance below base by more than {tol})", "none": "none",
        "signif": "6. SIGNIFICANCE", "verdict": "7. VERDICT", "recs": "8. RECOMMENDATIONS",
        "sig_line": "{name}: relevance delta {d:+.4f}, {c:.0%} CI [{lo:+.4f}, {hi:+.4f}], {test} p = {p:.4g} → {s}",
        "sig_yes": "significant", "sig_no": "not significant",
        "mdd": "  Smallest detectable delta at n = {n} (80% power): {m}",
        "mcnemar": "  Tool correct: {g} gained, {l} lost (exact McNemar p = {p:.4g})",
        "wtl": "  Wins / ties / losses: {w} / {t} / {l}",
        "levels": {"GOOD": "GOOD FINE-TUNE ✓ — deploy", "MODERATE": "MODERATE FINE-TUNE ~ — retrain with more data",
                   "INSUFFICIENT": "INSUFFICIENT FINE-TUNE ✗ — revisit the strategy",
                   "INCOMPLETE": "NO VERDICT — incomplete run"},
        "incomplete_verdict": "{m} answer(s) missing or failed: rerun the same command to finish (failed answers are "
                              "generated again); the figures below are on the {c} complete prompts alone",
        "gain": "relevance gain {g:+.2f}{u} · keywords {k:+.4f}/answer · regressions {r}",
        "checks": {"relevance_gain": "gain > {g}%", "keyword_gain": "keywords > {k}", "no_regression": "regressions ≤ {r}"},
        "ranking": "Adapter ranking: {r} (best: {b})",
        "answer": "answer", "points": " pts", "why": "why",
        "no_adapter": "No adapter: only the base model was evaluated.",
        "more_chars": "… {n} more characters (the whole text is in benchmark_results.json)",
        "uncertain": "the {c:.0%} CI spans {lo} to {hi}: add prompts or run with --noisy",
        "seen_note": "{n} prompt(s) seen in training",
        "holm": ("  {k} adapters compared with the base on the same prompts: Holm-adjusted p-values; the best one "
                 "was chosen on these same data, so its gain is optimistic"),
        "holm_p": "  Holm-adjusted p: {p:.4g}",
        "prop": "  Tool correct: base {b:.0%} [{blo:.0%}–{bhi:.0%}] → {name} {t:.0%} [{tlo:.0%}–{thi:.0%}] (exact CI)",
        "bayes": "  Tool-correct difference {d:+.3f}, {c:.0%} Bayesian interval [{lo:+.3f}, {hi:+.3f}], P(better than base) = {pb:.2f}",
        "robust": "9. ROBUSTNESS TO NOISY SPEECH (not in the verdict)",
        "robust_head": ("{n} noisy variants of {s} prompts (French speech-recognition error rules, phoneme distance "
                        "≤ {d} by {ph})"),
        "robust_cols": ("variant", "tool clean", "tool noisy", "drop", "args clean", "args noisy",
                        "relev. clean", "relev. noisy"),
        "robust_cmp": ("  {name} − base on the variants: tool {d:+.3f} [{lo:+.3f}, {hi:+.3f}], relevance "
                       "{rd:+.3f} [{rlo:+.3f}, {rhi:+.3f}] ({c:.0%} CI clustered by source prompt, {s} sources)"),
        "robust_drop": "  {name} loses {d:+.3f} of tool accuracy under noise ({c:.0%} CI [{lo:+.3f}, {hi:+.3f}])",
        "robust_worst": "  Variants {name} fails while it gets the clean prompt right: {ids}",
        "overlap": "10. PROMPTS SEEN IN TRAINING",
        "overlap_head": ("{n} training prompts read from {files}; seen = identical once normalised, or similarity "
                         "≥ {f} (rapidfuzz), or cosine ≥ {c}"),
        "overlap_none": "  No benchmark prompt is seen in training.",
        "overlap_line": "  {id} “{prompt}” ≈ “{text}” ({where}) · {by}",
        "unseen_cmp": ("  {name} without the {n} seen prompts: relevance delta {d:+.4f} [{lo:+.4f}, {hi:+.4f}] "
                       "on {m} prompts"),
    },
}

WHY = {
    "fr": {"no_call": "aucun appel", "call": "appel", "malformed": "mal formé", "args": "arguments", "extra": "en plus",
           "kw": "mots-clés", "corr": "correction", "unknown": "hors catalogue", "absent": "absent"},
    "en": {"no_call": "no call", "call": "call", "malformed": "malformed", "args": "arguments", "extra": "extra",
           "kw": "keywords", "corr": "correction", "unknown": "not in the catalog", "absent": "missing"},
}

HTML = {
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
        "error": "erreur", "thinking": "bloc de raisonnement retiré ({n} caractères)", "truncated": "coupée à max_new_tokens",
        "relevance": "pertinence", "ranking": "Classement", "skipped": "Prompts écartés (trop longs)",
        "recs": "Recommandations",
        "robust": "Robustesse à la parole bruitée (hors verdict)", "clean": "propre", "noisy": "bruité",
        "drop": "chute", "tool_acc": "outil correct", "args_acc": "arguments justes", "rules": "règles",
        "robust_chart": "Outil correct, prompts propres vs variantes bruitées (IC exact)",
        "robust_fail": "échecs sous le bruit seulement", "source": "source", "variants": "Variantes bruitées",
        "overlap": "Prompts vus à l'entraînement", "nearest": "plus proche exemple d'entraînement",
        "seen_by": "vu par",
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
        "error": "error", "thinking": "reasoning block stripped ({n} characters)", "truncated": "cut at max_new_tokens",
        "relevance": "relevance", "ranking": "Ranking", "skipped": "Prompts left out (too long)",
        "recs": "Recommendations",
        "robust": "Robustness to noisy speech (not in the verdict)", "clean": "clean", "noisy": "noisy",
        "drop": "drop", "tool_acc": "tool correct", "args_acc": "arguments right", "rules": "rules",
        "robust_chart": "Tool correct, clean prompts vs noisy variants (exact CI)",
        "robust_fail": "failures under noise only", "source": "source", "variants": "Noisy variants",
        "overlap": "Prompts seen in training", "nearest": "nearest training example",
        "seen_by": "seen by",
    },
}

CHARTS = {
    "fr": {"rel": "Pertinence JARVIS par catégorie", "kw": "Mots-clés trouvés par catégorie (moyenne)",
           "dist": "Distribution des scores de pertinence", "sum": "Résumé statistique", "y_rel": "pertinence (0–1)",
           "y_kw": "mots-clés par réponse", "x_dist": "pertinence", "y_dist": "nombre de réponses",
           "err": "barres : IC 95 % (base + delta apparié)", "suptitle": "Benchmark JARVIS — {base}"},
    "en": {"rel": "JARVIS relevance by category", "kw": "Keywords found by category (mean)",
           "dist": "Relevance score distribution", "sum": "Statistical summary", "y_rel": "relevance (0–1)",
           "y_kw": "keywords per answer", "x_dist": "relevance", "y_dist": "answers",
           "err": "bars: 95% CI (base + paired delta)", "suptitle": "JARVIS benchmark — {base}"},
}

CHARTS_SUMMARY = {
    "fr": {"ranking": "Classement :", "best": "meilleur :",
           "variant": "{v}: pertinence {rel:.3f} · mots-clés {kw:.2f} · outil {tool:.0%}",
           "incomplete": "  VERDICT : INCOMPLETE", "sig": "significatif", "nosig": "non significatif",
           "wtl": "  V/E/D {w}/{t}/{l} · régressions {r}", "verdict": "  VERDICT : {level}",
           "cosine": "cosinus base↔ft moyen : {c:.3f}", "uncertain": "  (IC : de {lo} à {hi})",
           "robust_title": "Robustesse à la parole bruitée — {n} variantes de {s} prompts (hors verdict)",
           "robust_tool": "Outil correct (IC exact)", "robust_args": "Arguments justes (IC exact)",
           "robust_rel": "Pertinence moyenne", "robust_clean": "prompts propres", "robust_noisy": "variantes bruitées"},
    "en": {"ranking": "Ranking:", "best": "best:",
           "variant": "{v}: relevance {rel:.3f} · keywords {kw:.2f} · tool {tool:.0%}",
           "incomplete": "  VERDICT: INCOMPLETE", "sig": "significant", "nosig": "not significant",
           "wtl": "  W/T/L {w}/{t}/{l} · regressions {r}", "verdict": "  VERDICT: {level}",
           "cosine": "mean cosine base↔ft: {c:.3f}", "uncertain": "  (CI: from {lo} to {hi})",
           "robust_title": "Robustness to noisy speech — {n} variants of {s} prompts (not in the verdict)",
           "robust_tool": "Tool correct (exact CI)", "robust_args": "Arguments right (exact CI)",
           "robust_rel": "Mean relevance", "robust_clean": "clean prompts", "robust_noisy": "noisy variants"},
}

CONSOLE = {
    "fr": {
        "columns": ("variante", "réponses", "cache", "erreurs", "tronquées", "génération (s)", "tokens/s"),
        "bound": ("Borne de décodage GPU : ≤ {b:.0f} pas/s = {bw:.0f} Go/s ÷ {w:.2f} Gio de poids lus par pas "
                  "(tokens/s ≤ lignes × pas/s) ; mesuré {m:.1f} pas/s"),
        "results": "Résultats : {path}  (total {s:.1f} s)",
        "table": "Pertinence JARVIS · base vs {name}",
        "cmp_columns": ("catégorie", "n", "base", "{name}", "delta", "IC {pct:.0f} %", "p", "outil base→ft"),
        "no_answer": ("VERDICT {name}: [bold]INCOMPLETE[/bold] · {m} réponses manquantes ou en erreur · "
                      "relancer la même commande pour terminer"),
        "measured": ("pertinence {g:+.1f}{u} · mots-clés {k:+.2f}/réponse · régressions {r} · {sig} (p={p:.3g})"),
        "sig": "significatif", "nosig": "NON significatif",
        "incomplete": ("VERDICT {name}: [bold]INCOMPLETE[/bold] · {m} réponses manquantes ou en erreur · relancer "
                       "la même commande pour terminer · mesuré sur les {c} prompts complets seulement : {measured}"),
        "verdict": "VERDICT {name}: [bold]{level}[/bold] · {measured}",
        "ranking": "Classement: {r} · meilleur: {b}",
        "first_error": " · première erreur : {e}",
        "robust": "Robustesse (hors verdict, {n} variantes bruitées) : outil correct propre → bruité : {rows}",
        "robust_row": "{v} {c:.0%} → {n:.0%}",
        "robust_none": "aucune variante notée (réponses manquantes ou en erreur) : relancer la même commande",
        "seen": "Données d'entraînement : {n} prompt(s) du benchmark vus ({ids}) ; comparaison sans eux dans le rapport",
        "unseen": "Données d'entraînement : aucun prompt du benchmark vu ({t} prompts d'entraînement lus)",
    },
    "en": {
        "columns": ("variant", "answers", "cache", "errors", "truncated", "generation (s)", "tokens/s"),
        "bound": ("GPU decode bound: ≤ {b:.0f} steps/s = {bw:.0f} GB/s ÷ {w:.2f} GiB of weights read per step "
                  "(tokens/s ≤ rows × steps/s); measured {m:.1f} steps/s"),
        "results": "Results: {path}  (total {s:.1f}s)",
        "table": "JARVIS relevance · base vs {name}",
        "cmp_columns": ("category", "n", "base", "{name}", "delta", "{pct:.0f}% CI", "p", "tool base→ft"),
        "no_answer": ("VERDICT {name}: [bold]INCOMPLETE[/bold] · {m} answers missing or failed · rerun the same "
                      "command to finish"),
        "measured": ("relevance {g:+.1f}{u} · keywords {k:+.2f}/answer · regressions {r} · {sig} (p={p:.3g})"),
        "sig": "significant", "nosig": "NOT significant",
        "incomplete": ("VERDICT {name}: [bold]INCOMPLETE[/bold] · {m} answers missing or failed · rerun the same "
                       "command to finish · measured on the {c} complete prompts alone: {measured}"),
        "verdict": "VERDICT {name}: [bold]{level}[/bold] · {measured}",
        "ranking": "Ranking: {r} · best: {b}",
        "first_error": " · first error: {e}",
        "robust": "Robustness (not in the verdict, {n} noisy variants): tool correct clean → noisy: {rows}",
        "robust_row": "{v} {c:.0%} → {n:.0%}",
        "robust_none": "no variant scored (answers missing or failed): rerun the same command",
        "seen": "Training data: {n} benchmark prompt(s) seen ({ids}); the comparison without them is in the report",
        "unseen": "Training data: no benchmark prompt seen ({t} training prompts read)",
    },
}

T: dict[str, dict[str, Any]] = {
    lang: {**TEXT[lang], "reasons": WHY[lang], "html": HTML[lang], "charts": {**CHARTS[lang], **CHARTS_SUMMARY[lang]},
           "console": CONSOLE[lang]}
    for lang in LANGS
}
