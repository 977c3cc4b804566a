"""Numbers on a grid (synth/value_grid.py): found from the data, dequantized in training,
generated back on the grid, kept in the artifact."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synth import store
from synth.model import Model
from synth.model_config import ModelConfig
from synth.train import BetaSchedule, TrainConfig, Trainer
from synth.value_grid import GridTracker, dequantization_noise

PROTO = """
syntax = "proto3";
package grid;
message Flight { string carrier = 1; double delay = 2; float length = 3; double lat = 4; }
"""


def flights(n: int = 96, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"carrier": ["AA", "UA", "DL"][i % 3], "delay": float(rng.integers(-20, 90)),
             "length": float(np.float32(round(float(rng.uniform(30, 60)), 1))),
             "lat": float(np.float32(44 + rng.uniform(0, 1)))} for i in range(n)]


def grid_of(values, chunks: int = 1) -> float:
    x = np.asarray(values, dtype=np.float64)[:, None]
    t = GridTracker(1)
    for part in np.array_split(x, chunks):
        t.update(part)
    return t.result()[0]


def test_the_grid_is_the_largest_power_of_ten_all_values_are_multiples_of():
    assert grid_of([7.0, -4.0, 148.0, 0.0]) == 1.0
    assert grid_of([1200.0, 300.0, -4500.0]) == 100.0
    # float32 storage: 38.1 is 38.099998474121094 once stored
    assert grid_of([float(np.float32(v)) for v in (38.1, 41.7, 55.0, 49.3)]) == pytest.approx(0.1)
    assert grid_of([float(np.float32(44 + v)) for v in np.random.default_rng(0).uniform(0, 1, 50)]) == 0.0
    assert grid_of([1e12, 3e12]) == 0.0  # too many steps from zero for float rounding to tell
    assert grid_of([float("inf"), 1.0]) == 0.0


def test_a_later_chunk_can_only_make_the_grid_finer():
    assert grid_of([10.0, 20.0, 30.0, 40.0, 2.5, 50.0], chunks=3) == pytest.approx(0.1)
    assert grid_of([10.0, 20.0, 30.0, 40.0, 2.25, 50.0], chunks=3) == pytest.approx(0.01)


def test_generated_numbers_land_on_the_data_grid_and_the_artifact_keeps_it(tmp_path):
    rows = flights()
    model = Model.create(PROTO, "Flight", records=rows,
                         config=ModelConfig(latent_dim=16, char_dim=8, scalar_likelihood="gaussian"))
    grid = model.stats.scalar_grid["grid.Flight#floats"]
    assert grid[0] == 1.0 and grid[1] == pytest.approx(0.1) and grid[2] == 0.0
    Trainer(model, TrainConfig(steps=30, batch_size=16, eval_every=0, log_every=10, checkpoint_every=0,
                               beta=BetaSchedule(kind="constant", end=0.05)), rows, progress=False).run()
    store.save(model, tmp_path / "m")
    loaded = store.load(tmp_path / "m")
    for m in (model, loaded):
        out = m.sample(200, seed=3)
        delays = np.array([r.delay for r in out])
        lengths = np.array([r.length for r in out], dtype=np.float64)
        lats = np.array([r.lat for r in out], dtype=np.float64)
        assert np.array_equal(delays, np.round(delays)) and len(set(delays)) > 5
        assert np.allclose(lengths * 10, np.round(lengths * 10), atol=1e-3)
        assert len(set(np.round(lats, 6))) > 100  # no grid: free values
    assert [r.delay for r in loaded.sample(20, seed=4)] == [r.delay for r in model.sample(20, seed=4)]
    # a condition's value stays as given, off the grid too; the other members are snapped
    cond = model.sample(20, seed=5, where={"delay": 7.5})
    assert {r.delay for r in cond} == {7.5}
    assert all(abs(r.length * 10 - round(r.length * 10)) < 1e-3 for r in cond)


def test_an_artifact_without_grids_loads_and_samples_free_values(tmp_path):
    """Artifacts written before grids existed have no `scalar_grid`: no snapping."""
    rows = flights()
    model = Model.create(PROTO, "Flight", records=rows, config=ModelConfig(latent_dim=16, char_dim=8))
    store.save(model, tmp_path / "m")
    manifest_path = tmp_path / "m" / store.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    del manifest["fit_stats"]["scalar_grid"]
    manifest_path.write_text(json.dumps(manifest))
    old = store.load(tmp_path / "m")
    assert old.stats.scalar_grid == {}
    delays = [r.delay for r in old.sample(50, seed=1)]
    assert any(d != round(d) for d in delays)


def test_dequantization_noise_is_uniform_and_a_function_of_the_record_not_the_batch():
    """The noise of an instance depends on the step's key, the node, its record's global
    position and its place in the record: a rank holding records 2 and 5 of a global batch
    draws what one process draws for them (tests/test_distributed.py checks the training)."""
    root = np.repeat(np.arange(6), [1, 3, 2, 1, 2, 1])  # instances per record, as in a repeated field
    whole = dequantization_noise(7, "a.#floats", np.arange(6), root, 3)
    assert whole.shape == (10, 3) and np.all(whole >= -0.5) and np.all(whole < 0.5)
    mine = np.isin(root, [2, 5])
    part = dequantization_noise(7, "a.#floats", np.array([2, 5]), np.repeat([0, 1], [2, 1]), 3)
    assert np.array_equal(part, whole[mine])
    assert not np.array_equal(dequantization_noise(8, "a.#floats", np.arange(6), root, 3), whole)
    assert not np.array_equal(dequantization_noise(7, "b.#floats", np.arange(6), root, 3), whole)
    big = dequantization_noise(1, "x", np.arange(20000), np.arange(20000), 1)[:, 0]
    assert abs(big.mean()) < 0.01 and abs(big.var() - 1 / 12) < 0.005


def test_training_targets_are_dequantized_and_evaluation_targets_are_not():
    rows = flights(32)
    model = Model.create(PROTO, "Flight", records=rows,
                         config=ModelConfig(latent_dim=16, char_dim=8, scalar_likelihood="gaussian"))
    st = next(mod for mod in model.vae.modules() if getattr(mod, "has_grid", False))
    x = torch.tensor([[7.0, 38.1, 44.5]] * 4, dtype=torch.float64)
    u = torch.full((4, 3), 0.25, dtype=torch.float64)
    assert torch.allclose(st.dequantize(x, u) - x, torch.tensor([[0.25, 0.025, 0.0]] * 4, dtype=torch.float64))
    # evaluation (no training mode, no noise key): the loss is deterministic
    assert model.loss(rows).total == model.loss(rows).total
