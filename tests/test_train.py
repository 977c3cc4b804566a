"""Training: schedules, scheduled sampling, multiscale, augmented training, resume, reproducibility."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from synth import store
from synth.errors import ConfigError
from synth.model import Model
from synth.model_config import ModelConfig
from synth.train import AugmentConfig, BetaSchedule, RunConfig, TrainConfig, Trainer
from synth.train.schedules import learning_rate, level_betas, p_truth

PROTO = """
syntax = "proto3";
package toy;
message Row { string name = 1; string zip = 2; double x = 3; double y = 4; }
"""
TINY = ModelConfig(latent_dim=16, char_dim=8)


def rows(n: int = 64) -> list[dict]:
    names = ["ann", "bob", "cy", "dee"]
    return [{"name": names[i % 4], "zip": f"0{i % 3}", "x": float(i % 3) + 0.01 * i, "y": float(i % 5)}
            for i in range(n)]


def tiny(cfg: ModelConfig = TINY, seed: int = 0) -> Model:
    torch.manual_seed(seed)
    return Model.create(PROTO, "Row", records=rows(), config=cfg)


def quiet(**kw) -> TrainConfig:
    base = dict(steps=10, batch_size=8, eval_every=0, log_every=5, checkpoint_every=0)
    base.update(kw)
    return TrainConfig(**base)


# -- schedules --------------------------------------------------------------------------
def test_beta_schedules_follow_their_definitions():
    assert BetaSchedule(kind="constant", end=0.3).at(0) == 0.3
    w = BetaSchedule(kind="warmup", start=0.0, end=1.0, warmup_steps=100)
    assert [w.at(s) for s in (0, 25, 50, 100, 500)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    c = BetaSchedule(kind="warmup_cooldown", start=0.0, mid=1.0, end=0.2, warmup_steps=10, cooldown_steps=20)
    assert c.at(5) == pytest.approx(0.5)
    assert c.at(10) == pytest.approx(1.0)
    assert c.at(20) == pytest.approx(0.6)
    assert c.at(30) == pytest.approx(0.2)
    assert c.at(1000) == pytest.approx(0.2)
    with pytest.raises(ConfigError):
        BetaSchedule(kind="sawtooth")


def test_scheduled_sampling_probabilities():
    assert p_truth("TF", 123, 100) == 1.0
    assert p_truth("AS", 0, 100) == 0.0
    assert [p_truth("SS", s, 100) for s in (0, 50, 100, 200)] == [1.0, 0.5, 0.0, 0.0]
    with pytest.raises(ConfigError):
        p_truth("XX", 0, 1)


def test_learning_rate_decays_continuously():
    assert learning_rate(1.0, 0.99, 1000, 0) == 1.0
    assert learning_rate(1.0, 0.99, 1000, 1000) == pytest.approx(0.99)
    assert learning_rate(1.0, 0.99, 1000, 500) == pytest.approx(0.99**0.5)


def test_multiscale_levels_betas_and_std_networks():
    assert level_betas(0.64, 4) == pytest.approx([0.16, 0.32, 0.48, 0.64])
    model = tiny(ModelConfig(latent_dim=16, char_dim=8, n_levels=4))
    trainer = Trainer(model, quiet(beta=BetaSchedule(kind="constant", end=0.64)), rows(), progress=False)
    beta, levels, beta_max = trainer.betas(step=1, n=8)
    assert beta_max == pytest.approx(0.64)
    assert levels.tolist() == [1, 2, 3, 0, 1, 2, 3, 0]  # (i + step) mod n
    assert beta.tolist() == pytest.approx([0.32, 0.48, 0.64, 0.16, 0.32, 0.48, 0.64, 0.16])
    # each record's sigma comes from its own level's std network
    with torch.no_grad():
        for i, net in enumerate(model.vae.std_nets):
            net.out.bias.fill_(-1.0 - i)
        mu = torch.zeros(8, 16)
        sigma = model.vae.sigma(mu, levels)
    expected = torch.sigmoid(torch.tensor([-1.0 - lv for lv in levels.tolist()]))
    assert torch.allclose(sigma[:, 0], expected)


def test_a_multiscale_training_step_trains_every_level_s_std_network():
    """The step's levels reach the latent's sigma: each std network gets its records' gradient."""
    model = tiny(ModelConfig(latent_dim=16, char_dim=8, n_levels=4))
    trainer = Trainer(model, quiet(steps=1, beta=BetaSchedule(kind="constant", end=0.64)), rows(), progress=False)
    trainer.opt.step = lambda *a, **k: None  # keep the gradients to look at
    trainer.opt.zero_grad = lambda *a, **k: None
    for net in model.vae.std_nets:
        net.out.bias.grad = None
    trainer.train_step()
    grads = [net.out.bias.grad for net in model.vae.std_nets]
    assert all(g is not None and float(g.abs().sum()) > 0 for g in grads)


