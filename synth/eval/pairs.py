"""Pairs found in training: do generated value combinations exist? (docs/evaluation.md)

Why: a generator can get every marginal right and still pair a street with a town
it is not in. For pairs of category/string leaves we report the share of generated
rows whose (a, b) value pair occurs in the training data, next to the same share for
held-out real rows, which is the target: on Vermont, real rows find (street,
postcode) in training 78% of the time and (street, city) 79%
(/work/shared/docs/BENCHMARK.md). Much lower means invented combinations, much
higher means memorised ones. The pairs are the most dependent ones in the real data
(by the association matrix of fidelity.py) plus, when a geo group field is set, each
string/category leaf paired with it.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from synth.eval.features import ABSENT, CATEGORY, STRING, LeafTable

MAX_PAIRS = 8
TOP_DEPENDENT = 5


def _values(table: LeafTable, name: str) -> list:
    return [ABSENT if v is None else v for v in table.column(name).values.tolist()]


def found_share(train: LeafTable, table: LeafTable, names: tuple[str, ...]) -> float:
    """Share of rows of `table` whose values of `names` occur together in some training row."""
    if table.n_rows == 0:
        return math.nan
    seen = set(zip(*(_values(train, n) for n in names)))
    return sum(t in seen for t in zip(*(_values(table, n) for n in names))) / table.n_rows


def choose_pairs(real: LeafTable, association: dict[str, Any], group: str | None = None,
                 max_pairs: int = MAX_PAIRS) -> list[tuple[str, str]]:
    """The most dependent category/string pairs in the real data, plus (leaf, group) pairs."""
    kinds = {c.name: c.kind for c in real.columns}
    cols = association["columns"]
    m = np.asarray(association["real"]) if cols else np.zeros((0, 0))
    ranked = sorted(((m[i, j], cols[i], cols[j]) for i in range(len(cols)) for j in range(i + 1, len(cols))
                     if kinds[cols[i]] in (CATEGORY, STRING) and kinds[cols[j]] in (CATEGORY, STRING)),
                    key=lambda t: -t[0])
    out: list[tuple[str, str]] = []
    if group is not None and group in cols:
        out += [(c, group) for c in cols if c != group and kinds[c] in (CATEGORY, STRING)]
    for _, a, b in ranked[:TOP_DEPENDENT]:
        if (a, b) not in out and (b, a) not in out:
            out.append((a, b))
    return out[:max_pairs]


def pairs_section(train: LeafTable, generated: LeafTable, real: LeafTable,
                  pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Found-in-training shares of generated and real rows, per pair and per single leaf."""
    singles = sorted({n for p in pairs for n in p}, key=[c.name for c in real.columns].index)
    return {
        "pairs": [{"a": a, "b": b, "generated": found_share(train, generated, (a, b)),
                   "real": found_share(train, real, (a, b))} for a, b in pairs],
        "singles": [{"column": n, "generated": found_share(train, generated, (n,)),
                     "real": found_share(train, real, (n,))} for n in singles],
    }
