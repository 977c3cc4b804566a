"""The training protocol (docs/training.md): validation split, time budgets and fraction
schedules, early stopping on validation only, choices made on validation only, tuned
settings stored and used, and the evaluation seed's effect within the reported noise."""
from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

import pytest
import torch

from synth import store
from synth.cli import main
from synth.errors import ConfigError
from synth.model import Model
from synth.model_config import ModelConfig
from synth.train import BetaSchedule, TrainConfig, Trainer
from synth.train.config import TuneConfig
from synth.train.tune import choose_prior, pick, tune_generation
from synth.train.validation import split_validation, validation_size

PROTO = """
syntax = "proto3";
package proto_test;
message Row { string name = 1; string zip = 2; double x = 3; int64 id = 4; }
"""
TINY = ModelConfig(latent_dim=8, char_dim=4)
NO_TUNE = TuneConfig(enabled=False)


def rows(n: int = 200, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    names = ["ann", "bob", "cy", "dee"]
    return [{"name": names[i % 4], "zip": f"0{i % 3}", "x": float(i % 3) + rng.random(), "id": str(i)}
            for i in range(n)]


def garbage(n: int = 40) -> list[dict]:
    rng = random.Random(99)
    return [{"name": "".join(rng.choice("xyzq#") for _ in range(9)), "zip": "zz", "x": rng.random() * 1e3,
             "id": str(10**6 + i)} for i in range(n)]


def cfg(**kw) -> TrainConfig:
    base = dict(steps=6, batch_size=8, eval_every=0, log_every=2, checkpoint_every=0, tune=NO_TUNE)
    base.update(kw)
    return TrainConfig(**base)


def model(records=None) -> Model:
    torch.manual_seed(0)
    return Model.create(PROTO, "Row", records=records or rows(), config=TINY)


def files(tmp: Path, config: str, n: int = 200) -> tuple[Path, Path, Path]:
    proto = tmp / "row.proto"
    proto.write_text(PROTO)
    data = tmp / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows(n)))
    run = tmp / "run.toml"
    run.write_text("[model]\nlatent_dim = 8\nchar_dim = 4\n\n" + config)
    return proto, data, run


# -- the validation split ---------------------------------------------------------------------------
def test_validation_split_is_seeded_disjoint_and_bounded():
    records = rows(300)
    train, val, info = split_validation(records, TrainConfig())
    assert len(val) == 30 and len(train) == 270
    assert not {r["id"] for r in train} & {r["id"] for r in val}
    assert {r["id"] for r in train} | {r["id"] for r in val} == {r["id"] for r in records}
    again = split_validation(records, TrainConfig())
    assert [r["id"] for r in again[1]] == [r["id"] for r in val] and again[2] == info
    other = split_validation(records, TrainConfig(validation_seed=1))[1]
    assert [r["id"] for r in other] != [r["id"] for r in val]
    assert info["seed"] == 0 and info["fraction"] == 0.1 and info["validation_records"] == 30
    assert validation_size(10**6, 0.1, 5000, 16) == 5000  # capped
    assert validation_size(100, 0.1, 5000, 16) == 16  # at least a handful
    assert validation_size(20, 0.1, 5000, 16) == 0  # too few to split
    assert split_validation(records, TrainConfig(validation_fraction=0.0))[1] == []


def test_cli_train_records_the_split_in_the_manifest(tmp_path, capsys):
    proto, data, run = files(tmp_path, "[train]\nbatch_size = 8\nlog_every = 2\neval_every = 0\n"
                                       "checkpoint_every = 0\n\n[train.tune]\nenabled = false\n")
    out = tmp_path / "out"
    assert main(["train", str(proto), "--message", "Row", "--data", str(data), "--config", str(run),
                 "--out", str(out), "--steps", "4", "--device", "cpu"]) == 0
    meta = store.read_manifest(out)["metadata"]
    v = meta["validation"]
    assert v["source"] == "split" and v["seed"] == 0 and v["fraction"] == 0.1
    assert (v["train_records"], v["validation_records"]) == (180, 20)
    assert meta["summary"]["train_records"] == 180 and meta["summary"]["validation_records"] == 20
    # the rows held out are the seeded split's, and none of them is trained on
    expected = split_validation(rows(200), TrainConfig())[2]
    assert v["indices_sha256"] == expected["indices_sha256"]
    last = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert {"validation_loss", "generated_loss", "train_loss"} <= set(last)  # logged by default


