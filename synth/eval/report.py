"""`synth evaluate`: every metric of DESIGN.md section 5 for one model, as a dict and a table.

Samples are seeded, so a report is reproducible. The p-value section needs a
categorical field and a group of numeric fields; it defaults to the address
benchmark's (postcode vs lat, lon) when the schema has those fields.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch
from google.protobuf import json_format

from synth.eval.levenshtein import per_char_by_field
from synth.eval.memorization import copied_share, record_copy_share
from synth.eval.posterior import active_units, kl_per_dim, mutual_information
from synth.eval.pvalue import ADDRESS_CATEGORY, ADDRESS_NUMERIC, fit_group_stats, pvalues
from synth.errors import InvalidArgument
from synth.model import Model

RECON_ROWS = 10000  # the paper's Levenshtein sample size
LOSS_ROWS = 2048


def as_dicts(messages: Sequence[Any]) -> list[dict]:
    """Proto field names, defaults included (an unset proto3 0.0 is still a coordinate)."""
    return [json_format.MessageToDict(m, preserving_proto_field_name=True,
                                      always_print_fields_with_no_presence=True) for m in messages]


def string_fields(model: Model) -> list[str]:
    return [f.name for f in model.tree.fields if f.type == "string" and not f.repeated]


def _pvalue_section(train: list[dict], generated: list[dict], category: str, numeric: list[str]) -> dict:
    stats = fit_group_stats(train, category, numeric)
    return pvalues(generated, stats).to_dict()


def evaluate(model: Model, data: Sequence[Any], test: Sequence[Any] | None = None, n_samples: int = 10000,
             seed: int = 0, category: str | None = None, numeric: list[str] | None = None,
             chains: int = 9, beta: float | None = None, recon_rows: int = RECON_ROWS) -> dict[str, Any]:
    t0 = time.time()
    train_msgs = model.messages(data)
    names = {f.name for f in model.tree.fields}
    if category is None and ADDRESS_CATEGORY in names and set(ADDRESS_NUMERIC) <= names:
        category, numeric = ADDRESS_CATEGORY, list(ADDRESS_NUMERIC)
    rng = np.random.default_rng(seed)
    generated = model.sample(n_samples, seed=seed)
    gen_dicts, train_dicts = as_dicts(generated), as_dicts(train_msgs)
    report: dict[str, Any] = {"model": model.schema.message_name, "samples": n_samples, "seed": seed}
    if category:
        report["pvalue"] = {"category": category, "numeric": numeric,
                            **_pvalue_section(train_dicts, gen_dicts, category, numeric)}
        report["chains"] = _chains(model, generated, train_dicts, category, numeric, chains, seed)
    elif numeric:
        raise InvalidArgument("--numeric needs --category (the p-value's categorical field)")
    # reconstruction detail, on (up to) 10,000 training rows
    idx = rng.choice(len(train_msgs), size=min(recon_rows, len(train_msgs)), replace=False)
    originals = [train_msgs[i] for i in idx]
    recon = model.reconstruct(originals)
    fields = string_fields(model)
    report["levenshtein_per_char"] = per_char_by_field(as_dicts(originals), as_dicts(recon), fields)
    # memorization
    report["memorization"] = {
        "values_in_training": {f: copied_share([g.get(f, "") for g in gen_dicts],
                                               [t.get(f, "") for t in train_dicts]) for f in fields},
        "records_in_training": record_copy_share(gen_dicts, train_dicts),
    }
    # losses
    beta = beta if beta is not None else _trained_beta(model)
    loss_rows = [train_msgs[i] for i in idx[:LOSS_ROWS]]
    report["loss"] = {"beta": beta, "train": model.loss(loss_rows, beta, sample_latent=True).total,
                      "generated": model.loss(generated[:LOSS_ROWS], beta, sample_latent=True).total}
    if test:
        report["loss"]["test"] = model.loss(list(test)[:LOSS_ROWS], beta, sample_latent=True).total
    # posterior health
    mu, sigma = model.encode(loss_rows)
    g = torch.Generator().manual_seed(seed)
    report["posterior"] = {"active_units": active_units(mu), "latent_dim": model.latent_dim,
                           "mutual_information": mutual_information(mu[:1024], sigma[:1024], g),
                           "kl_per_dim": kl_per_dim(mu, sigma)}
    report["wall_s"] = round(time.time() - t0, 1)
    return report


def _trained_beta(model: Model) -> float:
    train = (model.metadata.get("run_config") or {}).get("train") or {}
    return float((train.get("beta") or {}).get("end", 1.0))


def _chains(model: Model, generated: list, train_dicts: list[dict], category: str, numeric: list[str],
            rounds: int, seed: int) -> list[dict]:
    """p-value stats after k = 0..rounds encode(mean)/decode rounds of the samples (appendix E)."""
    stats = fit_group_stats(train_dicts, category, numeric)
    out, current = [], generated[:2000]
    for k in range(rounds + 1):
        rep = pvalues(as_dicts(current), stats)
        out.append({"round": k, "mean": rep.mean, "median": rep.median, "std": rep.std})
        if k < rounds:
            mu, _ = model.encode(current)
            current = model.decode(mu, seed=seed + k + 1)
    return out


def format_table(r: dict[str, Any]) -> str:
    lines = [f"model {r['model']}  ({r['samples']} samples, seed {r['seed']}, {r['wall_s']} s)", ""]
    if "pvalue" in r:
        p = r["pvalue"]
        lines += [f"p-value ({p['category']} vs {', '.join(p['numeric'])})",
                  f"  mean {p['mean']:.3f}  median {p['median']:.3f}  std {p['std']:.3f}"
                  f"  malformed {p['malformed']}  unknown {p['unknown']}", ""]
        lines.append("re-encoding chains (round: mean / median)")
        lines.append("  " + "  ".join(f"{c['round']}: {c['mean']:.3f}/{c['median']:.3f}" for c in r["chains"]))
        lines.append("")
    lines.append("Levenshtein per character (reconstruction)")
    lines += [f"  {k:<12} {v:.3f}" for k, v in r["levenshtein_per_char"].items()]
    m = r["memorization"]
    lines += ["", "memorization (share of generated values seen in training)"]
    lines += [f"  {k:<12} {v:.3f}" for k, v in m["values_in_training"].items()]
    lines.append(f"  whole records {m['records_in_training']:.3f}")
    l = r["loss"]
    lines += ["", f"loss (beta {l['beta']:.3f})  train {l['train']:.3f}  "
              + (f"test {l['test']:.3f}  " if "test" in l else "") + f"generated {l['generated']:.3f}"]
    p = r["posterior"]
    lines += [f"posterior  active units {p['active_units']}/{p['latent_dim']}  "
              f"MI {p['mutual_information']:.2f} nats  KL/dim {p['kl_per_dim']:.3f}"]
    return "\n".join(lines)