def test_leaf_children_are_teacher_forced_when_generation_re_encodes_them():
    """Under `generation_feedback = "reencoded"` generation feeds a Tuple the encoder's
    embedding of each drawn leaf value: training's auto leaf regime is then teacher forcing,
    whatever the Tuple's scheduled sampling does to its other children."""
    assert TrainConfig().leaf_mode(reencodes=True) == "TF"
    assert TrainConfig().leaf_mode(reencodes=False) == "SS"
    assert TrainConfig(tuple_sampling="AS").leaf_mode(reencodes=False) == "AS"
    assert TrainConfig(leaf_sampling="SS").leaf_mode(reencodes=True) == "SS"
    with pytest.raises(ConfigError, match="leaf_sampling"):
        TrainConfig(leaf_sampling="XX")
    from synth.train.calibrate import end_regime
    from synth.vae import DecodeOptions

    assert end_regime(TrainConfig(), True) == (0.0, 1.0, 1.0)
    model = tiny()
    model.vae.eval()
    batch = model.codec.encode(model.messages(rows(16)))

    def loss(opts: DecodeOptions) -> torch.Tensor:
        with torch.no_grad():
            return sum(v for k, v in model.vae(batch, opts).terms.items() if k != "kl")

    forced = loss(DecodeOptions(1.0, 1.0, sample_latent=False))
    leaves_forced = loss(DecodeOptions(0.0, 1.0, p_truth_leaf=1.0, sample_latent=False))
    free = loss(DecodeOptions(0.0, 1.0, sample_latent=False))
    assert torch.equal(leaves_forced, forced)  # a flat message: every child is a leaf
    assert not torch.allclose(free, forced)


def test_augmented_batch_composition(monkeypatch):
    model = tiny()
    cfg = quiet(steps=4, augment=AugmentConfig(n_augmented=5, p_sampled=0.2, gen_start_step=2))
    trainer = Trainer(model, cfg, rows(), progress=False)
    sizes = []
    real_encode = model.codec.encode

    def spy(messages):
        sizes.append(len(messages))
        return real_encode(messages)

    monkeypatch.setattr(model.codec, "encode", spy)
    for _ in range(4):
        trainer.train_step()
        trainer.step += 1
    # steps 0-1: training batch only; carried latents start after step index 1 (gen_start_step 2);
    # from then on: batch_size real records + n_augmented generated variants
    train_sizes = [s for s in sizes if s in (8, 13)]
    assert train_sizes == [8, 8, 13, 13]
    assert trainer.augment.z.shape == (5, 16)


