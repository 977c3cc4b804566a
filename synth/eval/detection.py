"""Classifier two-sample test: can a model tell generated rows from real ones? (docs/evaluation.md)

Why: marginals and pairwise associations miss higher-order structure (a street that
exists, but not in that town). A classifier trained to separate generated rows from
held-out real rows sees all columns at once; its cross-validated ROC AUC is 0.5 when
the two are indistinguishable and 1.0 when every row gives itself away (Lopez-Paz &
Oquab 2017). We report the raw mean AUC, not max(auc, 1 - auc): an AUC clearly below
0.5 would itself be a finding (a bug in the test).

The classifier is sklearn's HistGradientBoostingClassifier: trees see interactions,
so a generator that keeps every marginal but breaks the joint distribution is still
caught, which a linear model would miss. Features: numbers (NaN kept, trees split on
missingness), counts, presence, category codes and the top values of strings as
native categorical features, and each string's length and character-class shares.
Raw high-cardinality strings stay out: the classifier would learn the training
vocabulary instead of the distribution.

The floor is the same test between training rows and held-out real rows: what a
perfect generator, one that draws fresh rows from the real distribution, would score
on this much data.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from synth.eval.binning import fit_binning
from synth.eval.features import CATEGORY, STRING, LeafTable, string_features

FOLDS = 5
MAX_ROWS = 5000
"""Rows per class at most (the larger side is subsampled to the smaller anyway)."""
CATEGORY_CODES = 50
"""Top values kept as categorical codes (the rest share one code); HistGradientBoosting allows <= 255."""


def feature_matrix(fit: LeafTable, tables: list[LeafTable]) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Detector features of each table, coded with levels fitted on `fit` (the real side).

    Returns one (n_i, d) float matrix per table, the (d,) categorical mask and the
    feature names. Category codes are integers stored as floats; absent is NaN.
    """
    blocks: list[list[np.ndarray]] = [[] for _ in tables]
    categorical: list[bool] = []
    names: list[str] = []
    for j, col in enumerate(fit.columns):
        cols = [t.columns[j] for t in tables]
        if col.kind in (CATEGORY, STRING):
            b = fit_binning(col, max_bins=CATEGORY_CODES + 2)
            if b.levels:
                for blk, c in zip(blocks, cols):
                    codes = b.codes(c.values).astype(np.float64)
                    codes[codes == len(b.levels) + 1] = np.nan  # absent
                    blk.append(codes)
                categorical.append(True)
                names.append(f"{col.name}:code")
            if col.kind == STRING:
                feats = [string_features(c.values) for c in cols]
                for key in feats[0]:
                    for blk, f in zip(blocks, feats):
                        blk.append(f[key])
                    categorical.append(False)
                    names.append(f"{col.name}:{key}")
        else:
            for blk, c in zip(blocks, cols):
                blk.append(c.values.astype(np.float64))
            categorical.append(False)
            names.append(col.name)
    mats = [np.column_stack(b) if b else np.zeros((t.n_rows, 0)) for b, t in zip(blocks, tables)]
    return mats, np.asarray(categorical, dtype=bool), names


def _constant(x: np.ndarray) -> np.ndarray:
    """Columns that hold one value on every row (all NaN counts as one value)."""
    out = np.zeros(x.shape[1], dtype=bool)
    for j in range(x.shape[1]):
        col = x[:, j]
        nan = np.isnan(col)
        out[j] = bool(nan.all() or (not nan.any() and np.all(col == col[0])))
    return out


def detection_auc(real: LeafTable, generated: LeafTable, *, seed: int = 0, folds: int = FOLDS,
                  max_rows: int = MAX_ROWS) -> dict[str, Any]:
    """Mean and std over stratified folds of the ROC AUC of a real-vs-generated classifier.

    Both sides are subsampled (seeded) to the same size, min(len(real), len(generated),
    max_rows), so the AUC is not skewed by class imbalance. Deterministic given `seed`.
    """
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    n = min(real.n_rows, generated.n_rows, max_rows)
    if n < folds * 2:
        return {"auc": math.nan, "std": math.nan, "rows_per_class": n, "folds": folds,
                "note": f"needs at least {folds * 2} rows per side"}
    real = real.take(np.sort(rng.choice(real.n_rows, n, replace=False)))
    generated = generated.take(np.sort(rng.choice(generated.n_rows, n, replace=False)))
    (xr, xg), categorical, _ = feature_matrix(real, [real, generated])
    x = np.vstack([xr, xg])
    y = np.r_[np.zeros(n), np.ones(n)]
    keep = ~_constant(x)
    x, categorical = x[:, keep], categorical[keep]
    if x.shape[1] == 0:  # nothing varies: the two sides are identical
        return {"auc": 0.5, "std": 0.0, "rows_per_class": n, "folds": folds, "features": 0}
    aucs = []
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    # One thread: on a few thousand rows OpenMP start-up and contention cost more than they
    # save (measured 18x slower with 2 busy cores), and the result does not depend on it.
    with threadpool_limits(limits=1, user_api="openmp"):
        for k, (tr, te) in enumerate(cv.split(x, y)):
            aucs.append(_fold_auc(x, y, tr, te, categorical, seed + k))
    return {"auc": float(np.mean(aucs)), "std": float(np.std(aucs)), "rows_per_class": n,
            "folds": folds, "features": int(x.shape[1])}


def _fold_auc(x: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray, categorical: np.ndarray,
              seed: int) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    clf = HistGradientBoostingClassifier(
        max_iter=100, learning_rate=0.1, categorical_features=categorical if categorical.any() else None,
        early_stopping=False, random_state=seed)
    clf.fit(x[tr], y[tr])
    return float(roc_auc_score(y[te], clf.predict_proba(x[te])[:, 1]))


def detection_floor(train: LeafTable, holdout: LeafTable, *, seed: int = 0, folds: int = FOLDS,
                    max_rows: int = MAX_ROWS) -> dict[str, Any]:
    """The same test with training rows in the place of generated ones: the AUC of a perfect generator."""
    return detection_auc(holdout, train, seed=seed, folds=folds, max_rows=max_rows)
