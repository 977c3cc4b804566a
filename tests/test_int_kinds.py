"""Ints: categorical when their values are a sparse closed vocabulary, numbers when dense."""
from __future__ import annotations

import dataclasses

import numpy as np

from synth.compiler import compile_plan
from synth.kinds.categorical import sparse
from synth.model import Model
from synth.model_config import ModelConfig

PROTO = """
syntax = "proto3";
package ints;
message Plane { int32 seats = 1; int32 mass = 2; int32 serial = 3; string name = 4; }
"""
SEATS = [20, 55, 95, 100, 140, 145, 149, 178, 182, 191, 200, 255, 330, 379, 450,
         2, 8, 12, 16, 22, 80, 120, 160, 220]


def planes(n: int = 600) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"seats": int(rng.choice(SEATS)), "mass": int(2700 + 25 * rng.integers(0, 145)),
             "serial": int(rng.integers(0, 10**6)), "name": f"p{i}"} for i in range(n)]


def kinds_of(model: Model) -> dict[str, str]:
    return {c.path: type(c).__name__ for c in model.plan.children}


def test_sparse_means_under_half_of_the_grid_points_between_min_and_max():
    assert sparse(SEATS)
    assert not sparse(list(range(172, 232)))  # flipper lengths in mm: every value used
    assert not sparse([2700 + 25 * k for k in range(0, 145, 2)])  # masses in steps of 25 g (gcd 50 here)
    assert not sparse([7])


def test_closed_sparse_ints_are_categorical_dense_and_open_ones_are_numbers():
    model = Model.create(PROTO, "Plane", records=planes(), config=ModelConfig(latent_dim=16, char_dim=8))
    kinds = kinds_of(model)
    assert kinds["seats"] == "CategoricalNode"  # 24 values > int_categorical_max, sparse, all recurring
    assert kinds["mass"] == "NumberNode"  # dense on its 25 g grid
    assert kinds["serial"] == "NumberNode"  # open: most values seen once
    assert set(model.plan.children[[c.path for c in model.plan.children].index("seats")].classes) == set(SEATS)
    # an unseen seat count still encodes (the escape) and sampling gives known values
    model.encode([{"seats": 7, "mass": 3000, "serial": 1, "name": "x"}])
    # the stats of artifacts from before int counts keep the old rule (more than 16 values: a number)
    old_stats = dataclasses.replace(model.stats, int_counts={})
    plan, _ = compile_plan(model.tree, model.config, old_stats)
    assert {c.path: type(c).__name__ for c in plan.children}["seats"] == "NumberNode"