def test_generated_variants_do_not_move_the_whitening_statistics(monkeypatch):
    """Augmented training feeds decoded variants through the encoder; the whitening of the
    floats must still follow the real records only (a variant far off the data would drag it)."""
    model = tiny()
    cfg = quiet(steps=4, augment=AugmentConfig(n_augmented=5, p_sampled=0.2, gen_start_step=1))
    trainer = Trainer(model, cfg, rows(), progress=False)
    real_decode, real_encode = model.decode, model.codec.encode
    seen = []

    def far_off_variants(z, **kw):
        out = real_decode(z, **kw)
        for m in out:
            m.x, m.y = 1e6, -1e6
        return out

    def spy(messages):
        seen.append(messages)
        return real_encode(messages)

    monkeypatch.setattr(model, "decode", far_off_variants)
    monkeypatch.setattr(model.codec, "encode", spy)
    scalars = next(m for m in model.vae.nodes.values() if hasattr(m, "update_stats"))
    decay = scalars.cfg.decay
    for _ in range(3):
        before = scalars.mean.clone()
        trainer.train_step()
        trainer.step += 1
        real = scalars.to_scores(torch.tensor([[m.x, m.y] for m in seen[-1][:cfg.batch_size]],
                                              dtype=torch.float64))  # the whitened space's values
        assert len(seen[-1]) > cfg.batch_size or trainer.step == 1  # variants were in the batch
        assert torch.allclose(scalars.mean, decay * before + (1 - decay) * real.mean(0))


def test_augmented_latents_replacement_rule():
    from synth.train.augment import AugmentedLatents

    g = torch.Generator().manual_seed(0)
    aug = AugmentedLatents(4, p_sampled=0.0)
    aug.start(torch.arange(8.0).unsqueeze(1).repeat(1, 3), g)
    variants = torch.full((4, 3), -1.0)
    aug.update(torch.zeros(8, 3), variants, g)
    assert torch.equal(aug.z, variants)  # p_sampled 0: always the variant's latent
    aug = AugmentedLatents(4, p_sampled=1.0)
    aug.start(torch.zeros(8, 3), g)
    batch = torch.arange(8.0).unsqueeze(1).repeat(1, 3)
    aug.update(batch, variants, g)
    assert len(set(aug.z[:, 0].tolist())) == 4  # p_sampled 1: distinct training latents (no replacement)
    assert set(aug.z[:, 0].tolist()) <= set(range(8))


def test_tiny_training_lowers_the_loss():
    model = tiny()
    before = model.loss(rows()).total
    Trainer(model, quiet(steps=40, batch_size=16, lr=3e-3, beta=BetaSchedule(kind="constant", end=0.0)),
            rows(), progress=False).run()
    after = model.loss(rows()).total
    assert after < before * 0.8, (before, after)


def test_weight_decay_shrinks_the_weights_and_is_validated():
    """`[train] weight_decay` (AdamW, decoupled): the same run with it ends with smaller weights;
    0 is plain Adam, and a negative value is refused where the config enters."""
    def weight_norm(wd: float) -> float:
        model = tiny(seed=3)
        Trainer(model, quiet(steps=20, seed=7, weight_decay=wd), rows(), progress=False).run()
        return float(sum(p.detach().pow(2).sum() for p in model.vae.parameters()))

    assert weight_norm(5.0) < 0.97 * weight_norm(0.0)
    with pytest.raises(ConfigError, match="weight_decay"):
        quiet(weight_decay=-0.1)


