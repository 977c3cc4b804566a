"""The Trainer: nanoGPT's straight-line step inside a class (paper sections 2.4-6; docs/training.md).

    schedules -> batch (+ augmented variants) -> forward -> objective -> backward
    -> clip -> step -> latent statistics -> log / evaluate / checkpoint

Per-record betas make multiscale VAE (section 6) one process: record i of a batch
uses std network and beta level (i + step) mod n_levels. `.item()` is called only at
log time. Checkpoints (atomic, every `checkpoint_every` steps, and on Ctrl-C or a
stop request) hold everything needed to resume exactly.
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
from synth.train.config import RunConfig, TrainConfig
from synth.train.objectives import PIController, ae_pretraining, latent_terms
from synth.train.schedules import learning_rate, level_betas, p_truth
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
                 progress: bool = True, run_config: RunConfig | None = None):
        self.model, self.cfg = model, cfg
        self.device = resolve_device(cfg.device)
        model.to(self.device)
        self.train_msgs = model.messages(train_records)
        self.test_msgs = model.messages(test_records) if test_records else []
        if not self.train_msgs:
            from synth.errors import DataError
            raise DataError("no training records")
        self.out_dir = Path(out_dir) if out_dir else None
        self.progress = progress
        self.run_config = run_config or RunConfig(model.config, cfg)
        self.opt = torch.optim.Adam(model.vae.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.order = np.empty(0, dtype=np.int64)
        self.pos = 0
        self.step = 0
        self.augment = AugmentedLatents(cfg.augment.n_augmented, cfg.augment.p_sampled)
        self.controller = PIController(cfg.objective) if cfg.objective.kind == "controlvae" else None
        self.best_test = math.inf
        self.bad_evals = 0
        self.last: dict[str, float] = {}

    # -- data ---------------------------------------------------------------------------
    def next_records(self) -> list:
        """The next batch of training messages: seeded shuffles, epoch after epoch."""
        out: list = []
        while len(out) < self.cfg.batch_size:
            if self.pos >= len(self.order):
                self.order = self.rng.permutation(len(self.train_msgs))
                self.pos = 0
            take = self.order[self.pos: self.pos + self.cfg.batch_size - len(out)]
            self.pos += len(take)
            out += [self.train_msgs[i] for i in take]
        return out

    # -- one step -------------------------------------------------------------------------
    def betas(self, step: int, n: int) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """Per-record beta (n,), per-record level (or None), and the scheduled beta_max."""
        beta_max = self.cfg.beta.at(step)
        if self.controller is not None:
            beta_max = self.controller.beta
        if ae_pretraining(self.cfg.objective, step):
            beta_max = 0.0
        n_levels = self.model.config.n_levels
        if n_levels == 1:
            return torch.full((n,), beta_max, device=self.device), None, beta_max
        levels = (torch.arange(n, device=self.device) + step) % n_levels
        table = torch.tensor(level_betas(beta_max, n_levels), device=self.device)
        return table[levels], levels, beta_max

    def train_step(self) -> dict[str, torch.Tensor]:
        cfg, step, vae = self.cfg, self.step, self.model.vae
        for group in self.opt.param_groups:
            group["lr"] = learning_rate(cfg.lr, cfg.lr_decay, cfg.lr_decay_steps, step)
        records = self.next_records()
        n_real = len(records)
        variants: list = []
        if self.augment.active():
            vae.eval()
            variants = self.model.decode(self.augment.z, generator=self.gen)
        vae.train()
        batch = self.model.codec.encode(records + variants)
        beta, levels, beta_max = self.betas(step, batch.size)
        pretrain = ae_pretraining(cfg.objective, step)
        opts = DecodeOptions(p_truth(cfg.tuple_sampling, step, cfg.ss_steps),
                             p_truth(cfg.string_sampling, step, cfg.ss_steps),
                             levels, sample_latent=not pretrain, generator=self.gen)
        out = vae(batch, opts)
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
        vae.update_latent_stats(out.z[:n_real])
        self._augment_after_step(out.z, n_real, step)
        if self.controller is not None and not pretrain:
            self.controller.update(float(lat["kl"][:n_real].mean().detach()))
        return {"loss": loss.detach(), "recon": recon[:n_real].mean().detach(),
                "kl": lat["kl"][:n_real].mean().detach(), "beta": torch.tensor(beta_max),
                "grad_norm": grad_norm.detach()}

    def _augment_after_step(self, z: torch.Tensor, n_real: int, step: int) -> None:
        a = self.cfg.augment
        if a.n_augmented <= 0 or step + 1 < a.gen_start_step:
            return
        if not self.augment.active():
            self.augment.start(z[:n_real], self.gen)
        else:
            self.augment.update(z[:n_real], z[n_real:], self.gen)

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Train, test and generated loss (section 4) at the current beta, on fixed subsets."""
        n = self.cfg.eval_records
        beta = self.cfg.beta.at(self.step)
        out = {"train_loss": self.model.loss(self.train_msgs[:n], beta, sample_latent=True).total}
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
        log = _Log(self.out_dir)
        bar = _bar(self.progress, self.step, cfg.steps)
        stopped = early = False
        window_t, window_n = time.time(), 0
        try:
            while self.step < cfg.steps:
                if should_stop is not None and should_stop():
                    stopped = True
                    break
                if cfg.time_budget_s and time.time() - t0 > cfg.time_budget_s:
                    break  # a budgeted run ends normally, with its final artifact
                stats = self.train_step()
                self.step += 1
                window_n += cfg.batch_size
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    now = time.time()
                    row = {k: float(v) for k, v in stats.items()}
                    row["records_per_s"] = window_n / max(now - window_t, 1e-9)
                    row["eta_s"] = (cfg.steps - self.step) * cfg.batch_size / max(row["records_per_s"], 1e-9)
                    window_t, window_n = now, 0
                    if cfg.eval_every and (self.step % cfg.eval_every == 0 or self.step == cfg.steps):
                        row.update(self.evaluate())
                        early = self._early_stop(row.get("test_loss"))
                    self.last = row
                    log.write(self.step, row)
                    bar.update_to(self.step, row)
                    if on_progress:
                        on_progress({"step": self.step, "steps": cfg.steps, **row})
                if self.out_dir and cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if early:
                    break
        except KeyboardInterrupt:
            stopped = True
        finally:
            bar.close()
            log.close()
        if self.out_dir:
            self.save_checkpoint()
        wall = time.time() - t0
        if self.out_dir and not stopped:
            self.finalize(wall)
        return TrainResult(self.step, stopped, early, dict(self.last), wall)

    def _early_stop(self, test_loss: float | None) -> bool:
        if test_loss is None or not self.cfg.early_stopping_patience:
            return False
        if test_loss < self.best_test - 1e-6:
            self.best_test, self.bad_evals = test_loss, 0
            return False
        self.bad_evals += 1
        return self.bad_evals >= self.cfg.early_stopping_patience

    def finalize(self, wall_s: float) -> None:
        """Fit the generation prior if asked, and write the final artifact with the resolved
        run config and a summary."""
        if self.model.config.latent_prior_components:
            self.model.fit_latent_prior(self.train_msgs, self.model.config.latent_prior_components,
                                        seed=self.cfg.seed)
        self.model.metadata.update({
            "run_config": self.run_config.to_dict(),
            "summary": {"steps": self.step, "wall_s": round(wall_s, 1), "device": str(self.device),
                        "train_records": len(self.train_msgs), "test_records": len(self.test_msgs),
                        "last": self.last},
        })
        store.save(self.model, self.out_dir)

    # -- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        meta_opt, tensors = ckpt.optimizer_state(self.opt)
        tensors["rng.torch"] = self.gen.get_state()
        tensors.update(self.augment.state())
        meta = {
            "step": self.step, "optimizer": meta_opt, "numpy_rng": self.rng.bit_generator.state,
            "order": self.order.tolist(), "pos": self.pos, "best_test": self.best_test,
            "bad_evals": self.bad_evals, "controller": self.controller.state_dict() if self.controller else None,
            "run_config": self.run_config.to_dict(),
        }
        self.model.metadata["run_config"] = self.run_config.to_dict()
        ckpt.save_checkpoint(self.out_dir / CHECKPOINT_DIR, self.model, meta, tensors)

    @classmethod
    def resume(cls, out_dir: str | Path, train_records: Sequence[Any], test_records: Sequence[Any] | None = None,
               cfg: TrainConfig | None = None, progress: bool = True) -> "Trainer":
        """Continue from `out_dir/checkpoint`; `cfg` may extend `steps` (other fields should match)."""
        out_dir = Path(out_dir)
        device = resolve_device(cfg.device if cfg else "auto")
        model, meta, tensors = ckpt.load_checkpoint(out_dir / CHECKPOINT_DIR, device)
        cfg = cfg or from_dict(TrainConfig, meta["run_config"]["train"])
        t = cls(model, cfg, train_records, test_records, out_dir, progress, RunConfig(model.config, cfg))
        ckpt.load_optimizer_state(t.opt, meta["optimizer"], tensors)
        t.gen.set_state(tensors["rng.torch"])
        t.rng.bit_generator.state = meta["numpy_rng"]
        t.order = np.asarray(meta["order"], dtype=np.int64)
        t.pos, t.step = meta["pos"], meta["step"]
        t.best_test, t.bad_evals = meta["best_test"], meta["bad_evals"]
        t.augment.load(tensors, t.device)
        if t.controller and meta.get("controller"):
            t.controller.load_state_dict(meta["controller"])
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


def _bar(enabled: bool, start: int, total: int):
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=start, disable=not enabled, unit="step", dynamic_ncols=True)

    def update_to(step: int, row: dict[str, float]) -> None:
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{row['loss']:.3f}", kl=f"{row['kl']:.3f}", beta=f"{row['beta']:.3f}",
                        rec_s=f"{row['records_per_s']:.0f}")

    bar.update_to = update_to  # type: ignore[attr-defined]
    return bar
