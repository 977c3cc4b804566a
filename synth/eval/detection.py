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

Two things keep the real-vs-real AUC at 0.5 (docs/evaluation.md, "The floor"):
* The categorical codes (top values of categories and strings) are fitted on the rows
  of *both* sides pooled, not on the real side alone. Top values picked on one side
  favour that side (a value that happens to be frequent in 320 real rows is rarer in
  another 320 rows of the same distribution), so "value in the top list" told the sides
  apart: flights' real-vs-real AUC was 0.554 +- 0.019 over seeds with real-side levels and
  0.528 +- 0.009 pooled. Pooling uses no label, so it cannot leak.
* On small samples the AUC is noisy: the cross-validation is repeated (seeded
  reshuffles, and a fresh subsample of the larger side each time) until about
  TARGET_ROWS rows per class have been scored, at most MAX_REPEATS times. Even so a
  single split of n rows per class has a sampling noise of about `null_se` =
  sqrt((2n + 1) / (12 n^2)) (the Mann-Whitney standard error under the null): 0.08 at
  27 rows, 0.023 at 320, 0.007 at 3,300. Read an AUC within 0.5 +- 2 null_se as
  indistinguishable.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from synth.eval.binning import fit_binning
from synth.eval.features import CATEGORY, STRING, Column, LeafTable, string_features

FOLDS = 5
MAX_ROWS = 5000
"""Rows per class at most (the larger side is subsampled to the smaller anyway)."""
CATEGORY_CODES = 50
"""Top values kept as categorical codes (the rest share one code); HistGradientBoosting allows <= 255."""
TARGET_ROWS = 400
"""Small samples repeat the cross-validation until about this many rows per class are scored."""
MAX_REPEATS = 5


def _concat(tables: list[LeafTable]) -> LeafTable:
    """The rows of equally shaped tables, one after the other."""
    cols = tuple(Column(c.name, c.kind, np.concatenate([t.columns[j].values for t in tables]))
                 for j, c in enumerate(tables[0].columns))
    return LeafTable(cols, sum(t.n_rows for t in tables))


def null_se(n: int) -> float:
    """Standard error of the AUC between two samples of n rows each from one distribution."""
    return math.sqrt((2 * n + 1) / (12 * n * n)) if n > 0 else math.nan


def feature_matrix(fit: LeafTable, tables: list[LeafTable]) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Detector features of each table, coded with levels fitted on `fit` (both sides pooled, by detection_auc).

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
                  max_rows: int = MAX_ROWS, repeats: int | None = None) -> dict[str, Any]:
    """Mean and std over stratified folds of the ROC AUC of a real-vs-generated classifier.

    Both sides are subsampled (seeded) to the same size, n = min(len(real),
    len(generated), max_rows), so the AUC is not skewed by class imbalance. The
    cross-validation runs `repeats` times (default: enough for about TARGET_ROWS rows
    per class, at most MAX_REPEATS), each with its own shuffle and subsample; `auc` is
    the mean over every fold, `std` the std over folds, `repeat_std` the std of the
    repeats' means and `null_se` the sampling noise of one AUC at this n (module doc).
    Deterministic given `seed`.
    """
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    n = min(real.n_rows, generated.n_rows, max_rows)
    if n < folds * 2:
        return {"auc": math.nan, "std": math.nan, "rows_per_class": n, "folds": folds,
                "note": f"needs at least {folds * 2} rows per side"}
    if repeats is None:
        repeats = max(1, min(MAX_REPEATS, math.ceil(TARGET_ROWS / n)))
    aucs: list[float] = []
    means: list[float] = []
    features = 0
    for rep in range(repeats):
        r = real.take(np.sort(rng.choice(real.n_rows, n, replace=False)))
        g = generated.take(np.sort(rng.choice(generated.n_rows, n, replace=False)))
        # Codes fitted on both sides pooled: label-blind (module doc).
        (xr, xg), categorical, _ = feature_matrix(_concat([r, g]), [r, g])
        x = np.vstack([xr, xg])
        y = np.r_[np.zeros(n), np.ones(n)]
        keep = ~_constant(x)
        x, categorical = x[:, keep], categorical[keep]
        features = max(features, int(x.shape[1]))
        if x.shape[1] == 0:  # nothing varies: the two sides are identical
            fold_aucs = [0.5] * folds
        else:
            cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + 1000 * rep)
            # One thread: on a few thousand rows OpenMP start-up and contention cost more than they
            # save (measured 18x slower with 2 busy cores), and the result does not depend on it.
            with threadpool_limits(limits=1, user_api="openmp"):
                fold_aucs = [_fold_auc(x, y, tr, te, categorical, seed + 1000 * rep + k)
                             for k, (tr, te) in enumerate(cv.split(x, y))]
        aucs += fold_aucs
        means.append(float(np.mean(fold_aucs)))
    return {"auc": float(np.mean(aucs)), "std": float(np.std(aucs)), "rows_per_class": n, "folds": folds,
            "repeats": repeats, "repeat_std": float(np.std(means)), "null_se": null_se(n), "features": features}


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
                    max_rows: int = MAX_ROWS, repeats: int | None = None) -> dict[str, Any]:
    """The same test with training rows in the place of generated ones: the AUC of a perfect generator."""
    return detection_auc(holdout, train, seed=seed, folds=folds, max_rows=max_rows, repeats=repeats)
