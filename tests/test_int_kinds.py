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


def test_the_escape_of_a_categorical_int_generates_within_the_training_values():
    # The escape's number model sees only the rare values (untrained here: none), so its
    # unclamped draws land outside the data, e.g. seat counts below 2 or above 450.
    # (numbers on raw values: the number transform alone would keep every number in range)
    model = Model.create(PROTO, "Plane", records=planes(),
                         config=ModelConfig(latent_dim=16, char_dim=8, number_transform="none"))
    z = 3 * np.random.default_rng(1).standard_normal((2000, 16))
    records = model.decode(z, temperature=4.0, seed=0)  # wide latents, high temperature: "other" drawn often
    seats = [r.seats for r in records]
    assert set(seats) - set(SEATS)  # values only the escape generates
    assert min(SEATS) <= min(seats) and max(seats) <= max(SEATS)
    # ordinary number fields are not clamped to their training values (mass: 2700 to 6300)
    mass = [r.mass for r in records]
    assert min(mass) < 2700 or max(mass) > 2700 + 25 * 144


def test_categorical_ints_learn_from_their_values_and_old_artifacts_rebuild_without(tmp_path):
    """A categorical int's classes share a smooth function of their value (numeric_categories):
    the model has the value layers and they train; an artifact whose manifest predates the
    setting rebuilds the model it was trained as (no value layers) and samples as before."""
    import json

    import torch

    from synth import store
    from synth.nn.categorical import Categorical
    from synth.train import Trainer
    from synth.train.config import TrainConfig

    def seats_module(m: Model) -> Categorical:
        return m.vae.module_for(next(c for c in m.plan.children if c.path == "seats"))

    cfg = ModelConfig(latent_dim=16, char_dim=8)
    model = Model.create(PROTO, "Plane", records=planes(), config=cfg)
    seats = seats_module(model)
    assert seats.numeric and seats.features.shape[0] == seats.n_classes
    assert not seats.features[-1].any()  # the escape class has no value
    before = seats.dec_value.weight.detach().clone()
    Trainer(model, TrainConfig(steps=5, batch_size=32, eval_every=0, log_every=100, checkpoint_every=0,
                               validation_fraction=0.0), planes(), progress=False).run()
    assert not torch.equal(before, seats.dec_value.weight)  # the value terms learn

    plain = Model.create(PROTO, "Plane", records=planes(),
                         config=dataclasses.replace(cfg, numeric_categories=False))
    assert not seats_module(plain).numeric
    d = store.save(plain, tmp_path / "old")
    manifest = json.loads((d / "manifest.json").read_text())
    del manifest["model_config"]["numeric_categories"]  # as written before the setting existed
    (d / "manifest.json").write_text(json.dumps(manifest))
    loaded = store.load(d)
    assert not seats_module(loaded).numeric
    z = plain.sample_latents(32, torch.Generator().manual_seed(0))
    assert [r.seats for r in loaded.decode(z, greedy=True)] == [r.seats for r in plain.decode(z, greedy=True)]