def test_explicit_validation_data(tmp_path):
    proto, data, run = files(tmp_path, "[train]\nbatch_size = 8\neval_every = 0\ncheckpoint_every = 0\n"
                                       "\n[train.tune]\nenabled = false\n")
    val = tmp_path / "val.jsonl"
    val.write_text("".join(json.dumps(r) + "\n" for r in rows(30, seed=5)))
    out = tmp_path / "out"
    assert main(["train", str(proto), "--message", "Row", "--data", str(data), "--validation-data", str(val),
                 "--config", str(run), "--out", str(out), "--steps", "2", "--device", "cpu"]) == 0
    v = store.read_manifest(out)["metadata"]["validation"]
    assert v["source"] == "given" and v["validation_records"] == 30 and v["train_records"] == 200


# -- budgets and fraction schedules -----------------------------------------------------------------
def test_fraction_schedules():
    b = BetaSchedule(kind="warmup", start=0.0, end=1.0, warmup_fraction=0.5)
    assert [b.at(0, p) for p in (0.0, 0.25, 0.5, 1.0)] == [0.0, 0.5, 1.0, 1.0]
    assert b.at(10**6, 0.0) == 0.0  # fractions follow progress, not steps
    c = BetaSchedule(kind="warmup_cooldown", start=0.0, mid=1.0, end=0.0, warmup_fraction=0.2,
                     cooldown_fraction=0.2)
    assert c.at(0, 0.3) == pytest.approx(0.5) and c.at(0, 0.9) == 0.0
    steps = BetaSchedule(kind="warmup", start=0.0, end=1.0, warmup_steps=100)  # step configs unchanged
    assert steps.at(50, 0.99) == 0.5
    t = TrainConfig(steps=100)
    assert t.beta.warmup_steps == -1 and t.beta.warmup_fraction == 0.1  # 1,000 of the default 10,000 steps
    assert t.ss_period(5, 0.05) == (0.05, 0.1)
    assert TrainConfig(sampling_warmup_steps=30).ss_period(5, 0.05) == (5.0, 30.0)


def test_short_step_run_completes_its_warmup():
    trainer = Trainer(model(), cfg(steps=20, log_every=1, tuple_sampling="SS"), rows(), progress=False)
    trainer.run()
    assert trainer.last["beta"] == pytest.approx(BetaSchedule().end)  # the warm-up ended at 10% of 20 steps
    assert BetaSchedule().end == 0.05  # the default recipe's KL weight (docs/training.md)


def test_minutes_ends_the_run_by_time_and_completes_the_warmup(tmp_path):
    proto, data, run = files(tmp_path, "[train]\nbatch_size = 8\nlog_every = 1\neval_every = 0\n"
                                       "checkpoint_every = 0\n\n[train.beta]\nwarmup_fraction = 0.3\n"
                                       "\n[train.tune]\nenabled = false\n")
    out = tmp_path / "out"
    assert main(["train", str(proto), "--message", "Row", "--data", str(data), "--config", str(run),
                 "--out", str(out), "--minutes", "0.03", "--device", "cpu"]) == 0
    meta = store.read_manifest(out)["metadata"]
    assert meta["run_config"]["train"]["time_budget_s"] == pytest.approx(1.8)
    assert 0 < meta["summary"]["steps"] < 10**9 and meta["summary"]["wall_s"] < 30
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    betas = [m["beta"] for m in metrics if "beta" in m]
    assert betas[0] < 0.05 and betas[-1] == pytest.approx(0.05)  # the warm-up completed in the budget


