"""The VAE over a compiled plan (paper sections 2.1-2.4, appendix B.4).

`forward(batch)` encodes bottom-up to mu, draws z = mu + sigma(mu) * eps with the
record's standard deviation network (multiscale: one per level), and decodes
top-down with scheduled sampling, returning per-record loss terms by name:
`<path>/recon`, `<path>/skew`, `<path>/presence|length|case`, and `kl` (per latent
dimension). Weighting them (beta, levels, augmentation) is the trainer's job.

`generate(z)` decodes latents into a Batch for the codec. String leaves of every
field that shares a StringLiteral run in one batched call, in training and in
generation.

This module is the driver (recursion order, latents, deferred batched work); what
each node kind does in the encoder, the decoder's loss and generation is its
`synth.kinds` module's `Kind`, looked up once per node.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from synth.batch import Batch, NodeData, tensor
from synth.closed_pairs import allowed_rows
from synth.kinds import kind_of
from synth.latent_prior import Mixture
from synth.model_config import ModelConfig
from synth.nn.draws import RowStreams
from synth.nn.stdnet import StdNet
from synth.plan import Node, TupleNode, walk


@dataclass
class DecodeOptions:
    """How the decoder is driven in one forward pass (the trainer's schedules set these)."""

    p_truth_tuple: float = 1.0  # Tuple/Sequence scheduled sampling: P(feed the encoder's embedding)
    p_truth_string: float = 1.0  # String scheduled sampling: P(feed the true character)
    # Sequence decoders' P(feed the encoder's embedding); None: p_truth_tuple's
    p_truth_sequence: float | None = None
    # P(feed the encoder's embedding) for the leaf children of a Tuple (numbers, strings,
    # categories: what generation re-encodes under "reencoded" feedback); None: p_truth_tuple's
    p_truth_leaf: float | None = None
    levels: torch.Tensor | None = None  # (B,) std-network index per record (multiscale)
    sample_latent: bool = True  # False: decode from mu (deterministic evaluation)
    generator: torch.Generator | None = None
    # (B, D) latent noise chosen by the caller instead of drawn here: data-parallel training
    # draws the global batch's noise on every rank and passes each rank its rows
    noise: torch.Tensor | None = None
    fixed_paths: frozenset[str] = frozenset()  # Tuple children always fed their true embedding
    # Training on numbers on a grid (synth.value_grid): the step's noise key, and the global
    # batch position of each record of the batch (None: 0..B-1, one process)
    noise_key: int | None = None
    positions: np.ndarray | None = None
    # ScalarTuple path -> (member indices, values (k_fixed,)): score only those members
    partial: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    # When given, the categorical, number, presence and oneof heads append (embeddings, targets) under their
    # module key: what the leaf temperatures are fitted on (synth/train/calibrate.py)
    heads: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] | None = None
    # module key -> the temperature its head's loss is scored at (ModelConfig.leaf_temperatures:
    # the spread the validation split supports); empty in training, which fits the heads
    leaf_temperatures: Mapping[str, float] = field(default_factory=dict)

    @property
    def sequence_truth(self) -> float:
        return self.p_truth_tuple if self.p_truth_sequence is None else self.p_truth_sequence

    @property
    def leaf_truth(self) -> float:
        return self.p_truth_tuple if self.p_truth_leaf is None else self.p_truth_leaf

    def temperature_of(self, module: str) -> float:
        return self.leaf_temperatures.get(module, 1.0)

    def record_head(self, module: str, emb: torch.Tensor, target: torch.Tensor) -> None:
        if self.heads is not None:
            self.heads.setdefault(module, []).append((emb.detach(), target.detach()))


@dataclass
class Forward:
    z: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor
    terms: dict[str, torch.Tensor]


@dataclass
class Losses:
    """Per-record (B,) loss terms by name, accumulated over a node's instances."""

    size: int
    device: torch.device
    terms: dict[str, torch.Tensor] = field(default_factory=dict)

    def add(self, name: str, per_instance: torch.Tensor, root: torch.Tensor) -> None:
        acc = self.terms.get(name)
        if acc is None:
            acc = torch.zeros(self.size, device=self.device)
        self.terms[name] = acc.index_add(0, root, per_instance.to(acc.dtype))


