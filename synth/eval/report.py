"""`synth evaluate`: the model-free comparison (compare.py) plus the model's own health figures.

Why: every figure of docs/evaluation.md for one model, as a dict and a table. The
comparison of generated records with held-out real ones is `compare_records`, the
same function the benchmark scores peer systems with; on top of it come what only a
trained model has: reconstruction detail (Levenshtein per character, paper section
3), losses of real and generated records, re-encoding chains (appendix E) and
posterior health. Samples are seeded, so a report is reproducible.

Data: `test` is held-out real data; `train` the rows the model was trained on
(copies, DCR, pairs found and the floor need it). Either may be omitted, not both.
"""
from __future__ import annotations

import re
import time
from typing import Any, Sequence

import numpy as np
import torch
from google.protobuf import json_format

from synth.errors import DataError, InvalidArgument
from synth.eval.compare import compare_records
from synth.eval.geo import Geo
from synth.eval.levenshtein import per_char_by_field
from synth.eval.memorization import copied_share
from synth.eval.posterior import active_units, kl_per_dim, mutual_information
from synth.eval.pvalue import fit_group_stats, pvalues
from synth.eval.reconstruction import mean_error, reconstruction_by_column
from synth.model import Model

RECON_ROWS = 10000  # the paper's Levenshtein sample size
LOSS_ROWS = 2048
CHAIN_ROWS = 2000
ENCODE_CHUNK = 512


def as_dicts(messages: Sequence[Any]) -> list[dict]:
    """Proto field names, defaults included (an unset proto3 0.0 is still a coordinate)."""
    return [json_format.MessageToDict(m, preserving_proto_field_name=True,
                                      always_print_fields_with_no_presence=True) for m in messages]


def string_fields(model: Model) -> list[str]:
    return [f.name for f in model.tree.fields if f.type == "string" and not f.repeated]


def encodable(model: Model, messages: list) -> tuple[list, int]:
    """The messages the model can encode, and how many were left out.

    Why: held-out rows may hold values the model never saw (Vermont's blank
    postcodes); the model-free comparison scores them as they are, but the loss,
    reconstruction and posterior figures need the model to encode them.
    """
    kept: list = []
    for start in range(0, len(messages), ENCODE_CHUNK):
        chunk = messages[start:start + ENCODE_CHUNK]
        while chunk:
            try:
                model.batch(chunk)
                break
            except DataError as e:
                bad = {int(m.group(1)) for v in e.violations if (m := re.match(r"record\[(\d+)\]", v.path))}
                if not bad:
                    raise
                chunk = [msg for i, msg in enumerate(chunk) if i not in bad]
        kept += chunk
    return kept, len(messages) - len(kept)


