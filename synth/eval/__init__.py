"""Evaluation metrics (docs/evaluation.md): pure functions over decoded records.

Records are plain dicts of proto field name -> value; a missing key means unset.
Torch-free, so metrics run wherever the decoded records are.
"""
from synth.eval.compare import compare_records
from synth.eval.levenshtein import levenshtein, per_char, per_char_by_field
from synth.eval.memorization import canonical, copied_share, record_copy_share
from synth.eval.pvalue import (
    ADDRESS_CATEGORY,
    ADDRESS_NUMERIC,
    GroupFit,
    GroupStats,
    PValueReport,
    fit_group_stats,
    mahalanobis_sq,
    pvalues,
)

__all__ = [
    "ADDRESS_CATEGORY",
    "ADDRESS_NUMERIC",
    "GroupFit",
    "GroupStats",
    "PValueReport",
    "canonical",
    "compare_records",
    "copied_share",
    "fit_group_stats",
    "levenshtein",
    "mahalanobis_sq",
    "per_char",
    "per_char_by_field",
    "pvalues",
    "record_copy_share",
]