def test_same_seed_same_model_on_cpu(tmp_path):
    a, b = tiny(seed=3), tiny(seed=3)
    cfg = quiet(steps=6, seed=7, tuple_sampling="SS", string_sampling="SS")
    Trainer(a, cfg, rows(), progress=False).run()
    Trainer(b, cfg, rows(), progress=False).run()
    for (ka, va), (kb, vb) in zip(a.vae.state_dict().items(), b.vae.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


def test_encoding_workers_train_the_same_model_as_the_training_process():
    """loader_workers (the GPU default) encodes batches ahead in forked processes; the
    batches, and so the weights, are the ones a run without workers gets, epochs included."""
    a, b = tiny(seed=3), tiny(seed=3)
    cfg = quiet(steps=20, batch_size=24, seed=5)  # 64 records: batches straddle epochs
    Trainer(a, dataclasses.replace(cfg, loader_workers=0), rows(), progress=False).run()
    trainer = Trainer(b, dataclasses.replace(cfg, loader_workers=2), rows(), progress=False)
    assert trainer.loader_workers() == 2
    trainer.run()
    assert trainer.prefetch is None  # the workers are stopped at the end of the run
    for (ka, va), (_, vb) in zip(a.vae.state_dict().items(), b.vae.state_dict().items()):
        assert torch.equal(va, vb), ka
    auto = Trainer(tiny(), quiet(device="cpu"), rows(), progress=False)
    assert auto.loader_workers() == 0  # auto: the CPU's cores train


def test_auto_encoding_workers_beside_a_gpu_leave_two_cores_and_stop_at_twelve(monkeypatch):
    from synth.train import prefetch

    for cores, expected in ((1, 0), (3, 1), (8, 6), (16, 12), (64, 12)):
        monkeypatch.setattr(prefetch.os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)))
        assert prefetch.auto_workers("cuda") == expected, cores
        assert prefetch.auto_workers("cpu") == 0


def test_generated_loss_is_logged_and_config_lands_in_manifest(tmp_path):
    model = tiny()
    out = tmp_path / "run"
    cfg = quiet(steps=10, eval_every=5, eval_records=16)
    Trainer(model, cfg, rows(), rows(16), out_dir=out, progress=False).run()
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"train_loss", "test_loss", "generated_loss"} <= set(metrics[-1])
    manifest = store.read_manifest(out)
    run = manifest["metadata"]["run_config"]
    assert run["train"]["steps"] == 10 and run["model"]["latent_dim"] == 16
    # the stored config rebuilds the same RunConfig
    (tmp_path / "again.json").write_text(json.dumps(run))
    assert RunConfig.from_file(tmp_path / "again.json").to_dict() == run


def test_bf16_autocast_trains_with_fp32_weights_and_a_falling_loss():
    """precision = "bf16" (the GPU lever; CPU autocast runs the same path): the loss is
    finite and falls, the weights and every loss term stay fp32, and a bad name is refused."""
    model = tiny()
    before = model.loss(rows()).total
    trainer = Trainer(model, quiet(steps=40, batch_size=16, lr=3e-3, precision="bf16",
                                   beta=BetaSchedule(kind="constant", end=0.0)), rows(), progress=False)
    stats = trainer.train_step()
    assert stats["loss"].dtype == torch.float32 and torch.isfinite(stats["loss"])
    trainer.run()
    assert all(p.dtype == torch.float32 for p in model.vae.parameters())
    after = model.loss(rows()).total
    assert after < before * 0.8, (before, after)
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp16")


# -- resume after a kill, Ctrl-C ------------------------------------------------------------------
def _write_inputs(tmp: Path) -> tuple[Path, Path, Path]:
    proto = tmp / "row.proto"
    proto.write_text(PROTO)
    data = tmp / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    cfg = tmp / "run.toml"
    cfg.write_text("[model]\nlatent_dim = 16\nchar_dim = 8\n\n[train]\nbatch_size = 8\n"
                   "checkpoint_every = 5\nlog_every = 5\neval_every = 0\n"
                   # step schedules: a resume that extends `steps` must not move them (fractions would)
                   "\n[train.beta]\nwarmup_steps = 1000\n")
    return proto, data, cfg


def _train_cmd(proto, data, cfg, out, steps, *extra):
    return [sys.executable, "-m", "synth.cli", "train", str(proto), "--message", "Row", "--data", str(data),
            "--config", str(cfg), "--out", str(out), "--steps", str(steps), "--device", "cpu", *extra]


def _checkpoint_step(out: Path) -> int:
    path = out / "checkpoint" / "trainer.json"
    return json.loads(path.read_text())["step"] if path.exists() else 0


def _assert_same_weights(a_dir: Path, b_dir: Path) -> None:
    a, b = store.load(a_dir), store.load(b_dir)
    assert list(a.vae.state_dict()) == list(b.vae.state_dict())
    for (ka, va), (_, vb) in zip(a.vae.state_dict().items(), b.vae.state_dict().items()):
        assert torch.equal(va, vb), ka


