"""Privacy: exact copies and distance to the closest training record (docs/evaluation.md).

Why: a generator that replays its training rows wins every fidelity figure. Two
checks catch it, the same ones mostlyai-qa and SDMetrics report:

* **Exact copies**: the share of generated rows whose full leaf tuple (features.py)
  equals that of some training row.
* **DCR share**: for each generated row, its distance to the closest record (DCR) in
  the training set and in an equally large set of held-out real rows. A generator
  that draws fresh rows from the real distribution is as close to one as to the
  other, so the share of rows strictly closer to training (ties count half) is 0.5;
  a copying or overfitting generator pushes it towards 1. Also reported: the share
  of generated rows closer to training than the holdout's own 5th-percentile DCR to
  training, and the share at distance 0.

The distance is Gower's mixed-type distance: the mean over columns of a per-column
distance in [0, 1]: for numbers, counts and presence the absolute difference of
their ranks in the training data (empirical CDF, so scale and outliers do not
matter); for categories and strings 0 if equal, else 1; an absent value is at
distance 0 from another absent value and 1 from anything else. Rows are capped
(MAX_GENERATED, MAX_REFERENCE; seeded subsamples) and distances are computed in
numpy chunks, so the cost is bounded whatever the data size.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from synth.eval.features import ABSENT, NUMERIC_KINDS, LeafTable

MAX_GENERATED = 2000
MAX_REFERENCE = 10000
PAIRED_SEEDS = 5
"""Evaluation seeds of `dcr_paired`: the floor of one seed moves by 0.01-0.04 between seeds."""
CELL_BUDGET = 2e8
"""Bound on generated rows x reference rows x columns; the reference is subsampled to fit."""
_CHUNK_CELLS = 4_000_000
_NAN = 2.0  # rank stand-in for absent numbers: |2 - r| >= 1, clipped to 1


def exact_copy_share(generated: LeafTable, train: LeafTable) -> float:
    """Share of generated rows whose full leaf tuple occurs among the training rows; NaN for none."""
    if generated.n_rows == 0:
        return math.nan
    seen = set(train.row_keys())
    return sum(k in seen for k in generated.row_keys()) / generated.n_rows


def _encode(fit: LeafTable, tables: list[LeafTable]) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Per table: (n, dn) rank matrix of numeric columns and (n, dc) int codes of the others;
    and the names of those columns, numeric first (columns with one value are left out)."""
    nums: list[list[np.ndarray]] = [[] for _ in tables]
    cats: list[list[np.ndarray]] = [[] for _ in tables]
    num_names: list[str] = []
    cat_names: list[str] = []
    for j, col in enumerate(fit.columns):
        cols = [t.columns[j] for t in tables]
        if col.kind in NUMERIC_KINDS:
            ref = np.sort(col.values[np.isfinite(col.values)])
            if len(ref) == 0:
                continue
            encoded = []
            for c in cols:
                x = c.values.astype(np.float64)
                lo = np.searchsorted(ref, x, side="left")
                hi = np.searchsorted(ref, x, side="right")
                r = (lo + hi) / (2.0 * len(ref))
                r[np.isnan(x)] = _NAN
                encoded.append(r)
            if len(np.unique(np.concatenate(encoded))) <= 1:
                continue  # the same value everywhere: no information, only cost
            for blk, e in zip(nums, encoded):
                blk.append(e)
            num_names.append(col.name)
        else:
            vocab: dict[Any, int] = {}
            encoded = [np.fromiter((vocab.setdefault(ABSENT if v is None else v, len(vocab))
                                    for v in c.values.tolist()), dtype=np.int64, count=len(c.values))
                       for c in cols]
            if len(vocab) <= 1:
                continue
            for blk, e in zip(cats, encoded):
                blk.append(e)
            cat_names.append(col.name)
    as_num = [np.column_stack(b) if b else np.zeros((t.n_rows, 0)) for b, t in zip(nums, tables)]
    as_cat = [np.column_stack(b) if b else np.zeros((t.n_rows, 0), dtype=np.int64) for b, t in zip(cats, tables)]
    return as_num, as_cat, num_names + cat_names


def _nearest(qn: np.ndarray, qc: np.ndarray, rn: np.ndarray, rc: np.ndarray) -> np.ndarray:
    """Gower distance from each query row to its nearest reference row, (m,)."""
    return _nearest_rows(qn, qc, rn, rc)[0]