class RecordVAE(nn.Module):
    def __init__(self, plan: TupleNode, modules: nn.ModuleDict, cfg: ModelConfig):
        super().__init__()
        self.plan, self.cfg = plan, cfg
        self.nodes = modules
        self.kinds = list(dict.fromkeys(kind_of(n) for n in walk(plan)))  # those in the plan, once each
        d = cfg.latent_dim
        self.std_nets = nn.ModuleList(
            StdNet(d, cfg.std_layers, cfg.std_bias_init, cfg.celu_alpha) for _ in range(cfg.n_levels))
        # Moving first and second moments of the sampled training latents (section 2.4),
        # bias-corrected like Adam's so that generation works from the first steps.
        self.register_buffer("latent_m1", torch.zeros(d, dtype=torch.float64))
        self.register_buffer("latent_m2", torch.zeros(d, d, dtype=torch.float64))
        self.register_buffer("latent_steps", torch.zeros((), dtype=torch.float64))
        # Optional mixture prior for generation (synth.latent_prior); empty until fitted.
        self.register_buffer("prior_weights", torch.zeros(0))
        self.register_buffer("prior_means", torch.zeros(0, d))
        self.register_buffer("prior_stds", torch.zeros(0, d))
        self.register_buffer("prior_basis", torch.zeros(0, d))  # (D, D) when the components are rotated
        self.register_buffer("prior_center", torch.zeros(0))

    @property
    def device(self) -> torch.device:
        return self.latent_m1.device

    def module_for(self, node: Node) -> nn.Module:
        return self.nodes[node.module]

    # -- encoder -----------------------------------------------------------------------
    def encode(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """-> mu (B, D) and every node's encoder embedding (n_node, D) by path."""
        enc: dict[str, torch.Tensor] = {}
        for kind in self.kinds:
            kind.prepare_encode(self, batch, enc)  # batch-level work (the string packs)
        mu = self.encode_node(self.plan, batch, enc)
        return mu, enc

    def encode_node(self, node: Node, batch: Batch, enc: dict) -> torch.Tensor:
        """A node's encoder embedding (n_node, D), children first; stored in enc by path."""
        out = kind_of(node).encode(self, node, batch.nodes[node.path], batch, enc)
        enc[node.path] = out
        return out

    # -- latent --------------------------------------------------------------------------
    def sigma(self, mu: torch.Tensor, levels: torch.Tensor | None = None) -> torch.Tensor:
        if levels is None or len(self.std_nets) == 1:
            return self.std_nets[0](mu)
        out = torch.empty_like(mu)
        for i, net in enumerate(self.std_nets):
            rows = (levels == i).nonzero()[:, 0]
            if rows.numel():
                out[rows] = net(mu[rows]).to(out.dtype)  # (dtypes differ under autocast)
        return out

    @staticmethod
    def kl_per_dim(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, sigma^2) || N(0, I)) / D per record: the paper's latent loss."""
        kl = 0.5 * (mu**2 + sigma**2 - 1.0) - torch.log(sigma)
        return kl.mean(1)

    @torch.no_grad()
    def update_latent_stats(self, z: torch.Tensor) -> None:
        z = z.detach().to(torch.float64)
        self.apply_latent_moments(z.mean(0), (z.T @ z) / z.shape[0])

    @torch.no_grad()
    def apply_latent_moments(self, mean: torch.Tensor, second: torch.Tensor) -> None:
        """One moving-average step from a batch's mean (D,) and second moment (D, D), float64
        (data-parallel training passes the global batch's, so every rank keeps the same)."""
        a = self.cfg.latent_stats_decay
        self.latent_m1.mul_(a).add_((1 - a) * mean)
        self.latent_m2.mul_(a).add_((1 - a) * second)
        self.latent_steps.add_(1)

    def set_prior(self, mix: Mixture | None) -> None:
        """Install a fitted mixture prior, or None for the single Gaussian (shapes may differ
        from the current buffers)."""
        dev, d = self.latent_m1.device, self.cfg.latent_dim
        if mix is None:
            mix = Mixture(torch.zeros(0), torch.zeros(0, d), torch.zeros(0, d))
        self.prior_weights = mix.weights.float().to(dev)
        self.prior_means = mix.means.float().to(dev)
        self.prior_stds = mix.stds.float().to(dev)
        self.prior_basis = (torch.zeros(0, d) if mix.basis is None else mix.basis).float().to(dev)
        self.prior_center = (torch.zeros(0) if mix.center is None else mix.center).float().to(dev)

    def prior(self) -> Mixture | None:
        """The fitted mixture prior, or None when generation uses the single Gaussian."""
        return _mixture(self.prior_weights, self.prior_means, self.prior_stds, self.prior_basis, self.prior_center)

    def load_prior(self, state: dict[str, torch.Tensor]) -> None:
        """Size the prior buffers for a saved state dict before it is loaded. Artifacts
        written before rotated components have no basis: their components are axis-aligned."""
        d = self.cfg.latent_dim
        state.setdefault("prior_basis", torch.zeros(0, d))
        state.setdefault("prior_center", torch.zeros(0))
        self.set_prior(_mixture(*(state[f"prior_{k}"] for k in ("weights", "means", "stds", "basis", "center"))))

    def latent_distribution(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (D,) and covariance (D, D) to sample z from; N(0, I) before any training."""
        d = self.cfg.latent_dim
        if float(self.latent_steps) == 0:
            return torch.zeros(d, dtype=torch.float64, device=self.device), torch.eye(
                d, dtype=torch.float64, device=self.device)
        corr = 1 - self.cfg.latent_stats_decay ** float(self.latent_steps)
        m1, m2 = self.latent_m1 / corr, self.latent_m2 / corr
        cov = m2 - torch.outer(m1, m1)
        return m1, (cov + cov.T) / 2

    # -- training forward ------------------------------------------------------------------
    def forward(self, batch: Batch, opts: DecodeOptions = DecodeOptions()) -> "Forward":
        """-> latents (mu, sigma, sampled z; each (B, D)) and per-record loss terms {name: (B,)}."""
        mu, enc = self.encode(batch)
        sigma = self.sigma(mu, opts.levels)
        if opts.sample_latent:
            eps = opts.noise if opts.noise is not None else torch.randn(
                mu.shape, generator=opts.generator, device=mu.device)
            z = mu + sigma * eps
        else:
            z = mu
        losses = Losses(batch.size, mu.device)
        losses.terms["kl"] = self.kl_per_dim(mu, sigma)
        self.decode_losses(batch, z, enc, opts, losses)
        return Forward(z, mu, sigma, losses.terms)

    def root_of(self, batch: Batch, node: Node) -> torch.Tensor:
        """The record index (n_node,) of each of a node's instances."""
        return tensor(batch.nodes[node.path].root, self.device)

    def decode_losses(self, batch: Batch, z: torch.Tensor, enc: dict, opts: DecodeOptions,
                      losses: Losses) -> None:
        pending: dict[str, list[tuple[Node, torch.Tensor]]] = {}
        self.decode_node(self.plan, z, batch, enc, opts, losses, pending)
        for module, items in pending.items():  # deferred batched work, one call per module
            kind_of(items[0][0]).flush_losses(self, module, items, batch, opts, losses)

    def decode_node(self, node: Node, e: torch.Tensor, batch: Batch, enc: dict,
                    opts: DecodeOptions, losses: Losses, pending: dict) -> None:
        """Add a node's loss terms, given the embedding e (n_node, D) its parent emitted."""
        kind_of(node).decode_train(self, node, batch.nodes[node.path], e, batch, enc, opts, losses, pending)

    def reconstruction_terms(self, batch: Batch, z: torch.Tensor, enc: dict,
                             leaf_temperatures: Mapping[str, float] | None = None) -> torch.Tensor:
        """-log p(record | z) by field, (T, B), differentiable in z: the training loss's
        reconstruction terms (all but the KL and the skews), with each decoder fed what
        generation feeds it when it draws the record's own values: a Tuple's leaf children
        are teacher-forced when generation re-encodes drawn values (the true ones, then);
        its other children and sequences, which feed back their emitted embeddings, are not.
        `leaf_temperatures`: module key -> the temperature that head is scored at."""
        losses = Losses(batch.size, z.device)
        leaf_truth = 1.0 if self.cfg.generation_feedback == "reencoded" else 0.0
        opts = DecodeOptions(0.0, 1.0, p_truth_sequence=0.0, p_truth_leaf=leaf_truth, sample_latent=False,
                             leaf_temperatures=dict(leaf_temperatures or {}))
        self.decode_losses(batch, z, enc, opts, losses)
        terms = [v for k, v in sorted(losses.terms.items()) if k != "kl" and not k.endswith("/skew")]
        return torch.stack(terms) if terms else torch.zeros(0, batch.size, device=z.device)

    # -- generation ------------------------------------------------------------------------
    @torch.no_grad()
    def fixed_loglik(self, batch: Batch, z: torch.Tensor, paths: frozenset[str],
                     partial: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
        """log p(fixed values | z) per row (B,): the decoder's likelihood of the fixed fields.

        `batch` holds the conditioning record once per row of z. The fixed Tuple
        children are teacher-forced; everything else is decoded freely. `partial`: the
        ScalarTuples with only some members fixed, scored by those members' marginal.
        """
        mu, enc = self.encode(batch)
        losses = Losses(batch.size, z.device)
        partial = partial or {}
        self.decode_losses(batch, z, enc, DecodeOptions(0.0, 1.0, fixed_paths=paths, partial=partial), losses)
        paths = paths | frozenset(partial)
        total = torch.zeros(batch.size, device=z.device)
        for name, v in losses.terms.items():
            path, _, kind = name.rpartition("/")
            if kind != "skew" and any(path == p or path.startswith(p) and path[len(p)] in ".?[{#"
                                      for p in paths):
                total = total + v
        return -total

    @torch.no_grad()
    def generate(self, z: torch.Tensor, temperature: float = 1.0, greedy: bool = False,
                 generator: torch.Generator | None = None,
                 fixed: dict[str, torch.Tensor] | None = None,
                 force_present: frozenset[str] = frozenset(), reencode: bool = False,
                 partial: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                 streams: RowStreams | None = None, leaf_temperatures: dict[str, float] | None = None,
                 fixed_values: dict[str, Any] | None = None,
                 closed: dict[str, list[tuple[str, torch.Tensor]]] | None = None) -> Batch:
        """Decode latents (B, D) into a Batch of values (numpy) for the codec.

        fixed: node path -> encoder embeddings (B, D) of values fixed by a condition;
        the Tuple decoder is teacher-forced with them (conditional sampling).
        fixed_values: node path -> those values as the codec holds them (the conditioning
        record's batch values), for the nodes generated after them (a label's class).
        streams: one generator per request when z holds several requests' rows
        (synth.nn.draws); `generator` is then unused.
        leaf_temperatures: module key -> multiplier of `temperature` for that module's draws
        (ModelConfig.leaf_temperatures).
        closed: a label's path -> the closed pairs that restrict its draws
        (synth.closed_pairs.allowed_tables; ModelConfig.closed_pairs).
        """
        batch = Batch(z.shape[0])
        pending: dict[str, list[tuple[Node, torch.Tensor]]] = {}
        g = _Gen(temperature, greedy, generator, fixed or {}, force_present, reencode, partial or {}, streams,
                 leaf_temperatures or {}, fixed_values or {}, closed or {})
        self.generate_node(self.plan, z, np.arange(z.shape[0]), batch, g, pending)
        for module, items in pending.items():  # deferred batched work, one call per module
            kind_of(items[0][0]).flush_generate(self, module, items, batch, g)
        return batch

    def generate_node(self, node: Node, e: torch.Tensor, root: np.ndarray, batch: Batch, g: "_Gen",
                      pending: dict | None) -> None:
        """Draw a node's values from the embeddings e (n_node, D) its parent emitted."""
        data = NodeData(e.shape[0], root)
        batch.nodes[node.path] = data
        kind_of(node).generate(self, node, data, e, batch, g, pending)


@dataclass
class _Gen:
    temperature: float
    greedy: bool
    generator: torch.Generator | None
    fixed: dict[str, torch.Tensor]
    force_present: frozenset[str]
    reencode: bool = False
    partial: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    streams: RowStreams | None = None
    leaf_temperatures: dict[str, float] = field(default_factory=dict)
    fixed_values: dict[str, Any] = field(default_factory=dict)
    # a label's path -> the closed pairs that restrict it (synth.closed_pairs.allowed_tables)
    closed: dict[str, list[tuple[str, torch.Tensor]]] = field(default_factory=dict)

    def allowed(self, node: Node, batch: Batch) -> torch.Tensor | None:
        """The classes a label may take in each row, given the labels drawn before it; None: any."""
        tables = self.closed.get(node.path)
        return allowed_rows(tables, batch) if tables else None

    def temperature_of(self, node: Node) -> float:
        """The temperature of a node's draws: the call's, times its module's calibration."""
        return self.temperature * self.leaf_temperatures.get(node.module, 1.0)

    def rng(self, root: np.ndarray):
        """What a node's random draws come from: its instances' request streams (their
        records are `root`), or the one generator."""
        return self.streams.bind(root) if self.streams is not None else self.generator


def _mixture(weights: torch.Tensor, means: torch.Tensor, stds: torch.Tensor, basis: torch.Tensor,
             center: torch.Tensor) -> Mixture | None:
    """The prior buffers as a Mixture; empty buffers mean none (weights) or axis-aligned (basis)."""
    if not weights.numel():
        return None
    rotated = basis.numel() > 0
    return Mixture(weights, means, stds, basis if rotated else None, center if rotated else None)