# -- every choice on validation only -----------------------------------------------------------------
def test_early_stopping_reads_validation_only():
    c = cfg(steps=12, eval_every=4, log_every=4, eval_records=8, early_stopping_patience=1, lr=3e-2,
            early_stopping_min_records=0)
    results, states = [], []
    for test in (rows(40, seed=3), garbage()):
        m = model()
        t = Trainer(m, c, rows(), test, progress=False)
        results.append(t.run())
        states.append(m.vae.state_dict())
        assert "validation_loss" in t.last and "test_loss" in t.last
    assert results[0].step == results[1].step and results[0].early_stopped == results[1].early_stopped
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k
    # and it does act on the validation loss
    t = Trainer(model(), c, rows(), progress=False)
    seen = []
    t._early_stop = lambda v: seen.append(v) or False
    t.run()
    assert seen and all(v is not None for v in seen)


def test_early_stopping_does_not_act_on_a_few_dozen_validation_records():
    """20 validation records (10% of 200) are under the default bar of 100: a validation loss
    that only rises does not stop the run, and the manifest says so; with the bar lowered
    the same run stops at its second evaluation."""
    stopped = []
    for bar in (None, 0):
        extra = {} if bar is None else {"early_stopping_min_records": bar}
        t = Trainer(model(), cfg(steps=12, eval_every=4, log_every=4, eval_records=8, early_stopping_patience=1,
                                 **extra), rows(), progress=False)
        rising = iter([1.0, 2.0, 3.0])
        t.evaluate = lambda: {"validation_loss": next(rising)}
        result = t.run()
        stopped.append((result.step, result.early_stopped, t.early_stopping_acts))
    assert len(t.val_msgs) == 20
    assert stopped == [(12, False, False), (8, True, True)]
    with pytest.raises(ConfigError, match="early_stopping_min_records"):
        cfg(early_stopping_min_records=-1)


class _Posteriors:
    """A stand-in model whose records are latent vectors: encode(records) returns them."""

    latent_dim = 4

    def __init__(self, train: torch.Tensor, sigma: float = 0.05):
        self.config, self.sigma = ModelConfig(latent_dim=4), sigma
        mean, cov = train.double().mean(0), torch.cov(train.double().T)
        self.vae = type("V", (), {})()
        self.vae.latent_distribution = lambda: (mean, cov)
        self.vae.set_prior = lambda mix: setattr(self, "installed", 0 if mix is None else mix.weights.numel())

    def encode(self, records, refine_steps=None):
        assert refine_steps == 0  # the prior is fitted to the encoder's means, never refined ones
        mu = torch.stack(list(records)).float()
        return mu, torch.full_like(mu, self.sigma)


@pytest.mark.parametrize("restore", [False, True])
def test_restore_best_ends_with_the_best_validation_weights(restore):
    """With early_stopping_restore_best the run ends with the weights of its best validation
    loss, not its last step's; off (the default), it ends with the last step's."""
    c = cfg(steps=12, eval_every=4, log_every=4, eval_records=8, early_stopping_patience=10, lr=3e-2,
            early_stopping_restore_best=restore, early_stopping_min_records=0)
    m = model()
    t = Trainer(m, c, rows(), progress=False)
    losses = iter([1.0, 0.5, 2.0])  # the best validation loss is at the second evaluation (step 8)
    snapshots = {}
    real = t._early_stop

    def fake(_):
        snapshots[t.step] = {k: v.clone() for k, v in m.vae.state_dict().items()}
        return real(next(losses))

    t._early_stop = fake
    t.run()
    assert t.best_step == 8 and t.step == 12
    want = snapshots[8 if restore else 12]
    assert [k for k in want if not torch.equal(m.vae.state_dict()[k], want[k])] == []
    assert t.restored_best is restore


