"""Generation and encoding settings chosen on the validation split, after training
(docs/training.md).

Four choices, all made on the validation records only (never on test data, and with
an evaluation seed that is not the benchmark's):

1. The latent prior's size K among `prior_candidates` and the configured
   `latent_prior_components` (0 = the paper's one Gaussian
   N(m, S) of the training latents; K > 0 = a K-component mixture fitted to the
   training posteriors, synth/latent_prior.py), capped by the number of training
   posteriors. Each candidate is fitted on the training posteriors and scored by the
   mean log-likelihood (nats per record) of draws from the validation posteriors under
   it (the prior's term of the validation ELBO, E_q(z|x) log p(z)); the highest wins.
   Scoring the posterior means alone ignores how wide new rows' posteriors are, and
   picked the single Gaussian on Vermont where the mixture generates far better.
   Held-out likelihood penalises a prior that only memorises the training latents, as a
   larger K would otherwise always win.

2. The leaf temperatures: each categorical and number head's temperature fitted to the
   validation records' likelihood, widening only (synth/train/calibrate.py).

2b. The closed label pairs: ordered pairs of categorical leaves of one message whose
   validation combinations occur in training (synth/closed_pairs.py); sampling then keeps
   the second label to the classes seen with the first. Needs the training records.

3. The temperatures (`sample_temperature` x `latent_temperature`, a small grid): for
   each candidate `samples` records are generated (seed `tune.seed`) and compared with
   the validation records by `synth.eval.compare.compare_records`. Objective,
   lexicographic: the detection AUC (lower is better); candidates within the noise of
   their gap to the best (the two AUCs' fold stds combined, at least 0.01) are tied, and
   ties go to the better p-value calibration |P(p < 0.05) - 0.05| (when the schema has geo fields), then to
   the lower mean TV distance. Detection comes first because it is the one figure
   that sees joint structure of all fields; the others only break ties it cannot.

4. How `encode` refines latents: off, or with each guard of `encoding_guards`, by the
   validation records' reconstruction error (synth/train/tune_encoding.py).

All need `min_validation_records` validation records (fewer give a noisy choice: the
configured settings are kept and the record says so). The model's configured
settings are always a candidate (the first, for the temperatures), so when the wall-time
cap cuts the grid short they are kept unless something scored better. The choices and
every candidate's scores are returned for the manifest (`metadata.tuning`), and the
chosen values are written into the model config, so `synth sample` uses them.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import time
from typing import Any, Sequence

import torch

from synth.closed_pairs import find_closed_pairs
from synth.eval.posterior import posterior_draws
from synth.latent_prior import Mixture, fit_mixture
from synth.train.calibrate import Regime, calibrate_leaves
from synth.train.candidates import score_in_turn
from synth.train.config import TuneConfig
from synth.train.tune_encoding import choose_encoding

MAX_POSTERIORS = 20000  # training posteriors the mixtures are fitted on (as fit_latent_prior)
POSTERIOR_DRAWS = 4  # latent draws per validation posterior in the prior's score
DETECTION_TIE = 0.01  # detection AUCs closer than this (or their gap's noise) are a tie


def tune_generation(model: Any, train: Sequence[Any] | None, validation: Sequence[Any], cfg: TuneConfig,
                    budget_s: float, regime: Regime = Regime(0.0, 1.0)) -> dict[str, Any]:
    """Choose the prior size, leaf temperatures, temperatures and encoding on `validation`; update
    `model`; return the record.

    `train`: the training records (for the prior's posteriors; None keeps the current prior).
    `budget_s`: wall-time cap for the whole tuning (0 = none).
    `regime`: the scheduled-sampling regime the run ended in (calibrate.end_regime).
    """
    t0 = time.time()
    deadline = t0 + budget_s if budget_s > 0 else math.inf
    val = model.messages(validation)
    out: dict[str, Any] = {"seed": cfg.seed, "validation_records": len(val), "budget_s": round(budget_s, 1)}
    if not val:
        out["skipped"] = "no validation records"
        return out
    too_few = (f"{len(val)} validation records, fewer than tune.min_validation_records "
               f"({cfg.min_validation_records}): the configured setting is kept")
    if not cfg.prior or not train or len(val) < cfg.min_validation_records:
        out["prior"] = {"skipped": "tune.prior is off" if not cfg.prior else
                        "no training records given" if not train else too_few,
                        "kept": model.config.latent_prior_components}
    else:
        candidates = tuple(cfg.prior_candidates) + (model.config.latent_prior_components,)
        out["prior"] = choose_prior(model, model.messages(train), val, candidates, cfg.seed)
    # The other parts: each has its switch, and needs enough validation records
    parts = (("leaf_temperatures", "calibrate", lambda: calibrate_leaves(model, val, regime, cfg.seed)),
             ("closed_pairs", "closed_pairs", lambda: choose_closed_pairs(model, train, val, cfg)),
             ("temperatures", "temperatures", lambda: choose_temperatures(model, val, cfg, deadline)),
             ("encoding", "encoding", lambda: choose_encoding(model, val, cfg, deadline)))
    for part, switch, choose in parts:
        if not getattr(cfg, switch):
            out[part] = {"skipped": f"tune.{switch} is off"}
        elif len(val) < cfg.min_validation_records:
            out[part] = {"skipped": too_few}
        else:
            out[part] = choose()
    out["wall_s"] = round(time.time() - t0, 2)
    return out


def training_sample(train: Sequence[Any], g: torch.Generator) -> list[Any]:
    """At most MAX_POSTERIORS training records, a seeded subsample when there are more."""
    train = list(train)
    if len(train) > MAX_POSTERIORS:
        train = [train[i] for i in torch.randperm(len(train), generator=g)[:MAX_POSTERIORS].tolist()]
    return train


# -- the prior -----------------------------------------------------------------------------------
@torch.no_grad()
def choose_prior(model: Any, train: Sequence[Any], val: Sequence[Any], candidates: Sequence[int],
                 seed: int) -> dict[str, Any]:
    """Fit each candidate prior on training posteriors, score validation means, install the best."""
    g = torch.Generator().manual_seed(seed)
    train = training_sample(train, g)
    # The prior is the distribution generation draws from: the encoder's means, unrefined
    mu_t, sigma_t = model.encode(train, refine_steps=0)
    mu_v, sigma_v = model.encode(val, refine_steps=0)
    # The prior's part of the validation ELBO, E_q(z|x) log p(z): scored on draws from the
    # validation posteriors, not their means alone, so a prior is judged by how it covers
    # the latents the decoder is actually trained on (their spread included).
    z_v = posterior_draws(mu_v, sigma_v, POSTERIOR_DRAWS, g)
    n = mu_t.shape[0]
    ks = sorted({int(k) for k in candidates if k <= n})
    dropped = sorted({int(k) for k in candidates if k > n})
    scores, priors = [], {}
    for k in ks:
        if k == 0:
            ll = gaussian_loglik(z_v, *model.vae.latent_distribution())
        else:
            mix = fit_mixture(mu_t, sigma_t, k, generator=torch.Generator().manual_seed(seed))
            priors[k] = mix
            ll = mixture_loglik(z_v, mix)
        scores.append({"components": k, "validation_loglik": round(ll, 4)})
    best = max(scores, key=lambda s: s["validation_loglik"])["components"] if scores else 0
    model.vae.set_prior(priors.get(best))
    model.config = dataclasses.replace(model.config, latent_prior_components=best)
    return {"chosen": best, "criterion": f"mean log-likelihood of {POSTERIOR_DRAWS} draws per validation "
                                         "posterior (nats/record): the prior's term of the validation ELBO",
            "candidates": scores, "dropped_above_train_posteriors": dropped,
            "train_posteriors": n, "validation_posteriors": int(mu_v.shape[0])}


def gaussian_loglik(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> float:
    """Mean log N(x; mean, cov) over the rows of x (full covariance, jittered as in sampling)."""
    cov = cov.double().cpu()
    eye = torch.eye(cov.shape[0], dtype=torch.float64)
    dist = torch.distributions.MultivariateNormal(mean.double().cpu(), covariance_matrix=cov + 1e-6 * eye)
    return float(dist.log_prob(x.double()).mean())


def mixture_loglik(x: torch.Tensor, mix: Mixture) -> float:
    """Mean log sum_k w_k N(x; m_k, diag(s_k^2)) over the rows of x, via matrix products
    (in the components' rotated coordinates: a rotation's Jacobian is 1)."""
    x = mix.to_rotated(x.double().cpu())
    m, s = mix.means.double().cpu(), mix.stds.double().cpu().clamp_min(1e-6)
    inv = 1.0 / s**2  # (K, D)
    quad = (x**2) @ inv.T - 2.0 * x @ (m * inv).T + (m**2 * inv).sum(1)  # (n, K)
    log_norm = -0.5 * (x.shape[1] * math.log(2 * math.pi)) - torch.log(s).sum(1)  # (K,)
    logp = torch.log(mix.weights.double().cpu()) + log_norm - 0.5 * quad
    return float(torch.logsumexp(logp, 1).mean())


# -- closed label pairs ---------------------------------------------------------------------------
def choose_closed_pairs(model: Any, train: Sequence[Any] | None, val: Sequence[Any], cfg: TuneConfig) -> dict[str, Any]:
    """Find the closed label pairs (synth/closed_pairs.py) on the validation split; set them in the config."""
    if not train:
        return {"skipped": "no training records given", "kept": len(model.config.closed_pairs)}
    train = training_sample(train, torch.Generator().manual_seed(cfg.seed))  # as many as the prior sees
    found = find_closed_pairs(model.plan, model.codec.encode(model.messages(train)), model.codec.encode(val),
                              cfg.closed_min_coverage, cfg.min_validation_records)
    model.config = dataclasses.replace(model.config, closed_pairs=found["chosen"])
    return {"chosen": sorted(found["chosen"]), "checked": found["checked"], "criterion": found["criterion"],
            "training_records": len(train)}


# -- the temperatures -----------------------------------------------------------------------------
def choose_temperatures(model: Any, val: Sequence[Any], cfg: TuneConfig, deadline: float) -> dict[str, Any]:
    from synth.eval.compare import compare_records
    from synth.records import to_dict

    real = [to_dict(m) for m in val]
    base = (model.config.sample_temperature, model.config.latent_temperature)
    grid = [base] + [c for c in itertools.product(cfg.sample_temperatures, cfg.latent_temperatures) if c != base]
    original = model.config

    def score() -> dict[str, Any]:
        generated = [to_dict(m) for m in model.sample(cfg.samples, seed=cfg.seed)]
        r = compare_records(model.tree, real, generated, seed=cfg.seed)
        summ = r["summary"]
        return {"detection_auc": summ.get("detection_auc"),
                "detection_auc_std": (r.get("detection") or {}).get("std"),
                "mean_tv": summ.get("mean_tv"), "mean_ks": summ.get("mean_ks"),
                "association_mean_abs_diff": summ.get("association_mean_abs_diff"),
                "p_mean": summ.get("p_mean"), "p_below_0_05": summ.get("p_below_0_05")}

    rows, skipped = score_in_turn(model, [{"sample_temperature": st, "latent_temperature": lt} for st, lt in grid],
                                  deadline, score)
    best = pick(rows)
    model.config = dataclasses.replace(original, sample_temperature=best["sample_temperature"],
                                       latent_temperature=best["latent_temperature"])
    return {"chosen": {"sample_temperature": best["sample_temperature"],
                       "latent_temperature": best["latent_temperature"]},
            "objective": "min detection AUC; within max(hypot of the two fold stds, 0.01) of the best: "
                         "min |P(p<0.05) - 0.05|, then min mean TV",
            "samples": cfg.samples, "candidates": rows, "not_evaluated_budget": skipped}


def pick(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The objective (module docstring): detection AUC, then calibration, then mean TV."""
    def num(v: Any, default: float) -> float:
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else default

    best_row = min(rows, key=lambda r: num(r["detection_auc"], 1.0))
    best_auc, best_std = num(best_row["detection_auc"], 1.0), num(best_row.get("detection_auc_std"), 0.0)

    def tied(r: dict[str, Any]) -> bool:
        # A gap smaller than the noise of the gap (both AUCs' fold spreads) is no evidence.
        noise = math.hypot(best_std, num(r.get("detection_auc_std"), 0.0))
        return num(r["detection_auc"], 1.0) <= best_auc + max(noise, DETECTION_TIE)

    tied = [r for r in rows if tied(r)]
    return min(tied, key=lambda r: (abs(num(r["p_below_0_05"], 0.05) - 0.05), num(r["mean_tv"], 1.0)))