def test_resume_after_kill_continues_from_the_checkpoint(tmp_path):
    proto, data, cfg = _write_inputs(tmp_path)
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_train_cmd(proto, data, cfg, out, 100000), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _checkpoint_step(out) < 10 and time.time() < deadline:
        time.sleep(0.2)
    proc.kill()  # SIGKILL: no chance to save anything more
    proc.wait()
    saved = _checkpoint_step(out)
    assert saved >= 10
    done = subprocess.run(_train_cmd(proto, data, cfg, out, saved + 10, "--resume"), env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resuming from step {saved}" in done.stderr
    assert _checkpoint_step(out) == saved + 10
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == saved + 10
    assert store.load(out).metadata["summary"]["steps"] == saved + 10


def test_checkpoints_are_also_written_by_training_time(tmp_path):
    """No step-based checkpoints: the time-based ones alone leave something to resume after a kill."""
    proto, data, _ = _write_inputs(tmp_path)
    cfg = tmp_path / "timed.toml"
    cfg.write_text("[model]\nlatent_dim = 16\nchar_dim = 8\n\n[train]\nbatch_size = 8\n"
                   "checkpoint_every = 0\ncheckpoint_seconds = 0.5\nlog_every = 5\neval_every = 0\n")
    out = tmp_path / "timed"
    proc = subprocess.Popen(_train_cmd(proto, data, cfg, out, 1_000_000), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while _checkpoint_step(out) == 0 and time.time() < deadline:
            time.sleep(0.1)
        first = _checkpoint_step(out)
        while _checkpoint_step(out) == first and time.time() < deadline:
            time.sleep(0.1)
        second = _checkpoint_step(out)
    finally:
        proc.kill()
        proc.wait()
    assert 0 < first < second < 1_000_000  # written twice while running, at no step multiple
    assert (out / "checkpoint" / "model" / "manifest.json").is_file()


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    proto, data, cfg = _write_inputs(tmp_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight, split = tmp_path / "straight", tmp_path / "split"
    subprocess.run(_train_cmd(proto, data, cfg, straight, 20), env=env, check=True, capture_output=True)
    subprocess.run(_train_cmd(proto, data, cfg, split, 10), env=env, check=True, capture_output=True)
    subprocess.run(_train_cmd(proto, data, cfg, split, 20, "--resume"), env=env, check=True, capture_output=True)
    _assert_same_weights(straight, split)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path, sig):
    proto, data, cfg = _write_inputs(tmp_path)
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(_train_cmd(proto, data, cfg, out, 100000),
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while _checkpoint_step(out) < 5 and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "continue with --resume" in err
    assert "Traceback" not in err
    assert _checkpoint_step(out) >= 5


def test_resume_without_a_checkpoint_is_an_error(tmp_path):
    proto, data, cfg = _write_inputs(tmp_path)
    done = subprocess.run(_train_cmd(proto, data, cfg, tmp_path / "empty", 5, "--resume"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "no checkpoint" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "empty" / "weights.safetensors").exists()  # nothing trained from step 0


def test_a_kill_between_the_checkpoint_renames_resumes_from_the_last_good_one(tmp_path):
    """save_checkpoint renames the old folder away, then the new one in; a kill between leaves only `.old`."""
    proto, data, cfg = _write_inputs(tmp_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight, split = tmp_path / "straight", tmp_path / "split"
    subprocess.run(_train_cmd(proto, data, cfg, straight, 20), env=env, check=True, capture_output=True)
    subprocess.run(_train_cmd(proto, data, cfg, split, 10), env=env, check=True, capture_output=True)
    os.replace(split / "checkpoint", split / "checkpoint.old")  # the state right after the first rename
    done = subprocess.run(_train_cmd(proto, data, cfg, split, 20, "--resume"), env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming from step 10" in done.stderr
    _assert_same_weights(straight, split)