def _nearest_rows(qn: np.ndarray, qc: np.ndarray, rn: np.ndarray,
                  rc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Gower distance, index) of each query row's nearest reference row, each (m,)."""
    d_cols = qn.shape[1] + qc.shape[1]
    m, t = len(qn), len(rn)
    if d_cols == 0 or t == 0:
        return (np.zeros(m) if t else np.full(m, np.nan)), np.zeros(m, dtype=np.int64)
    dist_out, idx_out = np.empty(m), np.empty(m, dtype=np.int64)
    step = max(1, _CHUNK_CELLS // max(t, 1))
    for s in range(0, m, step):
        e = min(m, s + step)
        dist = np.zeros((e - s, t))
        for j in range(qn.shape[1]):
            dist += np.minimum(np.abs(qn[s:e, j, None] - rn[None, :, j]), 1.0)
        for j in range(qc.shape[1]):
            dist += qc[s:e, j, None] != rc[None, :, j]
        idx_out[s:e] = dist.argmin(axis=1)
        dist_out[s:e] = dist[np.arange(e - s), idx_out[s:e]]
    return dist_out / d_cols, idx_out


def neighbour_agreement(rows: LeafTable, train: LeafTable, holdout: LeafTable, *, seed: int = 0,
                        max_rows: int = 1500) -> dict[str, float]:
    """Per column: how much closer each row's nearest training row is to it in that column
    than its nearest held-out row is (mean of the per-column distance to the held-out
    neighbour minus that to the training neighbour). Which columns make a DCR share exceed
    its floor: fresh real rows give about 0 in every column. Equal-size seeded subsamples of
    at most `max_rows`; columns that `dcr_share` skips (one value) are left out."""
    rng = np.random.default_rng(seed)
    m = min(rows.n_rows, train.n_rows, holdout.n_rows, max_rows)
    if m == 0:
        return {}
    q, tr, ho = (t.take(np.sort(rng.choice(t.n_rows, m, replace=False))) for t in (rows, train, holdout))
    (qn, trn, hon), (qc, trc, hoc), names = _encode(tr, [q, tr, ho])
    it, ih = _nearest_rows(qn, qc, trn, trc)[1], _nearest_rows(qn, qc, hon, hoc)[1]
    num = np.minimum(np.abs(qn - hon[ih]), 1.0) - np.minimum(np.abs(qn - trn[it]), 1.0)
    cat = (qc != hoc[ih]).astype(float) - (qc != trc[it]).astype(float)
    return dict(zip(names, np.concatenate([num, cat], axis=1).mean(axis=0).tolist()))


def dcr_share(generated: LeafTable, train: LeafTable, holdout: LeafTable, *, seed: int = 0,
              max_generated: int = MAX_GENERATED, max_reference: int = MAX_REFERENCE) -> dict[str, Any]:
    """DCR of generated rows to training vs to an equal-size holdout; 0.5 is ideal, 1 is copying."""
    rng = np.random.default_rng(seed)
    n_cols = max(1, len(train.columns))
    n_gen = min(generated.n_rows, max_generated)
    budget = int(CELL_BUDGET // max(1, n_gen * n_cols))
    m = min(train.n_rows, holdout.n_rows, max_reference, max(1000, budget))
    if n_gen == 0 or m == 0:
        return {"share": math.nan, "note": "needs generated, training and holdout rows"}
    gen = generated.take(np.sort(rng.choice(generated.n_rows, n_gen, replace=False)))
    tr = train.take(np.sort(rng.choice(train.n_rows, m, replace=False)))
    ho = holdout.take(np.sort(rng.choice(holdout.n_rows, m, replace=False)))
    (gn, trn, hon), (gc, trc, hoc), _ = _encode(tr, [gen, tr, ho])
    d_train = _nearest(gn, gc, trn, trc)
    d_hold = _nearest(gn, gc, hon, hoc)
    d_ref = _nearest(hon, hoc, trn, trc)  # the holdout's own DCR to training
    q05 = float(np.quantile(d_ref, 0.05))
    closer = float(np.mean(d_train < d_hold) + 0.5 * np.mean(d_train == d_hold))
    return {
        "share": closer,
        "below_holdout_q05": float(np.mean(d_train < q05)),
        "holdout_q05": q05,
        "zero_share": float(np.mean(d_train == 0)),
        "holdout_zero_share": float(np.mean(d_ref == 0)),
        "mean_dcr_train": float(d_train.mean()),
        "mean_dcr_holdout": float(d_hold.mean()),
        "generated_rows": n_gen,
        "reference_rows": m,
    }


def dcr_floor(train: LeafTable, holdout: LeafTable, *, seed: int = 0, max_generated: int = MAX_GENERATED,
              max_reference: int = MAX_REFERENCE) -> dict[str, Any]:
    """DCR share of real rows: half the holdout plays the generator, the other half the holdout."""
    rng = np.random.default_rng(seed + 1)
    perm = rng.permutation(holdout.n_rows)
    half = holdout.n_rows // 2
    return dcr_share(holdout.take(perm[:half]), train, holdout.take(perm[half:]), seed=seed,
                     max_generated=max_generated, max_reference=max_reference)


def dcr_paired(generated: LeafTable, train: LeafTable, holdout: LeafTable, *, seed: int = 0,
               seeds: int = PAIRED_SEEDS, shares: Sequence[Mapping[str, Any]] = (),
               floors: Sequence[float] = ()) -> dict[str, Any]:
    """The DCR share's excess over its floor, paired by evaluation seed (seed, seed + 1, ...):
    each seed's share minus the floor of the same seed, whose reference subsamples it shares,
    so the two draw the same noise. `shares` (`dcr_share` results) and `floors` (floor shares):
    those of the first seeds, already computed; the rest are computed here."""
    results = list(shares) + [dcr_share(generated, train, holdout, seed=seed + i)
                              for i in range(len(shares), seeds)]
    floor = list(floors) + [dcr_floor(train, holdout, seed=seed + i)["share"] for i in range(len(floors), seeds)]
    share = [r["share"] for r in results]
    excess = np.array(share) - np.array(floor)
    return {"seeds": seeds, "excess_mean": float(np.mean(excess)), "excess_sd": float(np.std(excess)),
            "share_mean": float(np.mean(share)), "floor_mean": float(np.mean(floor)),
            "floor_sd": float(np.std(floor)),
            "below_holdout_q05_mean": float(np.mean([r["below_holdout_q05"] for r in results])),
            "shares": share, "floors": floor}