def evaluate(model: Model, train: Sequence[Any] | None, test: Sequence[Any] | None = None,
             n_samples: int = 10000, seed: int = 0, category: str | None = None,
             numeric: list[str] | None = None, chains: int = 9, beta: float | None = None,
             recon_rows: int = RECON_ROWS, geo: Geo | None = None,
             records_out: dict[str, list[dict]] | None = None) -> dict[str, Any]:
    """All figures for `model`: `train` are its training rows, `test` held-out rows (either may be None).

    geo: (group field, numeric fields) of the p-value; `category`/`numeric` are the
    older spelling of the same. Default: postcode vs (lat, lon) when the schema has them.
    records_out: when given, receives the compared records ("real", "generated"), for the HTML report.
    """
    t0 = time.time()
    if not train and not test:
        raise InvalidArgument("evaluate needs held-out data (--data), training data (--train) or both")
    if geo is None and category:
        geo = (category, list(numeric or ["lat", "lon"]))
    elif numeric and not category:
        raise InvalidArgument("--numeric needs --category (the p-value's categorical field)")
    train_msgs = model.messages(train) if train else None
    test_msgs = model.messages(test) if test else None
    real_msgs = test_msgs if test_msgs else train_msgs
    rng = np.random.default_rng(seed)
    generated = model.sample(n_samples, seed=seed)
    t_sample = time.time() - t0
    gen_dicts = as_dicts(generated)
    train_dicts = as_dicts(train_msgs) if train_msgs else None
    real_dicts = as_dicts(real_msgs)
    if records_out is not None:
        records_out.update(real=real_dicts, generated=gen_dicts)
    # With only training rows there is no held-out set: they play the real rows, no floor.
    comparison = compare_records(model.tree, real_dicts, gen_dicts, train_dicts if test_msgs else None,
                                 seed=seed, geo=geo)
    report: dict[str, Any] = {"model": model.schema.message_name, "samples": n_samples, "seed": seed,
                              "data": {"test": len(test_msgs or []), "train": len(train_msgs or [])},
                              "comparison": comparison}
    g = comparison.get("geo")
    if g:
        report["pvalue"] = {"category": g["category"], "numeric": g["numeric"], "fitted_on": g["fitted_on"],
                            **{k: v for k, v in g["generated"].items() if k != "histogram"}}
        reference = train_dicts if train_dicts else real_dicts
        report["chains"] = _chains(model, generated, reference, g["category"], g["numeric"], chains, seed)
    # reconstruction detail, on (up to) 10,000 training rows (held-out rows without --train)
    fields = string_fields(model)
    originals, report["unencodable_rows"] = _draw_encodable(model, train_msgs or real_msgs, recon_rows, rng)
    report["levenshtein_per_char"], report["reconstruction"] = _reconstruction(model, originals, fields)
    report["levenshtein_rows"] = "train" if train_msgs else "data"
    if train_msgs and test_msgs:
        # issue 8's target is on rows the model never saw: new values go through the escapes
        report["levenshtein_per_char_heldout"], report["reconstruction_heldout"] = _reconstruction(
            model, _draw_encodable(model, test_msgs, recon_rows, rng)[0], fields)
    if train_dicts is not None:
        report["memorization"] = {
            "values_in_training": {f: copied_share([g_.get(f, "") for g_ in gen_dicts],
                                                   [t.get(f, "") for t in train_dicts]) for f in fields},
            "records_in_training": comparison["privacy"].get("copies") if test_msgs else None,
        }
    else:
        report["memorization"] = {"needs": "--train (the training rows)"}
    beta = beta if beta is not None else _trained_beta(model)
    loss_rows = originals[:LOSS_ROWS]
    report["loss"] = {"beta": beta, "generated": model.loss(generated[:LOSS_ROWS], beta, sample_latent=True).total}
    if train_msgs:
        report["loss"]["train"] = model.loss(loss_rows, beta, sample_latent=True).total
    if test_msgs:
        test_ok, skipped_test = encodable(model, test_msgs[:LOSS_ROWS])
        report["loss"]["test"] = model.loss(test_ok, beta, sample_latent=True).total
        report["loss"]["test_rows_skipped"] = skipped_test
    mu, sigma = model.encode(loss_rows, refine_steps=0)  # the encoder network's posterior
    gen_t = torch.Generator().manual_seed(seed)
    report["posterior"] = {"active_units": active_units(mu), "latent_dim": model.latent_dim,
                           "mutual_information": mutual_information(mu[:1024], sigma[:1024], gen_t),
                           "kl_per_dim": kl_per_dim(mu, sigma)}
    report["wall_s"] = round(time.time() - t0, 1)
    report["sample_s"] = round(t_sample, 1)
    return report


def _trained_beta(model: Model) -> float:
    train = (model.metadata.get("run_config") or {}).get("train") or {}
    return float((train.get("beta") or {}).get("end", 1.0))


def _chains(model: Model, generated: list, train_dicts: list[dict], category: str, numeric: list[str],
            rounds: int, seed: int) -> list[dict]:
    """p-value stats after k = 0..rounds encode(mean)/decode rounds of the samples (appendix E)."""
    stats = fit_group_stats(train_dicts, category, numeric)
    out, current = [], generated[:CHAIN_ROWS]
    for k in range(rounds + 1):
        rep = pvalues(as_dicts(current), stats)
        out.append({"round": k, "mean": rep.mean, "median": rep.median, "std": rep.std})
        if k < rounds:
            mu, _ = model.encode(current, refine_steps=0)  # the paper's chains use the encoder alone
            current = model.decode(mu, seed=seed + k + 1)
    return out


