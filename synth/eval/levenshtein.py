"""Levenshtein distance per character, the paper's reconstruction-detail metric.

Why: Chou & Hathi 2019 (section 3, table 1) measure how much detail the latent code
keeps by encoding training strings, decoding them again and averaging the edit
distance divided by the original's length (0.11 for the beta-VAE, 0.92 for the
multiscale VAE). Lengths and distances count Unicode code points.

The fast path is `rapidfuzz.distance.Levenshtein.distance` (C++); `_levenshtein_slow`
is its plain dynamic-programming twin, used when rapidfuzz is not installed and in
the tests that check the two agree (every fast path has a slow twin in the tests).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from synth.errors import InvalidArgument

try:  # optional fast path
    from rapidfuzz.distance import Levenshtein as _RapidLevenshtein
except ImportError:  # pragma: no cover - exercised only without rapidfuzz
    _RapidLevenshtein = None


def _levenshtein_slow(a: str, b: str) -> int:
    """Unit-cost insert/delete/substitute distance, O(len(a) * len(b)), one row of memory."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def levenshtein(a: str, b: str) -> int:
    """Edit distance between two strings (unit-cost insert, delete, substitute)."""
    if _RapidLevenshtein is not None:
        return int(_RapidLevenshtein.distance(a, b))
    return _levenshtein_slow(a, b)


def per_char(originals: Sequence[str], reconstructions: Sequence[str]) -> float:
    """Mean over pairs of levenshtein(original, reconstruction) / max(len(original), 1).

    Returns NaN for no pairs; raises InvalidArgument when the lengths differ.
    """
    if len(originals) != len(reconstructions):
        raise InvalidArgument(
            f"per_char needs one reconstruction per original, got {len(originals)} originals "
            f"and {len(reconstructions)} reconstructions"
        )
    if not originals:
        return math.nan
    total = sum(levenshtein(o, r) / max(len(o), 1) for o, r in zip(originals, reconstructions))
    return total / len(originals)


def per_char_by_field(
    originals: Iterable[Mapping[str, Any]],
    reconstructions: Iterable[Mapping[str, Any]],
    fields: Sequence[str],
) -> dict[str, float]:
    """`per_char` for each named string field of paired records (paper section 2.2).

    A field missing from a record counts as the empty string, which is how proto3
    reads an unset string field.
    """
    originals, reconstructions = list(originals), list(reconstructions)
    if len(originals) != len(reconstructions):
        raise InvalidArgument(
            f"per_char_by_field needs one reconstruction per original, got {len(originals)} "
            f"and {len(reconstructions)} records"
        )
    return {
        name: per_char(
            [str(r.get(name, "")) for r in originals],
            [str(r.get(name, "")) for r in reconstructions],
        )
        for name in fields
    }
