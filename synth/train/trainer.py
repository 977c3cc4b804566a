"""The Trainer: nanoGPT's straight-line step inside a class (paper sections 2.4-6; docs/training.md).

    schedules -> batch (+ augmented variants) -> forward -> objective -> backward
    -> clip -> step -> latent statistics -> log / evaluate / checkpoint

Schedules get the step and the run's progress (fraction done: step / steps, or elapsed
/ time budget), so schedules given as fractions of the run complete within a
time-budgeted run. A seeded validation split of the training records (synth/train/
validation.py) is the only data early stopping and the tuning after training
(synth/train/tune.py) look at; test records are only logged.
Per-record betas make multiscale VAE (section 6) one process: record i of a batch
uses std network and beta level (i + step) mod n_levels. `.item()` is called only at
log time. Checkpoints (atomic, every `checkpoint_every` steps or `checkpoint_seconds` of
training, whichever comes first, and on Ctrl-C or a stop request) hold everything needed to resume exactly.
Data-parallel runs (torchrun; synth/train/distributed.py) take each rank's share of the
global batch; rank 0 alone logs, evaluates, checkpoints and writes the artifact.
Training records may be a `StreamingSource` (synth/train/stream.py) instead of a list.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from synth import store
from synth.configs import from_dict
from synth.model import Model
from synth.train import checkpoint as ckpt
from synth.train.augment import AugmentedLatents
from synth.train import distributed
from synth.train.config import UNBOUNDED_STEPS, RunConfig, TrainConfig
from synth.train.distributed import Dist
from synth.train.objectives import PIController, ae_pretraining, latent_terms
from synth.train.prefetch import BatchPrefetcher, Sampler, auto_workers
from synth.train.schedules import learning_rate, level_betas, p_truth
from synth.train.stream import StreamingSource
from synth.train.validation import explicit_validation, split_validation
from synth.vae import DecodeOptions

CHECKPOINT_DIR = "checkpoint"
METRICS_FILE = "metrics.jsonl"


@dataclass
class TrainResult:
    step: int
    stopped: bool  # interrupted (Ctrl-C, stop request) before `steps`
    early_stopped: bool = False
    losses: dict[str, float] = field(default_factory=dict)  # last logged values
    wall_s: float = 0.0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Trainer:
    def __init__(self, model: Model, cfg: TrainConfig, train_records: Sequence[Any],
                 test_records: Sequence[Any] | None = None, out_dir: str | Path | None = None,
                 progress: bool = True, run_config: RunConfig | None = None,
                 validation_records: Sequence[Any] | None = None,
                 validation_info: dict[str, Any] | None = None, dist: Dist | None = None):
        """`validation_records`: None takes the split from `train_records` (TrainConfig's
        `validation_*`); a list (even empty) is the validation set, already held out of
        `train_records` (`validation_info` then describes it for the manifest). Test
        records are logged (`test_loss`) and used for nothing else. `train_records` may
        be a scanned `StreamingSource`. `dist`: this process's rank (distributed.setup)."""
        self.model, self.cfg = model, cfg
        self.dist = dist or Dist()
        self.device = self.dist.device(resolve_device(cfg.device))
        model.to(self.device)
        self.source = train_records if isinstance(train_records, StreamingSource) else None
        if self.source is not None:  # its sample stands in for the records (evaluation, tuning)
            train_records = self.source.sample
            if validation_records is None:
                validation_records, validation_info = self.source.validation, self.source.info
        if validation_records is None:
            train_records, validation_records, validation_info = split_validation(train_records, cfg)
        self.validation_info = dict(validation_info or explicit_validation(len(train_records),
                                                                           len(validation_records)))
        self.train_msgs = model.messages(train_records)
        self.val_msgs = model.messages(validation_records) if validation_records else []
        self.test_msgs = model.messages(test_records) if test_records else []
        if not self.train_msgs:
            from synth.errors import DataError
            raise DataError("no training records")
        self.out_dir = Path(out_dir) if out_dir else None
        self.progress = progress
        self.run_config = run_config or RunConfig(model.config, cfg)
        self.opt = adam(model.vae.parameters(), cfg)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(cfg.seed)
        self.sampler = Sampler(len(self.train_msgs), cfg.batch_size, cfg.seed)
        self.prefetch: BatchPrefetcher | None = None  # started by the first step (loader_workers)
        self.step = 0
        self.augment = AugmentedLatents(cfg.augment.n_augmented, cfg.augment.p_sampled)
        self.controller = PIController(cfg.objective) if cfg.objective.kind == "controlvae" else None
        self.best_test = math.inf  # the best validation loss (name kept for checkpoints)
        self.best_step = 0
        self.bad_evals = 0
        self._best_state: dict[str, torch.Tensor] | None = None  # with early_stopping_restore_best
        self.restored_best = False
        self.last: dict[str, float] = {}
        self.elapsed_before = 0.0  # training wall time of earlier processes (resume)
        self._t0 = time.time()
        self.tuning: dict[str, Any] | None = None
        self.net: torch.nn.Module = model.vae  # what the training forward runs through (DDP when distributed)
        self.local_gen = self.gen  # draws whose count depends on this rank's share
        if self.dist.active:
            distributed.check_config(cfg, self.dist)
            self.net = distributed.wrap(model.vae, self.device)
            self.local_gen = torch.Generator(device=self.device)
        self.autocast_dtype = torch.bfloat16 if cfg.precision == "bf16" else None

    # -- the run's progress -----------------------------------------------------------------
    @property
    def budgeted(self) -> bool:
        """A run ended by its time budget alone (`--minutes` without `--steps`)."""
        return self.cfg.time_budget_s > 0 and self.cfg.steps >= UNBOUNDED_STEPS

    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self._t0

    def run_progress(self, step: int | None = None) -> float:
        """Fraction of the run done, in [0, 1]: the larger of step / steps and elapsed /
        time budget (whichever limit ends the run first)."""
        step = self.step if step is None else step
        p = step / self.cfg.steps if 0 < self.cfg.steps < UNBOUNDED_STEPS else 0.0
        if self.cfg.time_budget_s > 0:
            p = max(p, self.elapsed() / self.cfg.time_budget_s)
        return min(max(p, 0.0), 1.0)

    # -- data ---------------------------------------------------------------------------
    def next_records(self) -> list:
        """This rank's share of the next batch of training messages: seeded shuffles, epoch
        after epoch (every rank draws the same global batch and keeps its positions), or
        the next records of the stream."""
        if self.source is not None:
            return self.source.take(self.cfg.batch_size // self.dist.world)
        out = [self.train_msgs[i] for i in self.sampler.draw()]
        if self.dist.active:
            out = [out[g] for g in self.dist.positions(len(out), self.step, self.model.config.n_levels)]
        return out

    def positions(self, n_real: int, n_variants: int) -> np.ndarray | None:
        """Global batch positions of this rank's records and variants (None: one process)."""
        if not self.dist.active:
            return None
        nl, step = self.model.config.n_levels, self.step
        b, a = self.cfg.batch_size, self.cfg.augment.n_augmented
        return np.concatenate([self.dist.positions(b, step, nl), self.dist.positions(a, step, nl, b)[:n_variants]])

    # -- one step -------------------------------------------------------------------------
    def betas(self, step: int, n: int, progress: float = 0.0,
              positions: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """Per-record beta (n,), per-record level (or None), and the scheduled beta_max.
        `positions`: the records' places in the global batch (data-parallel runs)."""
        beta_max = self.cfg.beta.at(step, progress)
        if self.controller is not None:
            beta_max = self.controller.beta
        if ae_pretraining(self.cfg.objective, step):
            beta_max = 0.0
        n_levels = self.model.config.n_levels
        if n_levels == 1:
            return torch.full((n,), beta_max, device=self.device), None, beta_max
        at = torch.arange(n) if positions is None else torch.as_tensor(positions)
        levels = (at.to(self.device) + step) % n_levels
        table = torch.tensor(level_betas(beta_max, n_levels), device=self.device)
        return table[levels], levels, beta_max

    def train_step(self) -> dict[str, torch.Tensor]:
        cfg, step, vae = self.cfg, self.step, self.model.vae
        for group in self.opt.param_groups:
            group["lr"] = learning_rate(cfg.lr, cfg.lr_decay, cfg.lr_decay_steps, step)
        prefetched = self._prefetched_batch()
        records = self.next_records() if prefetched is None else []
        n_real = len(records) if prefetched is None else prefetched.size
        if self.dist.active:
            self.local_gen.manual_seed(self.dist.step_seed(cfg.seed, step))
        variants: list = []
        if self.augment.active():
            vae.eval()
            z_aug = self.augment.z
            if self.dist.active:  # this rank's carried latents
                b = cfg.batch_size
                z_aug = z_aug[self.dist.positions(len(z_aug), step, self.model.config.n_levels, b) - b]
            variants = self.model.decode(z_aug, generator=self.local_gen)
        vae.train()
        batch = self.model.codec.encode(records + variants) if prefetched is None else prefetched
        batch.n_real = n_real
        progress = self.run_progress(step)
        positions = self.positions(n_real, len(variants))
        beta, levels, beta_max = self.betas(step, batch.size, progress, positions)
        pretrain = ae_pretraining(cfg.objective, step)
        position, period = cfg.ss_period(step, progress)
        opts = DecodeOptions(p_truth(cfg.tuple_sampling, position, period),
                             p_truth(cfg.string_sampling, position, period),
                             p_truth_leaf=p_truth(cfg.leaf_mode(self.model.reencode), position, period),
                             levels=levels, sample_latent=not pretrain, generator=self.local_gen,
                             noise_key=(cfg.seed & 0xFFFFFFFF) << 32 | (step & 0xFFFFFFFF), positions=positions)
        if self.dist.active:
            opts.noise = self._global_noise(positions) if not pretrain else None
            distributed.sync_whitening(vae, batch)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            out = self.net(batch, opts)
        recon = sum(v for k, v in out.terms.items() if k != "kl")
        lat = latent_terms(cfg.objective, out.mu, out.sigma, out.z)
        extras = torch.zeros_like(recon)
        if not pretrain:  # AE pretraining is reconstruction only (Li et al. 2019)
            extras = sum((v for k, v in lat.items() if k not in ("kl", "latent")), extras)
        loss = (recon + beta * lat["latent"] + extras).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(vae.parameters(), cfg.clip_norm)
        self.opt.step()
        if self.dist.active:
            distributed.sync_latent_stats(vae, out.z[:n_real])
        else:
            vae.update_latent_stats(out.z[:n_real])
        self._augment_after_step(out.z, n_real, step, progress)
        if self.controller is not None and not pretrain:
            kl = float(lat["kl"][:n_real].mean().detach())
            self.controller.update(distributed.all_mean_float(kl, self.device) if self.dist.active else kl)
        return {"loss": loss.detach(), "recon": recon[:n_real].mean().detach(),
                "kl": lat["kl"][:n_real].mean().detach(), "beta": torch.tensor(beta_max),
                "grad_norm": grad_norm.detach()}

    # -- encoding ahead in worker processes (synth/train/prefetch.py) ----------------------------
    def loader_workers(self) -> int:
        """Worker processes that encode batches ahead: the configured number, or by default
        none on the CPU (its cores train) and most host cores beside a GPU (auto_workers).
        Only for in-memory data, one process and no augmented training (whose variants come
        from the step itself)."""
        if self.source is not None or self.dist.active or self.cfg.augment.n_augmented:
            return 0
        if self.cfg.loader_workers >= 0:
            return self.cfg.loader_workers
        return auto_workers(self.device.type)

    def _prefetched_batch(self):
        """The next batch from the workers (None when they are not used); it advances this
        trainer's sampler exactly as `next_records` would."""
        workers = self.loader_workers()
        if not workers:
            return None
        if self.prefetch is None:
            shadow = self.sampler.shadow()
            self.prefetch = BatchPrefetcher(self.model.codec, self.train_msgs, workers, depth=workers + 1,
                                            draw_ahead=shadow.draw)
        return self.prefetch.take(self.sampler.draw())

    def close(self) -> None:
        """Stop the encoding workers (`run` does this at its end)."""
        if self.prefetch is not None:
            self.prefetch.close()
            self.prefetch = None

    def _global_noise(self, positions: np.ndarray) -> torch.Tensor:
        """The latent noise a single process would draw for the global batch: this rank's rows."""
        n = self.cfg.batch_size + (self.cfg.augment.n_augmented if self.augment.active() else 0)
        eps = torch.randn((n, self.model.latent_dim), generator=self.gen, device=self.device)
        return eps[torch.as_tensor(positions, device=self.device)]

    def _augment_after_step(self, z: torch.Tensor, n_real: int, step: int, progress: float = 0.0) -> None:
        a = self.cfg.augment
        if a.n_augmented <= 0 or step + 1 < a.gen_start_step or progress < a.gen_start_fraction:
            return
        if self.dist.active:  # every rank updates the carried latents from the global batch
            nl, b = self.model.config.n_levels, self.cfg.batch_size
            variants = z[n_real:]
            z = distributed.gather_rows(z[:n_real], b, step, nl, self.dist)
            if self.augment.active():
                z = torch.cat([z, distributed.gather_rows(variants, a.n_augmented, step, nl, self.dist, start=b)])
            n_real = b
        if not self.augment.active():
            self.augment.start(z[:n_real], self.gen)
        else:
            self.augment.update(z[:n_real], z[n_real:], self.gen)

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Train, validation, test and generated loss (section 4) at the current beta, on
        fixed subsets. Only the validation loss is acted on (early stopping)."""
        n = self.cfg.eval_records
        beta = self.cfg.beta.at(self.step, self.run_progress())
        out = {"train_loss": self.model.loss(self.train_msgs[:n], beta, sample_latent=True).total}
        if self.val_msgs:
            out["validation_loss"] = self.model.loss(self.val_msgs[:n], beta, sample_latent=True).total
        if self.test_msgs:
            out["test_loss"] = self.model.loss(self.test_msgs[:n], beta, sample_latent=True).total
        generated = self.model.sample(min(n, 256), seed=self.cfg.seed)
        out["generated_loss"] = self.model.loss(generated, beta, sample_latent=True).total
        return out

    # -- the loop -------------------------------------------------------------------------
    def run(self, on_progress: Callable[[dict[str, Any]], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> TrainResult:
        cfg = self.cfg
        t0 = time.time()
        self._t0 = t0
        main = self.dist.is_main
        log = _Log(self.out_dir if main else None)
        bar = _bar(self.progress and main, self.step, None if self.budgeted else cfg.steps)
        stopped = early = False
        evaluated_at = -1
        window_t, window_n = time.time(), 0
        checkpoint_t = time.time()
        try:
            while self.step < cfg.steps:
                stop = should_stop is not None and should_stop()
                time_up = bool(cfg.time_budget_s and self.elapsed() > cfg.time_budget_s)
                if self.dist.active:
                    stop, time_up = self._agree(stop, time_up)
                if stop:
                    stopped = True
                    break
                if time_up:
                    break  # a budgeted run ends normally, with its final artifact
                stats = self.train_step()
                self.step += 1
                window_n += cfg.batch_size
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    if self.dist.active:
                        stats = distributed.all_mean(stats, self.device)
                    now = time.time()
                    row = {k: float(v) for k, v in stats.items()}
                    row["records_per_s"] = window_n / max(now - window_t, 1e-9)
                    eta = (cfg.steps - self.step) * cfg.batch_size / max(row["records_per_s"], 1e-9)
                    if cfg.time_budget_s:
                        eta = min(eta, max(cfg.time_budget_s - self.elapsed(), 0.0))
                    row["eta_s"] = eta
                    window_t, window_n = now, 0
                    if cfg.eval_every and (self.step % cfg.eval_every == 0 or self.step == cfg.steps):
                        if main:
                            row.update(self.evaluate())
                        evaluated_at = self.step
                        early = self._early_stop(row.get("validation_loss"))
                        if self.dist.active:
                            early = bool(distributed.agree([early], self.device)[0])
                    self.last = row
                    log.write(self.step, row)
                    bar.update_to(self.step, row)
                    if on_progress:
                        on_progress({"step": self.step, "steps": cfg.steps, **row})
                if self.out_dir and self._checkpoint_due(checkpoint_t):
                    self.save_checkpoint()
                    checkpoint_t = time.time()
                if early:
                    break
            if main and not stopped and evaluated_at != self.step and self.step > 0:
                # every finished run logs its validation, test and generated loss once at the end
                final = self.evaluate()
                self.last = {**self.last, **final}
                log.write(self.step, final)
                bar.update_to(self.step, self.last)
        except KeyboardInterrupt:
            stopped = True
        finally:
            self.close()
            bar.close()
            log.close()
        self.elapsed_before += time.time() - t0
        self._t0 = time.time()
        if self.out_dir:
            self.save_checkpoint()
        wall = time.time() - t0
        if not stopped:  # after the checkpoint, which resumes from the last step's weights
            self.restored_best = self._restore_best()
        if self.out_dir and not stopped and main:
            self.finalize(wall)
        return TrainResult(self.step, stopped, early, dict(self.last), wall)

    def _agree(self, stop: bool, time_up: bool) -> tuple[bool, bool]:
        """Rank 0's stop decisions and clock on every rank: all ranks leave the loop at the
        same step, and schedules given as fractions of the run see one progress."""
        stop_f, time_f, elapsed = distributed.agree([stop, time_up, self.elapsed()], self.device)
        self._t0 = time.time() - (elapsed - self.elapsed_before)
        return bool(stop_f), bool(time_f)

    def _restore_best(self) -> bool:
        """With early_stopping_restore_best: end with the weights of the best validation loss."""
        if self._best_state is None or self.best_step == self.step:
            return False
        self.model.vae.load_state_dict(self._best_state)
        return True

    def _early_stop(self, validation_loss: float | None) -> bool:
        """Early stopping reads the validation loss only (never the test loss), and only
        with enough validation records (`early_stopping_min_records`)."""
        if validation_loss is None or not self.early_stopping_acts:
            return False
        if validation_loss < self.best_test - 1e-6:
            self.best_test, self.best_step, self.bad_evals = validation_loss, self.step, 0
            if self.cfg.early_stopping_restore_best:
                self._best_state = {k: v.detach().clone() for k, v in self.model.vae.state_dict().items()}
            return False
        self.bad_evals += 1
        return self.bad_evals >= self.cfg.early_stopping_patience

    @property
    def early_stopping_acts(self) -> bool:
        return bool(self.cfg.early_stopping_patience) and len(self.val_msgs) >= self.cfg.early_stopping_min_records

    def tune(self, wall_s: float) -> dict[str, Any] | None:
        """The step after training: the prior size and temperatures chosen on the validation
        split (synth/train/tune.py), or, with `[train.tune] enabled = false` or no
        validation split, the configured prior (`latent_prior_components`) as before."""
        t = self.cfg.tune
        tuned = None
        if t.enabled and self.val_msgs:
            from synth.train.calibrate import end_regime
            from synth.train.tune import tune_generation

            train_time = self.cfg.time_budget_s if self.budgeted else wall_s
            budget = min(t.max_seconds, t.max_fraction * train_time)
            tuned = tune_generation(self.model, self.train_msgs, self.val_msgs, t, budget,
                                    end_regime(self.cfg, self.model.reencode))
        prior_tuned = tuned is not None and "chosen" in (tuned.get("prior") or {})
        if not prior_tuned and self.model.config.latent_prior_components:
            self.model.fit_latent_prior(self.train_msgs, self.model.config.latent_prior_components,
                                        seed=self.cfg.seed)
        return tuned

    def finalize(self, wall_s: float) -> None:
        """Tune the generation settings on the validation split (or fit the configured
        prior), and write the final artifact with the resolved run config, the validation
        split, the tuning record and a summary."""
        self.tuning = self.tune(wall_s)
        validation = {**self.validation_info,
                      "early_stopping": {"patience": self.cfg.early_stopping_patience,
                                         "acted": self.early_stopping_acts,
                                         "best_validation_loss": None if math.isinf(self.best_test)
                                         else self.best_test, "best_step": self.best_step,
                                         "restored_best": self.restored_best}}
        self.model.metadata.update({
            "run_config": self.run_config.to_dict(),
            "validation": validation,
            "summary": {"steps": self.step, "wall_s": round(wall_s, 1), "device": str(self.device),
                        "train_records": self.source.n_train if self.source else len(self.train_msgs),
                        "validation_records": len(self.val_msgs),
                        "test_records": len(self.test_msgs), "last": self.last},
        })
        if self.tuning is not None:
            self.model.metadata["tuning"] = self.tuning
        else:
            self.model.metadata.pop("tuning", None)
        store.save(self.model, self.out_dir)

    # -- checkpoints -------------------------------------------------------------------------
    def _checkpoint_due(self, last_t: float) -> bool:
        """Every `checkpoint_every` steps, and at least every `checkpoint_seconds` of training, so
        that a kill loses little work however slow the steps are."""
        cfg = self.cfg
        by_steps = bool(cfg.checkpoint_every) and self.step % cfg.checkpoint_every == 0
        return by_steps or (cfg.checkpoint_seconds > 0 and time.time() - last_t >= cfg.checkpoint_seconds)

    def save_checkpoint(self) -> None:
        """Rank 0's (every rank holds the same state: parameters, optimizer, data order)."""
        if not self.dist.is_main:
            return
        meta_opt, tensors = ckpt.optimizer_state(self.opt)
        tensors["rng.torch"] = self.gen.get_state()
        tensors.update(self.augment.state())
        meta = {
            "step": self.step, "optimizer": meta_opt, "numpy_rng": self.sampler.rng.bit_generator.state,
            "order": self.sampler.order.tolist(), "pos": self.sampler.pos, "best_test": self.best_test,
            "bad_evals": self.bad_evals, "controller": self.controller.state_dict() if self.controller else None,
            "run_config": self.run_config.to_dict(), "elapsed_s": self.elapsed(), "best_step": self.best_step,
            "validation": self.validation_info,
        }
        self.model.metadata["run_config"] = self.run_config.to_dict()
        ckpt.save_checkpoint(self.out_dir / CHECKPOINT_DIR, self.model, meta, tensors)

    @classmethod
    def resume(cls, out_dir: str | Path, train_records: Sequence[Any], test_records: Sequence[Any] | None = None,
               cfg: TrainConfig | None = None, progress: bool = True,
               validation_records: Sequence[Any] | None = None,
               validation_info: dict[str, Any] | None = None, dist: Dist | None = None) -> "Trainer":
        """Continue from `out_dir/checkpoint`; `cfg` may extend `steps` (other fields should match).
        The number of processes may differ from the run that wrote it (rank 0 reads it and
        sends it to the others)."""
        out_dir = Path(out_dir)
        dist = dist or Dist()
        device = dist.device(resolve_device(cfg.device if cfg else "auto"))
        where = out_dir / CHECKPOINT_DIR
        local = distributed.share_directory(where, dist) if dist.active else where
        try:
            model, meta, tensors = ckpt.load_checkpoint(local, device)
        finally:
            distributed.remove_shared(local, where)
        cfg = cfg or from_dict(TrainConfig, meta["run_config"]["train"])
        t = cls(model, cfg, train_records, test_records, out_dir, progress, RunConfig(model.config, cfg),
                validation_records=validation_records, validation_info=validation_info, dist=dist)
        ckpt.load_optimizer_state(t.opt, meta["optimizer"], tensors)
        t.gen.set_state(tensors["rng.torch"])
        t.sampler.rng.bit_generator.state = meta["numpy_rng"]
        t.sampler.order = np.asarray(meta["order"], dtype=np.int64)
        t.sampler.pos, t.step = meta["pos"], meta["step"]
        t.best_test, t.bad_evals = meta["best_test"], meta["bad_evals"]
        t.best_step = meta.get("best_step", 0)
        t.elapsed_before = float(meta.get("elapsed_s", 0.0))  # the time budget counts the whole run
        t.augment.load(tensors, t.device)
        if t.controller and meta.get("controller"):
            t.controller.load_state_dict(meta["controller"])
        if t.source is not None:  # the stream's place follows from the step
            t.source.seek(t.step * (cfg.batch_size // dist.world))
        return t


class _Log:
    """metrics.jsonl, plus TensorBoard when it is installed."""

    def __init__(self, out_dir: Path | None):
        self.file = None
        self.tb = None
        if out_dir is None:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        self.file = open(out_dir / METRICS_FILE, "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tensorboard"))
        except Exception:  # tensorboard is optional
            self.tb = None

    def write(self, step: int, row: dict[str, float]) -> None:
        if self.file:
            self.file.write(json.dumps({"step": step, **row}) + "\n")
            self.file.flush()
        if self.tb:
            for k, v in row.items():
                self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.tb:
            self.tb.close()


def _bar(enabled: bool, start: int, total: int | None):
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=start, disable=not enabled, unit="step", dynamic_ncols=True)

    def update_to(step: int, row: dict[str, float]) -> None:
        bar.update(step - bar.n)
        post = {k: f"{row[k]:.3f}" for k in ("loss", "kl", "beta") if k in row}
        for k, name in (("validation_loss", "val"), ("generated_loss", "gen")):
            if k in row:
                post[name] = f"{row[k]:.3f}"
        if "records_per_s" in row:
            post["rec_s"] = f"{row['records_per_s']:.0f}"
        bar.set_postfix(**post)

    bar.update_to = update_to  # type: ignore[attr-defined]
    return bar


def adam(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (with weight_decay 0, Adam step for step), fused where torch has the kernel.

    Why fused: the per-parameter loop took 11.6 ms a step on the CPU for the bundled
    model's 168 tensors, 7% of a training step at batch 256; the fused kernel 3.7 ms
    (docs/benchmarks.md, Performance). It is the same update, rounded in another order."""
    params = list(params)
    kw = dict(lr=cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
    try:
        return torch.optim.AdamW(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(params, **kw)
