"""The number transform (`number_transform = "normal_scores"`): numbers are whitened and
modelled on their normal scores, through quantile functions found in the fit statistics."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synth import store
from synth.model import Model
from synth.model_config import ModelConfig
from synth.moments import RESERVOIR, RunningMoments
from synth.nn.scalar_tuple import ScalarTuple
from synth.train import BetaSchedule, TrainConfig, Trainer

PROTO = """
syntax = "proto3";
package skew;
message Trip { string carrier = 1; double delay = 2; double distance = 3; optional double fare = 4; }
"""


def trips(n: int = 400, seed: int = 0) -> list[dict]:
    """Delays like flights': most within minutes of 0, a long tail of hours (whole minutes)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        delay = float(np.round(rng.normal(-5, 6) if rng.random() < 0.85 else rng.exponential(120)))
        out.append({"carrier": ["AA", "UA"][i % 2], "delay": delay,
                    "distance": float(rng.lognormal(6.5, 0.6)), "fare": float(rng.lognormal(5, 0.4))})
    return out


def module(model: Model, suffix: str) -> ScalarTuple:
    return next(m for name, m in model.vae.nodes.items() if name.endswith(suffix))


def test_reservoir_quantiles_follow_a_stream_larger_than_the_reservoir():
    rng = np.random.default_rng(0)
    x = rng.exponential(10.0, size=(5 * RESERVOIR + 123, 2))
    moments = RunningMoments()
    for row in x:
        moments.add(row)
    q = np.asarray(moments.quantiles())
    assert q.shape == (2, 129)
    assert np.all(np.diff(q, axis=1) >= 0)
    truth = np.quantile(x, np.linspace(0, 1, 129), axis=0).T
    inner = slice(8, 121)  # the extreme quantiles of a sample vary most
    assert np.allclose(q[:, inner], truth[:, inner], rtol=0.15, atol=0.3)
    again = RunningMoments()
    for row in x:
        again.add(row)
    assert again.quantiles() == moments.quantiles()  # seeded: the same stream, the same knots


def test_scores_are_standard_normal_and_map_back_within_the_training_range():
    model = Model.create(PROTO, "Trip", records=trips(2000), config=ModelConfig(latent_dim=16, char_dim=8))
    m = module(model, "#floats")
    assert m.transformed and m.k == 2
    x = torch.tensor([[r["delay"], r["distance"]] for r in trips(2000)], dtype=torch.float64)
    z = m.to_scores(x)
    assert z.mean(0).abs().max() < 0.05 and (z.std(0) - 1).abs().max() < 0.05  # raw delays: skew > 3
    inside = x[((x > m.knots[:, 1]) & (x < m.knots[:, -2])).all(1)]
    assert len(inside) > 1800
    assert torch.allclose(m.from_scores(m.to_scores(inside)), inside, atol=1e-6)
    far = m.from_scores(torch.tensor([[-40.0, 40.0], [40.0, -40.0]]))
    assert far[:, 0].tolist() == pytest.approx([m.knots[0, 0].item(), m.knots[0, -1].item()])


def test_trained_model_generates_the_skewed_marginal_and_keeps_conditions(tmp_path):
    rows = trips()
    model = Model.create(PROTO, "Trip", records=rows, config=ModelConfig(latent_dim=16, char_dim=8))
    Trainer(model, TrainConfig(steps=40, batch_size=32, eval_every=0, log_every=100, checkpoint_every=0,
                               validation_fraction=0.0, beta=BetaSchedule(kind="constant", end=0.05)),
            rows, progress=False).run()
    out = model.sample(300, seed=1)
    delays = np.array([r.delay for r in out])
    real = np.array([r["delay"] for r in rows])
    assert np.array_equal(delays, np.round(delays))  # the grid still applies after the transform
    assert real.min() <= delays.min() and delays.max() <= real.max()
    cond = model.sample(10, seed=2, where={"delay": 7.5})  # off the grid and kept as given
    assert {r.delay for r in cond} == {7.5}
    store.save(model, tmp_path / "m")
    loaded = store.load(tmp_path / "m")
    assert [r.delay for r in loaded.sample(20, seed=4)] == [r.delay for r in model.sample(20, seed=4)]
    # small requests merged by the server get the records they get alone (synth/nn/rowwise.py)
    merged = model.sample_many([(3, 11), (5, 12), (1, 13)])
    alone = [model.sample(n, seed=s) for n, s in ((3, 11), (5, 12), (1, 13))]
    assert [[r.SerializeToString() for r in rs] for rs in merged] == \
        [[r.SerializeToString() for r in rs] for rs in alone]


def test_artifacts_from_before_the_transform_keep_raw_values(tmp_path):
    """A manifest without `number_transform` (LEGACY: "none") or without quantiles rebuilds
    the model it was trained as."""
    rows = trips()
    raw = Model.create(PROTO, "Trip", records=rows,
                       config=ModelConfig(latent_dim=16, char_dim=8, number_transform="none"))
    assert not module(raw, "#floats").transformed
    d = store.save(raw, tmp_path / "m")
    manifest = json.loads((d / store.MANIFEST).read_text())
    del manifest["model_config"]["number_transform"]
    del manifest["fit_stats"]["scalar_quantiles"]
    (d / store.MANIFEST).write_text(json.dumps(manifest))
    old = store.load(d)
    assert not any(getattr(m, "transformed", False) for m in old.vae.nodes.values())
    z = raw.sample_latents(16, torch.Generator().manual_seed(0))
    assert [r.delay for r in old.decode(z, greedy=True)] == [r.delay for r in raw.decode(z, greedy=True)]