def _f(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _signed(x: Any) -> str:
    return f"{x:+.3f}" if isinstance(x, float) else _f(x)


def format_comparison(c: dict[str, Any]) -> list[str]:
    """Summary lines of a compare_records result: each figure next to its ideal or floor."""
    s = c["summary"]
    needs = "needs --train"
    floor = (lambda k: _f(s.get(k))) if "needs" not in c["floor"] else (lambda k: needs)
    lines = ["summary                               generated   real rows (floor)",
             f"  detection AUC (0.5 ideal)           {_f(s['detection_auc']):>9}   {floor('detection_auc_floor')}",
             f"  mean TV, categories/strings (0)     {_f(s['mean_tv']):>9}   worst {_f(s['max_tv'])}"
             f" ({s.get('worst_tv_column') or '-'})",
             f"  mean KS, numbers (0)                {_f(s['mean_ks']):>9}   worst {_f(s['max_ks'])}"
             f" ({s.get('worst_ks_column') or '-'})",
             f"  association |dV| mean (0)           {_f(s['association_mean_abs_diff']):>9}"]
    if "needs" in c["privacy"]:
        lines.append(f"  copies, DCR share                   {needs}")
    else:
        lines += [f"  copies of training rows             {_f(s['copies']):>9}   {floor('copies_floor')}",
                  f"  DCR share closer to train (0.5)     {_f(s['dcr_share']):>9}   {floor('dcr_share_floor')}"]
        paired = c["privacy"].get("dcr_paired")
        if paired:
            lines.append(f"  DCR share minus floor (0), paired   {_signed(s.get('dcr_excess')):>9}   "
                         f"+- {_f(s.get('dcr_excess_sd'))} over {paired['seeds']} seeds "
                         f"(floor {_f(paired['floor_mean'])} +- {_f(paired['floor_sd'])})")
    if c.get("geo"):
        g = c["geo"]
        lines += [f"  p-value mean / median (0.5)         {_f(s['p_mean']):>9}   "
                  f"{_f(g['real']['mean'])} / {_f(g['real']['median'])}  (generated median {_f(s['p_median'])})",
                  f"  P(p < 0.05)                         {_f(s['p_below_0_05']):>9}   {_f(s['p_below_0_05_real'])}",
                  f"  KS of p-values vs real rows (0)     {_f(s['p_ks_vs_real']):>9}"]
    lines += ["", "marginals (worst 8)"]
    worst = sorted((e for e in c["marginals"] if e.get("value") is not None), key=lambda e: -e["value"])[:8]
    lines += [f"  {e['column']:<28} {e['kind']:<9} {e['metric']:<9} {e['value']:.3f}" for e in worst]
    a = c["association"]
    if a.get("worst"):
        lines += ["", f"association, worst pairs (Cramer's V real -> generated; {a['pairs']} pairs)"]
        lines += [f"  {w['a'] + ' x ' + w['b']:<40} {w['real']:.3f} -> {w['generated']:.3f}" for w in a["worst"]]
    d = c["detection"]
    lines += ["", f"detection: AUC {_f(d.get('auc'))} +- {_f(d.get('std'))} over {d.get('folds')} folds, "
              f"{d.get('rows_per_class')} rows per class"]
    if "pairs" in c["pairs"]:
        lines += ["", "found in training                    generated   real rows"]
        lines += [f"  ({p['a']}, {p['b']})".ljust(38) + f"{_f(p['generated']):>9}   {_f(p['real'])}"
                  for p in c["pairs"]["pairs"]]
    if "dcr" in c["privacy"]:
        dcr = c["privacy"]["dcr"]
        lines += ["", f"DCR: mean to train {_f(dcr.get('mean_dcr_train'))}, to holdout {_f(dcr.get('mean_dcr_holdout'))};"
                  f" below holdout 5th pct {_f(dcr.get('below_holdout_q05'))}; {dcr.get('reference_rows')} "
                  f"reference rows each"]
    return lines


def _draw_encodable(model: Model, msgs: Sequence[Any], rows: int, rng: np.random.Generator) -> tuple[list, int]:
    """Up to `rows` of `msgs`, drawn without replacement, less those the model cannot encode
    (and how many those were)."""
    idx = rng.choice(len(msgs), size=min(rows, len(msgs)), replace=False)
    return encodable(model, [msgs[i] for i in idx])


def _reconstruction(model: Model, originals: list, fields: list[str]) -> tuple[dict[str, float], dict[str, Any]]:
    """decode(encode(.)) against the originals: Levenshtein per character of each top-level
    string field (the paper's figure), and every leaf column's (synth/eval/reconstruction.py)."""
    a, b = as_dicts(originals), as_dicts(model.reconstruct(originals))
    return per_char_by_field(a, b, fields), reconstruction_by_column(model.tree, a, b)


def format_table(r: dict[str, Any]) -> str:
    lines = [f"model {r['model']}  ({r['samples']} samples, seed {r['seed']}, {r['wall_s']} s; "
             f"{r['data']['test']} held-out rows, {r['data']['train']} training rows)", ""]
    lines += format_comparison(r["comparison"])
    lines.append("")
    if "chains" in r:
        lines.append("re-encoding chains (round: mean / median p)")
        lines.append("  " + "  ".join(f"{c['round']}: {c['mean']:.3f}/{c['median']:.3f}" for c in r["chains"]))
        lines.append("")
    held = r.get("levenshtein_per_char_heldout")
    lines.append(f"Levenshtein per character (reconstruction of {r['levenshtein_rows']} rows"
                 + ("; of held-out rows)" if held else ")"))
    lines += [f"  {k:<12} {v:.3f}" + (f"   {held[k]:.3f}" if held else "") for k, v in r["levenshtein_per_char"].items()]
    lines += _format_reconstruction(r.get("reconstruction") or {}, r.get("reconstruction_heldout"))
    m = r["memorization"]
    if "values_in_training" in m:
        lines += ["", "share of generated values seen in training"]
        lines += [f"  {k:<12} {v:.3f}" for k, v in m["values_in_training"].items()]
    l = r["loss"]
    lines += ["", f"loss (beta {l['beta']:.3f})  " + "  ".join(f"{k} {l[k]:.3f}" for k in ("train", "test", "generated")
                                                        if k in l)]
    p = r["posterior"]
    lines += [f"posterior  active units {p['active_units']}/{p['latent_dim']}  "
              f"MI {p['mutual_information']:.2f} nats  KL/dim {p['kl_per_dim']:.3f}"]
    return "\n".join(lines)


def _format_reconstruction(rows: dict[str, Any], held: dict[str, Any] | None) -> list[str]:
    """Per leaf column: share exact and mean error (0-1), on the reconstructed rows (and held-out ones)."""
    if not rows:
        return []
    head = "exact / error" + ("   held-out" if held else "")
    lines = ["", f"reconstruction by leaf column ({mean_error(rows):.3f} mean error"
             + (f"; held-out {mean_error(held):.3f}" if held else "") + ")", f"  {'':<28} {head}"]
    for name, c in rows.items():
        cell = f"{c['exact']:.3f} / {c['error']:.3f}"
        h = (held or {}).get(name)
        lines.append(f"  {name[:28]:<28} {cell}" + (f"   {h['exact']:.3f} / {h['error']:.3f}" if h else ""))
    return lines


def html(r: dict[str, Any], model: Model, real: Sequence[dict], generated: Sequence[dict]) -> str:
    """The HTML report (html_report.py) with the model-specific figures appended as a table."""
    import html as _html

    from synth.eval.html_report import render_html

    text = "\n".join(format_table(r).splitlines()[1:])
    extra = f"<h2>Model figures</h2><pre style='font-size:12px'>{_html.escape(text)}</pre>"
    return render_html(r["comparison"], model.tree, real, generated,
                       title=f"synth evaluate: {r['model']}", extra_sections=extra)