def test_prior_size_is_chosen_by_validation_posteriors():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(8, 4, generator=g) * 6
    train = centers[torch.arange(400) % 8] + 0.05 * torch.randn(400, 4, generator=g)
    clustered = centers[torch.arange(100) % 8] + 0.05 * torch.randn(100, 4, generator=g)
    diffuse = torch.randn(100, 4, generator=g) * 6
    fake = _Posteriors(train)
    a = choose_prior(fake, list(train), list(clustered), (0, 8, 64), seed=1)
    b = choose_prior(fake, list(train), list(diffuse), (0, 8, 64), seed=1)
    assert a["chosen"] > 0 and b["chosen"] == 0  # the validation set decides
    assert {c["components"] for c in a["candidates"]} == {0, 8, 64}
    assert a["validation_posteriors"] == 100 and a["train_posteriors"] == 400
    capped = choose_prior(fake, list(train[:20]), list(clustered), (0, 8, 64), seed=1)
    assert capped["dropped_above_train_posteriors"] == [64]


def test_the_prior_is_scored_on_draws_from_the_posteriors_not_their_means():
    """Validation means at the training clusters, but validation posteriors far wider than the
    training ones (an encoder sure of the rows it trained on): the latents the decoder sees
    for new rows fill the space between the clusters, so the narrow mixture must lose."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(8, 4, generator=g) * 3
    train = centers[torch.arange(400) % 8] + 0.05 * torch.randn(400, 4, generator=g)
    val = centers[torch.arange(100) % 8] + 0.05 * torch.randn(100, 4, generator=g)
    wide = 4.0
    fake = _Posteriors(train)
    fake.vae.latent_distribution = lambda: (train.double().mean(0),
                                            torch.cov(train.double().T) + wide**2 * torch.eye(4))
    train_rows = list(train)  # the records are these tensors; the training ones are known by identity
    seen = {id(t) for t in train_rows}
    fake.encode = lambda records, refine_steps=None: (torch.stack(list(records)).float(),
                                   torch.tensor([[0.05 if id(r) in seen else wide] * 4 for r in records]))
    blurred = choose_prior(fake, train_rows, list(val), (0, 8), seed=1)
    assert blurred["chosen"] == 0, blurred["candidates"]
    sharp = choose_prior(_Posteriors(train), list(train), list(val), (0, 8), seed=1)
    assert sharp["chosen"] == 8, sharp["candidates"]
    assert "draws per validation posterior" in sharp["criterion"]


def test_mixture_components_follow_correlated_latents():
    """Latents near a low-dimensional subspace, clustered within it (what a weak KL term gives):
    axis-aligned components fit them worse than one full-covariance Gaussian, so the tuner
    would drop the mixture; components in the principal axes fit them better than either."""
    from synth.latent_prior import fit_mixture
    from synth.train.tune import gaussian_loglik, mixture_loglik

    g = torch.Generator().manual_seed(0)
    mixing, centers = torch.randn(2, 16, generator=g), torch.randn(8, 2, generator=g) * 3

    def draw(n):
        return (centers[torch.arange(n) % 8] + 0.1 * torch.randn(n, 2, generator=g)) @ mixing \
            + 0.01 * torch.randn(n, 16, generator=g)

    train, val = draw(800), draw(200)
    sigma = torch.full_like(train, 0.01)
    full = gaussian_loglik(val, train.double().mean(0), torch.cov(train.double().T))
    axis = mixture_loglik(val, fit_mixture(train, sigma, 8, generator=torch.Generator().manual_seed(1), rotate=False))
    rotated = mixture_loglik(val, fit_mixture(train, sigma, 8, generator=torch.Generator().manual_seed(1)))
    assert axis < full < rotated, (axis, full, rotated)
    fake = _Posteriors(train, sigma=0.01)
    fake.config = ModelConfig(latent_dim=16)
    chosen = choose_prior(fake, list(train), list(val), (0, 8), seed=1)
    assert chosen["chosen"] == 8 and fake.installed == 8, chosen["candidates"]


def test_test_data_changes_no_choice(tmp_path):
    tune = TuneConfig(temperatures=False, min_validation_records=10, prior_candidates=(0, 4, 16))
    records = []
    for test in (rows(40, seed=3), garbage()):
        m = model()
        out = tmp_path / f"run{len(records)}"
        Trainer(m, cfg(steps=8, tune=tune), rows(), test, out_dir=out, progress=False).run()
        records.append(store.read_manifest(out)["metadata"]["tuning"])
    assert records[0]["prior"] == records[1]["prior"] and "chosen" in records[0]["prior"]
    assert records[0]["seed"] == 1


def test_objective_prefers_low_auc_then_calibration_then_tv():
    r = [{"detection_auc": 0.80, "detection_auc_std": 0.01, "p_below_0_05": 0.05, "mean_tv": 0.01},
         {"detection_auc": 0.70, "detection_auc_std": 0.02, "p_below_0_05": 0.30, "mean_tv": 0.2},
         {"detection_auc": 0.71, "detection_auc_std": 0.02, "p_below_0_05": 0.06, "mean_tv": 0.3},
         {"detection_auc": 0.715, "detection_auc_std": 0.02, "p_below_0_05": 0.06, "mean_tv": 0.1}]
    assert pick(r) is r[3]
    # a gap within the noise of *either* AUC is a tie: a noisy candidate is not ruled out by
    # the best's tight folds alone (0.025 < hypot(0.005, 0.03) but > 0.005 and > 0.01)
    noisy = [{"detection_auc": 0.700, "detection_auc_std": 0.005, "p_below_0_05": 0.30, "mean_tv": 0.1},
             {"detection_auc": 0.725, "detection_auc_std": 0.03, "p_below_0_05": 0.06, "mean_tv": 0.1},
             {"detection_auc": 0.760, "detection_auc_std": 0.03, "p_below_0_05": 0.05, "mean_tv": 0.1}]
    assert pick(noisy) is noisy[1]
    with pytest.raises(Exception):
        TuneConfig(seed=0)  # never the benchmark's evaluation seed


def test_tuned_settings_are_stored_and_used_by_synth_sample(tmp_path, capsys):
    proto, data, run = files(tmp_path, "[train]\nbatch_size = 8\nlog_every = 4\neval_every = 0\n"
                                       "checkpoint_every = 0\nvalidation_fraction = 0.2\n\n[train.tune]\n"
                                       "min_validation_records = 20\nsamples = 60\nmax_fraction = 1000.0\n"
                                       "prior_candidates = [0, 4]\nsample_temperatures = [0.3, 1.0]\n"
                                       "latent_temperatures = [1.0]\n", n=200)
    out = tmp_path / "out"
    assert main(["train", str(proto), "--message", "Row", "--data", str(data), "--config", str(run),
                 "--out", str(out), "--steps", "8", "--device", "cpu"]) == 0
    manifest = store.read_manifest(out)
    tuning = manifest["metadata"]["tuning"]
    temps = tuning["temperatures"]
    assert len(temps["candidates"]) == 2 and all(c["detection_auc"] is not None for c in temps["candidates"])
    chosen = temps["chosen"]
    assert manifest["model_config"]["sample_temperature"] == chosen["sample_temperature"]
    assert manifest["model_config"]["latent_prior_components"] == tuning["prior"]["chosen"]
    leaves = tuning["leaf_temperatures"]
    assert leaves["heads"] >= 2 and manifest["model_config"]["leaf_temperatures"] == leaves["chosen"]
    # the encoding: off, then refinement at each guard, scored on the same validation records
    encoding = tuning["encoding"]
    assert [(c["encode_refine_steps"], c["encode_refine_guard"]) for c in encoding["candidates"]] == [
        (0, 10.0), (50, 0.0), (50, 10.0)]
    best = min(c["mean_error"] for c in encoding["candidates"])
    assert encoding["chosen"]["encode_refine_steps"] in {c["encode_refine_steps"] for c in encoding["candidates"]
                                                         if c["mean_error"] <= best + 1e-3}
    assert manifest["model_config"]["encode_refine_steps"] == encoding["chosen"]["encode_refine_steps"]
    assert manifest["model_config"]["encode_refine_guard"] == encoding["chosen"]["encode_refine_guard"]
    capsys.readouterr()
    assert main(["sample", str(out), "-n", "5", "--seed", "3"]) == 0
    sampled = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    m = store.load(out)
    assert m.config.sample_temperature == chosen["sample_temperature"]
    from synth.records import to_dict
    assert sampled == [to_dict(r) for r in m.sample(5, seed=3, temperature=chosen["sample_temperature"])]
    # and `synth tune` redoes the choice for an existing model, on data it is given
    val = tmp_path / "val.jsonl"
    val.write_text("".join(json.dumps(r) + "\n" for r in rows(40, seed=8)))
    assert main(["tune", str(out), "--validation", str(val), "--no-prior", "--samples", "50",
                 "--out", str(tmp_path / "tuned")]) == 0
    again = store.read_manifest(tmp_path / "tuned")["metadata"]["tuning"]
    assert again["validation_path"] == str(val) and again["validation_records"] == 40
    assert "skipped" in again["prior"] and len(again["temperatures"]["candidates"]) == 2
    assert again["prior"]["previous"] == tuning["prior"]  # the record of the kept choice stays
    assert again["encoding"]["records"] == 40
    assert again["leaf_temperatures"]["heads"] == leaves["heads"]  # refitted on the given records
    kept = {next(iter(m.config.leaf_temperatures or m.vae.nodes)): 2.5}
    m.config = dataclasses.replace(m.config, leaf_temperatures=kept)
    store.save(m, tmp_path / "kept")
    assert main(["tune", str(tmp_path / "kept"), "--validation", str(val), "--no-prior", "--no-calibrate",
                 "--samples", "50"]) == 0
    assert "skipped" in store.read_manifest(tmp_path / "kept")["metadata"]["tuning"]["leaf_temperatures"]
    assert store.load(tmp_path / "kept").config.leaf_temperatures == kept


def test_tuning_without_enough_validation_keeps_the_configured_settings():
    m = model()
    before = m.config
    rec = tune_generation(m, rows(), rows(10, seed=2), TuneConfig(), budget_s=0)
    assert "skipped" in rec["prior"] and "skipped" in rec["temperatures"] and m.config == before
    assert "skipped" in rec["leaf_temperatures"] and "skipped" in rec["encoding"]


# -- the evaluation seed moves the headline numbers within their noise -------------------------------
def test_changing_the_evaluation_seed_stays_within_the_reported_noise(tmp_path, capsys):
    from synth.datasets import vermont_split

    _, test = vermont_split(seed=0)
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in test[:600]))
    reports = []
    for seed in (0, 7):
        capsys.readouterr()
        assert main(["evaluate", "vermont-address", "--data", str(data), "--samples", "400", "--seed",
                     str(seed), "--chains", "1", "--recon-rows", "20", "--json"]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    (a, b) = [r["comparison"] for r in reports]
    # detection: its reported noise is the std of the AUC over the 5 folds; allow 2 of them
    auc_noise = 2 * max(a["detection"]["std"], b["detection"]["std"])
    assert abs(a["summary"]["detection_auc"] - b["summary"]["detection_auc"]) <= auc_noise
    # p-value mean: standard error from the reported std and n of each side, 3 sigma
    pa, pb = reports[0]["pvalue"], reports[1]["pvalue"]
    p_noise = 3 * math.sqrt(pa["std"] ** 2 / pa["n"] + pb["std"] ** 2 / pb["n"])
    assert abs(pa["mean"] - pb["mean"]) <= p_noise
    # mean TV has no noise estimate: a documented band of 0.05 (sampling noise of TV at 400 rows)
    assert abs(a["summary"]["mean_tv"] - b["summary"]["mean_tv"]) <= 0.05
