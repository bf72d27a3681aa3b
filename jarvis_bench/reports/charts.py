"""benchmark_charts.png: the seed's 4 panels (relevance and keywords by category, score distribution, summary)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..fsutil import atomic_path
from .messages import T


def _summary_text(data: dict[str, Any], lang: str) -> str:
    st = data["statistics"]
    L = T[lang]["charts"]
    lines = []
    if len(st.get("ranking") or []) > 1:
        lines += [f"{L['ranking']} {' > '.join(st['ranking'])}", f"  ({L['best']} {st['best_adapter']})", ""]
    for v, block in st["variants"].items():
        o = block["overall"]
        if o["relevance"] is None:  # every answer of this variant failed
            lines.append(f"{v}: -")
            continue
        lines.append(L["variant"].format(v=v, rel=o["relevance"], kw=o["keyword_hits"], tool=o["tool_correct"]))
    for name, cmp in st["comparisons"].items():
        if "verdict" not in cmp:
            continue
        if "relevance" not in cmp["overall"]:
            lines += ["", f"{name} vs base", L["incomplete"]]
            continue
        r, v = cmp["overall"]["relevance"], cmp["verdict"]
        unit = "%" if v["relevance_gain_unit"] == "percent" else " pts"
        sig = L["sig"] if r["significant"] else L["nosig"]
        lines += ["", f"{name} vs base", f"  Δ {r['delta']:+.3f}  IC95 [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]",
                  f"  gain {v['relevance_gain']:+.1f}{unit} · p = {r['p_value']:.3g} ({sig})",
                  L["wtl"].format(w=r["wins"], t=r["ties"], l=r["losses"], r=v["regressions"]),
                  L["verdict"].format(level=v["level"])]
        if v.get("uncertain_between"):
            lines.append(L["uncertain"].format(lo=v["uncertain_between"][0], hi=v["uncertain_between"][-1]))
    if st.get("avg_cosine_similarity") is not None:
        lines += ["", L["cosine"].format(c=st["avg_cosine_similarity"])]
    return "\n".join(lines)


def write(data: dict[str, Any], dest: Path, lang: str = "fr") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    L = T[lang]["charts"]
    st = data["statistics"]
    variants = data["metadata"]["variants"]
    cats = list(data["by_category"])
    fig, axes = plt.subplots(2, 2, figsize=(15, 10.5))
    fig.suptitle(L["suptitle"].format(base=data["metadata"]["base_model"]), fontsize=15, fontweight="bold")
    colors = plt.get_cmap("tab10").colors
    width = 0.8 / len(variants)
    x = np.arange(len(cats))

    ax = axes[0, 0]
    for i, v in enumerate(variants):
        means = [data["by_category"][c][v]["relevance"] or 0 for c in cats]
        err = None
        if v != "base":
            cmp = st["comparisons"][v]["by_category"]
            lo = [means[j] - (data["by_category"][c]["base"]["relevance"] + cmp[c]["relevance"]["ci_low"])
                  if c in cmp else 0 for j, c in enumerate(cats)]
            hi = [(data["by_category"][c]["base"]["relevance"] + cmp[c]["relevance"]["ci_high"]) - means[j]
                  if c in cmp else 0 for j, c in enumerate(cats)]
            hi = [min(h, 1 - m) for h, m in zip(hi, means)]  # relevance never exceeds 1
            err = np.clip(np.array([lo, hi]), 0, None)
        bars = ax.bar(x + (i - (len(variants) - 1) / 2) * width, means, width, yerr=err, capsize=4,
                      label=v, color=colors[i % 10])
        ax.bar_label(bars, fmt="%.2f", padding=2, fontsize=8)
    ax.set_title(L["rel"], fontweight="bold")
    ax.set_ylabel(L["y_rel"])
    ax.set_ylim(0, 1.3)  # room above the CI bars for the legend
    ax.set_xticks(x, cats)
    ax.legend(loc="upper left", fontsize=9, ncol=len(variants))
    if len(variants) > 1:
        ax.text(0.99, 0.98, L["err"], transform=ax.transAxes, ha="right", va="top", fontsize=8, color="0.35")

    ax = axes[0, 1]
    for i, v in enumerate(variants):
        means = [data["by_category"][c][v]["keyword_hits"] or 0 for c in cats]
        bars = ax.bar(x + (i - (len(variants) - 1) / 2) * width, means, width, label=v, color=colors[i % 10])
        ax.bar_label(bars, fmt="%.2f", padding=2, fontsize=8)
    ax.set_title(L["kw"], fontweight="bold")
    ax.set_ylabel(L["y_kw"])
    ax.set_xticks(x, cats)
    ax.set_ylim(0, max(1.0, ax.get_ylim()[1] * 1.3))
    ax.legend(loc="upper left", fontsize=9, ncol=len(variants))

    ax = axes[1, 0]
    bins = np.linspace(0, 1, 11)
    for i, v in enumerate(variants):
        vals = [r["variants"][v]["metrics"]["relevance"] for r in data["results"]
                if v in r["variants"] and r["variants"][v].get("metrics")]
        ax.hist(vals, bins=bins, alpha=0.55, label=f"{v} (n={len(vals)})", color=colors[i % 10], edgecolor="white")
    ax.set_title(L["dist"], fontweight="bold")
    ax.set_xlabel(L["x_dist"])
    ax.set_ylabel(L["y_dist"])
    ax.legend(fontsize=9)

    ax = axes[1, 1]
    ax.axis("off")
    ax.set_title(L["sum"], fontweight="bold")
    ax.text(0.02, 0.95, _summary_text(data, lang), transform=ax.transAxes, va="top", ha="left", fontsize=10,
            family="DejaVu Sans Mono", bbox={"boxstyle": "round", "facecolor": "#f4f4f4", "edgecolor": "#999"})
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    with atomic_path(dest, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return dest


def write_robustness(data: dict[str, Any], dest: Path, lang: str = "fr") -> Path | None:
    """benchmark_robustness.png, when the run had noisy-speech variants: per variant, tool accuracy and
    argument accuracy on the clean source prompts and on their noisy variants (exact CIs), and relevance."""
    rob = data.get("robustness")
    if not rob:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    L = T[lang]["charts"]
    names = list(rob["per_variant"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    fig.suptitle(L["robust_title"].format(n=rob["noisy_prompts"], s=rob["sources"]), fontsize=13, fontweight="bold")
    x = np.arange(len(names))
    for ax, key, title in zip(axes, ("tool_accuracy", "args_accuracy", "relevance"),
                              (L["robust_tool"], L["robust_args"], L["robust_rel"])):
        for k, kind in enumerate(("clean", "noisy")):
            vals = [rob["per_variant"][v][kind][key] for v in names]
            heights = [0 if y is None else y for y in vals]
            err = None
            if key != "relevance":
                cis = [rob["per_variant"][v][kind].get(f"{key}_ci") or [h, h] for v, h in zip(names, heights)]
                err = np.array([[h - c[0] for h, c in zip(heights, cis)], [c[1] - h for h, c in zip(heights, cis)]])
            ax.bar(x + (k - 0.5) * 0.38, heights, 0.36, yerr=err, capsize=4, label=L[f"robust_{kind}"],
                   color=("#2563eb", "#d97706")[k])
            for xi, y in zip(x, vals):
                ax.text(xi + (k - 0.5) * 0.38, (y or 0) + 0.02, "-" if y is None else f"{y:.2f}", ha="center", fontsize=9)
        ax.set_xticks(x, names)
        ax.set_ylim(0, 1.15)
        ax.set_title(title)
        ax.legend(loc="upper left", fontsize=9)
    fig.tight_layout()
    with atomic_path(dest, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return dest
