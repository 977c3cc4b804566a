"""Reconstruction by leaf column (synth/eval/reconstruction.py): hand-made pairs whose
errors are known, on a nested schema (strings, enums, numbers, presence, repeats)."""
from __future__ import annotations

import copy
import math

import pytest
from google.protobuf import json_format

from schemas import NESTED_PROTO, nested_records, schema
from synth.errors import InvalidArgument
from synth.eval.reconstruction import mean_error, reconstruction_by_column
from synth.schema.tree import build_tree


def _dicts(records: list[dict]) -> tuple:
    cls = schema(NESTED_PROTO, "Customer").message_class
    return build_tree(cls.DESCRIPTOR), [
        json_format.MessageToDict(json_format.ParseDict(r, cls()), preserving_proto_field_name=True,
                                  always_print_fields_with_no_presence=True) for r in records]


def test_identical_records_have_no_error():
    tree, rows = _dicts(nested_records(6))
    by = reconstruction_by_column(tree, rows, copy.deepcopy(rows))
    assert mean_error(by) == 0.0
    assert all(c["exact"] == 1.0 for c in by.values())
    assert by["name"]["kind"] == "string" and by["status"]["kind"] == "category"


def test_each_kind_scores_its_own_error():
    originals = nested_records(6)
    tree, a = _dicts(originals)
    changed = copy.deepcopy(originals)
    changed[0]["name"] = "customer X"  # 1 edit in 10 characters
    changed[1]["status"] = "CLOSED"  # one category of six wrong
    changed[2]["home"]["lat"] += 1.0  # far beyond the column's spread: capped at 1
    changed[3]["items"] = changed[3]["items"][:1]  # the count differs (3 -> 1)
    _, b = _dicts(changed)
    by = reconstruction_by_column(tree, a, b)
    assert by["name"]["levenshtein_per_char"] == pytest.approx(0.1 / 6)
    assert by["name"]["exact"] == pytest.approx(5 / 6)
    assert by["status"]["error"] == pytest.approx(1 / 6)
    assert by["home.lat"]["error"] == pytest.approx(1 / 6) and by["home.lat"]["exact"] == pytest.approx(5 / 6)
    assert by["home.lat"]["median_abs_error_sd"] == 0.0  # five of six rows exact
    assert by["items#count"]["error"] == pytest.approx(1 / 6)
    assert by["home.lon"]["error"] == 0.0
    expected = sum(c["error"] for c in by.values()) / len(by)
    assert mean_error(by) == pytest.approx(expected) and 0 < mean_error(by) < 0.1


def test_absent_against_present_is_a_whole_error_and_absent_against_absent_none():
    originals = nested_records(4)  # record 0 has no items; record 1 has one
    tree, a = _dicts(originals)
    changed = copy.deepcopy(originals)
    changed[1]["items"] = []  # its first item's values are now absent
    _, b = _dicts(changed)
    by = reconstruction_by_column(tree, a, b)
    assert by["items[0].qty"]["error"] == pytest.approx(1 / 4)  # row 1 only; row 0 absent on both sides
    assert by["items[0].sku"]["exact"] == pytest.approx(3 / 4)


def test_unpaired_inputs_are_refused_and_none_give_nothing():
    tree, rows = _dicts(nested_records(3))
    with pytest.raises(InvalidArgument):
        reconstruction_by_column(tree, rows, rows[:2])
    assert reconstruction_by_column(tree, [], []) == {}
    assert math.isnan(mean_error({}))
