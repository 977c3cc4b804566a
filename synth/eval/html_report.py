"""One self-contained HTML file for an evaluation report (docs/evaluation.md).

Why: a table of numbers does not show *where* a generator goes wrong; a histogram
per leaf, the association-difference heatmap, the p-value histogram against the
uniform and a map of the coordinates do. Plots are inline SVG drawn by matplotlib
(Agg backend), styles are inline: the file opens offline, from an e-mail or a CI
artifact, with no scripts and no network.
"""
from __future__ import annotations

import html
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from synth.eval.binning import fit_binning
from synth.eval.features import NUMBER, flatten
from synth.eval.geo import _pluck
from synth.schema.tree import MessageNode

MAX_LEAF_PLOTS = 40
REAL, GEN = "#4c72b0", "#dd8452"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1240px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;font-size:13px;margin-bottom:14px}
table{border-collapse:collapse;font-size:13px} td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}
th{background:#f5f5f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:8px} .cell{width:300px} .cell svg{width:300px;height:auto}
.wide svg{max-width:100%;height:auto} .note{color:#666;font-size:12px}
"""


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return html.escape(str(x))


SUMMARY_ROWS = [
    ("detection AUC (0.5 = indistinguishable)", "detection_auc", "detection_auc_floor"),
    ("mean TV distance, categories/strings/counts (0 = same)", "mean_tv", None),
    ("worst TV distance", "max_tv", None),
    ("mean KS statistic, numbers (0 = same)", "mean_ks", None),
    ("association |ΔV|, mean over pairs (0 = same)", "association_mean_abs_diff", None),
    ("copies of training rows", "copies", "copies_floor"),
    ("DCR share closer to train (0.5 ideal)", "dcr_share", "dcr_share_floor"),
    ("DCR share minus its floor, paired over evaluation seeds (0 ideal)", "dcr_excess", None),
    ("p-value mean (ideal 0.5)", "p_mean", "p_mean_real"),
    ("P(p < 0.05)", "p_below_0_05", "p_below_0_05_real"),
    ("KS of p-values vs real rows (0 = calibrated)", "p_ks_vs_real", None),
]


def summary_table(r: Mapping[str, Any]) -> str:
    s = r["summary"]
    rows = ["<tr><th>figure</th><th>generated</th><th>real rows (floor)</th></tr>"]
    for label, key, floor in SUMMARY_ROWS:
        if s.get(key) is None and (floor is None or s.get(floor) is None):
            continue
        extra = ""
        if key == "max_tv" and s.get("worst_tv_column"):
            extra = f" <span class='note'>({html.escape(s['worst_tv_column'])})</span>"
        rows.append(f"<tr><td>{html.escape(label)}{extra}</td><td class='num'>{_fmt(s.get(key))}</td>"
                    f"<td class='num'>{_fmt(s.get(floor)) if floor else ''}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _leaf_plot(name: str, kind: str, real: np.ndarray, gen: np.ndarray, col) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.4, 2.2), dpi=72)
    if kind == NUMBER:
        r, g = real[np.isfinite(real)], gen[np.isfinite(gen)]
        both = np.concatenate([r, g])
        if len(both):
            lo, hi = np.quantile(both, [0.005, 0.995])
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 31)
            ax.hist(r, bins=bins, density=True, alpha=0.55, color=REAL, label="real")
            ax.hist(g, bins=bins, density=True, alpha=0.55, color=GEN, label="generated")
    elif kind == "string" and _top_share(col, 10) < 0.5:  # mostly unique strings: compare lengths
        r = np.array([len(v) for v in real.tolist() if v is not None], dtype=float)
        g = np.array([len(v) for v in gen.tolist() if v is not None], dtype=float)
        hi = max(r.max() if len(r) else 1, g.max() if len(g) else 1)
        bins = np.arange(0, min(hi, 80) + 2) - 0.5
        ax.hist(r, bins=bins, density=True, alpha=0.55, color=REAL, label="real")
        ax.hist(g, bins=bins, density=True, alpha=0.55, color=GEN, label="generated")
        kind = "string length"
    else:
        b = fit_binning(col, max_bins=12)
        labels = b.labels()
        rc = np.bincount(b.codes(real), minlength=b.n_codes) / max(1, len(real))
        gc = np.bincount(b.codes(gen), minlength=b.n_codes) / max(1, len(gen))
        used = np.flatnonzero((rc + gc) > 0)
        x = np.arange(len(used))
        ax.bar(x - 0.2, rc[used], 0.4, color=REAL, label="real")
        ax.bar(x + 0.2, gc[used], 0.4, color=GEN, label="generated")
        ax.set_xticks(x, [str(labels[i])[:14] for i in used], rotation=60, ha="right", fontsize=6)
    ax.set_title(f"{name} ({kind})", fontsize=8)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6)
    return _svg(fig)


def _top_share(col, k: int) -> float:
    b = fit_binning(col, max_bins=k + 2)
    codes = b.codes(col.values)
    return float(np.mean(codes < len(b.levels))) if len(codes) else 1.0


def _heatmap(a: Mapping[str, Any]) -> str:
    import matplotlib.pyplot as plt

    cols = a["columns"]
    diff = np.abs(np.asarray(a["real"]) - np.asarray(a["generated"]))
    size = min(11.0, 2.5 + 0.28 * len(cols))
    fig, ax = plt.subplots(figsize=(size, size * 0.85), dpi=72)
    im = ax.imshow(diff, vmin=0, vmax=1, cmap="Reds")
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=7)
    ax.set_yticks(range(len(cols)), cols, fontsize=7)
    ax.set_title("|Cramér's V (real) − Cramér's V (generated)|", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.7)
    return _svg(fig)


def _pvalue_hist(g: Mapping[str, Any]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 2.8), dpi=72)
    edges = np.linspace(0, 1, len(g["generated"]["histogram"]) + 1)
    for key, color, label in (("real", REAL, "real held-out rows"), ("generated", GEN, "generated")):
        h = np.asarray(g[key]["histogram"], dtype=float)
        if h.sum():
            ax.stairs(h / h.sum() * len(h), edges, color=color, label=label, linewidth=1.6)
    ax.axhline(1.0, color="#555", linestyle="--", linewidth=1, label="uniform (ideal)")
    ax.set_xlabel("p-value")
    ax.set_ylabel("density")
    ax.set_title(f"p-value of ({g['category']}, {', '.join(g['numeric'])})", fontsize=9)
    ax.legend(fontsize=7)
    return _svg(fig)


def _scatter(real: Sequence[Mapping[str, Any]], generated: Sequence[Mapping[str, Any]], numeric: list[str]) -> str:
    import matplotlib.pyplot as plt

    def xy(records):
        pts = np.array([[_num(_pluck(r, numeric[1])), _num(_pluck(r, numeric[0]))] for r in records[:4000]],
                       dtype=float).reshape(-1, 2)
        return pts[np.isfinite(pts).all(axis=1)]

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), dpi=72, sharex=True, sharey=True)
    for ax, pts, color, title in ((axes[0], xy(real), REAL, "real"), (axes[1], xy(generated), GEN, "generated")):
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5, color=color, linewidths=0)
        ax.set_title(f"{title} ({len(pts)} points)", fontsize=9)
        ax.set_xlabel(numeric[1], fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel(numeric[0], fontsize=8)
    return _svg(fig)


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _details(r: Mapping[str, Any]) -> str:
    parts = []
    rows = ["<tr><th>leaf</th><th>kind</th><th>metric</th><th>value</th><th>length TV</th></tr>"]
    for e in r["marginals"]:
        rows.append(f"<tr><td>{html.escape(e['column'])}</td><td>{e['kind']}</td><td>{e.get('metric', '')}</td>"
                    f"<td class='num'>{_fmt(e.get('value'))}</td><td class='num'>{_fmt(e.get('length_tv'))}</td></tr>")
    parts.append("<h2>Marginals per leaf</h2><table>" + "".join(rows) + "</table>")
    worst = r["association"].get("worst") or []
    if worst:
        rows = ["<tr><th>pair</th><th>V real</th><th>V generated</th></tr>"]
        rows += [f"<tr><td>{html.escape(w['a'])} × {html.escape(w['b'])}</td><td class='num'>{_fmt(w['real'])}"
                 f"</td><td class='num'>{_fmt(w['generated'])}</td></tr>" for w in worst]
        parts.append("<h2>Worst associations</h2><table>" + "".join(rows) + "</table>")
    pairs = r.get("pairs") or {}
    if "pairs" in pairs:
        rows = ["<tr><th>values found in training</th><th>generated</th><th>real rows</th></tr>"]
        rows += [f"<tr><td>({html.escape(p['a'])}, {html.escape(p['b'])})</td><td class='num'>{_fmt(p['generated'])}"
                 f"</td><td class='num'>{_fmt(p['real'])}</td></tr>" for p in pairs["pairs"]]
        rows += [f"<tr><td>{html.escape(p['column'])}</td><td class='num'>{_fmt(p['generated'])}</td>"
                 f"<td class='num'>{_fmt(p['real'])}</td></tr>" for p in pairs["singles"]]
        parts.append("<h2>Pairs found in training</h2><table>" + "".join(rows) + "</table>")
    return "".join(parts)


def render_html(report: Mapping[str, Any], tree: MessageNode, real: Sequence[Mapping[str, Any]],
                generated: Sequence[Mapping[str, Any]], title: str = "evaluation report",
                extra_sections: str = "") -> str:
    """The report of `compare_records` (plus optional extra HTML) as one self-contained page."""
    import matplotlib

    matplotlib.use("Agg")
    comp = report
    rt, gt = flatten(tree, real), flatten(tree, generated)
    rows = comp["rows"]
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<div class='sub'>{rows['generated']} generated rows vs {rows['real']} held-out real rows"
            + (f", {rows['train']} training rows" if rows.get("train") else ", no training rows (--train)")
            + f"; seed {comp['seed']}</div>",
            "<h2>Summary</h2>", summary_table(comp)]
    geo = comp.get("geo")
    if geo:
        body.append("<h2>Geography</h2><div class='grid'>")
        body.append(f"<div class='wide'>{_pvalue_hist(geo)}</div>")
        body.append(f"<div class='wide'>{_scatter(real, generated, geo['numeric'])}</div></div>")
    body.append("<h2>Real vs generated, per leaf</h2><div class='grid'>")
    shown = 0
    for cr, cg in zip(rt.columns, gt.columns):
        if shown >= MAX_LEAF_PLOTS:
            break
        b = fit_binning(cr)
        if len(np.unique(np.r_[b.codes(cr.values), b.codes(cg.values)])) < 2:
            continue  # one value everywhere in both: nothing to draw (listed in the marginals table)
        body.append(f"<div class='cell'>{_leaf_plot(cr.name, cr.kind, cr.values, cg.values, cr)}</div>")
        shown += 1
    body.append("</div>")
    if len(rt.columns) > shown:
        body.append(f"<div class='note'>{len(rt.columns) - shown} more leaves not drawn.</div>")
    if len(comp["association"]["columns"]) >= 2:
        body.append(f"<h2>Association difference</h2><div class='wide'>{_heatmap(comp['association'])}</div>")
    body.append(_details(comp))
    body.append(extra_sections)
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + html.escape(title)
            + "</title><style>" + _CSS + "</style></head><body>" + "".join(body) + "</body></html>")
