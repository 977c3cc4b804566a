"""The VAE over a compiled plan (paper sections 2.1-2.4, appendix B.4).

`forward(batch)` encodes bottom-up to mu, draws z = mu + sigma(mu) * eps with the
record's standard deviation network (multiscale: one per level), and decodes
top-down with scheduled sampling, returning per-record loss terms by name:
`<path>/recon`, `<path>/skew`, `<path>/presence|length|case`, and `kl` (per latent
dimension). Weighting them (beta, levels, augmentation) is the trainer's job.

`generate(z)` decodes latents into a Batch for the codec. String leaves of every
field that shares a StringLiteral run in one batched call, in training and in
generation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from synth.batch import Batch, NodeData, pack_strings, tensor
from synth.compiler import ModelConfig
from synth.nn.stdnet import StdNet
from synth.plan import (CategoricalNode, Node, NumberNode, OneofNode, PresenceNode, ScalarsNode,
                        SequenceNode, StringNode, TruncatedNode, TupleNode)


@dataclass
class DecodeOptions:
    """How the decoder is driven in one forward pass (the trainer's schedules set these)."""

    p_truth_tuple: float = 1.0  # Tuple/Sequence scheduled sampling: P(feed the encoder's embedding)
    p_truth_string: float = 1.0  # String scheduled sampling: P(feed the true character)
    levels: torch.Tensor | None = None  # (B,) std-network index per record (multiscale)
    sample_latent: bool = True  # False: decode from mu (deterministic evaluation)
    generator: torch.Generator | None = None
    fixed_paths: frozenset[str] = frozenset()  # Tuple children always fed their true embedding


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


def _skew(emitted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    return ((emitted - truth) ** 2).mean(1)  # (n,)


class RecordVAE(nn.Module):
    def __init__(self, plan: TupleNode, modules: nn.ModuleDict, cfg: ModelConfig):
        super().__init__()
        self.plan, self.cfg = plan, cfg
        self.nodes = modules
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

    @property
    def device(self) -> torch.device:
        return self.latent_m1.device

    def module_for(self, node: Node) -> nn.Module:
        return self.nodes[node.module]

    # -- encoder -----------------------------------------------------------------------
    def encode(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """-> mu (B, D) and every node's encoder embedding (n_node, D) by path."""
        enc: dict[str, torch.Tensor] = {}
        for module, pack in batch.strings.items():
            emb = self.nodes[module].encode(tensor(pack.tokens, self.device), tensor(pack.lengths, self.device))
            unsorted = torch.empty_like(emb)
            unsorted[tensor(pack.order, self.device)] = emb
            for path, (a, b) in pack.slices.items():
                enc[path] = unsorted[a:b]
        mu = self._encode(self.plan, batch, enc)
        return mu, enc

    def _encode(self, node: Node, batch: Batch, enc: dict) -> torch.Tensor:
        data = batch.nodes[node.path]
        m = self.module_for(node) if node.module else None
        if isinstance(node, TupleNode):
            out = m.encode([self._encode(c, batch, enc) for c in node.children], data.n)
        elif isinstance(node, (ScalarsNode, NumberNode)):
            x = tensor(data.values, self.device).reshape(data.n, m.k)
            if self.training:
                m.update_stats(x)
            enc[node.path + "#w"] = xw = m.whiten(x)
            out = m.encode(xw)
        elif isinstance(node, StringNode):
            out = enc[node.path]
        elif isinstance(node, CategoricalNode):
            out = m.encode(tensor(data.values, self.device))
        elif isinstance(node, PresenceNode):
            out = m.encode(tensor(data.present, self.device), self._encode(node.child, batch, enc))
        elif isinstance(node, SequenceNode):
            out = m.encode(self._encode(node.element, batch, enc), tensor(data.lengths, self.device))
        elif isinstance(node, OneofNode):
            kids = [self._encode(c, batch, enc) for c in node.children]
            out = m.encode(tensor(data.case, self.device), kids)
        elif isinstance(node, TruncatedNode):
            out = torch.zeros(data.n, self.cfg.latent_dim, device=self.device)
        else:
            raise TypeError(type(node))
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
                out[rows] = net(mu[rows])
        return out

    @staticmethod
    def kl_per_dim(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, sigma^2) || N(0, I)) / D per record: the paper's latent loss."""
        kl = 0.5 * (mu**2 + sigma**2 - 1.0) - torch.log(sigma)
        return kl.mean(1)

    @torch.no_grad()
    def update_latent_stats(self, z: torch.Tensor) -> None:
        z = z.detach().to(torch.float64)
        a = self.cfg.latent_stats_decay
        self.latent_m1.mul_(a).add_((1 - a) * z.mean(0))
        self.latent_m2.mul_(a).add_((1 - a) * (z.T @ z) / z.shape[0])
        self.latent_steps.add_(1)

    def set_prior(self, weights: torch.Tensor, means: torch.Tensor, stds: torch.Tensor) -> None:
        """Install a fitted mixture prior (shapes may differ from the current, empty, buffers)."""
        dev = self.latent_m1.device
        self.prior_weights = weights.float().to(dev)
        self.prior_means = means.float().to(dev)
        self.prior_stds = stds.float().to(dev)

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
            eps = torch.randn(mu.shape, generator=opts.generator, device=mu.device)
            z = mu + sigma * eps
        else:
            z = mu
        losses = Losses(batch.size, mu.device)
        losses.terms["kl"] = self.kl_per_dim(mu, sigma)
        self.decode_losses(batch, z, enc, opts, losses)
        return Forward(z, mu, sigma, losses.terms)

    def _root(self, batch: Batch, node: Node) -> torch.Tensor:
        return tensor(batch.nodes[node.path].root, self.device)

    def decode_losses(self, batch: Batch, z: torch.Tensor, enc: dict, opts: DecodeOptions,
                      losses: Losses) -> None:
        pending: dict[str, list[tuple[StringNode, torch.Tensor]]] = {}
        self._decode_train(self.plan, z, batch, enc, opts, losses, pending)
        for module, items in pending.items():
            pack = batch.strings[module]
            emb = torch.cat([e for _, e in items])  # concatenation order == pack.slices order
            order = tensor(pack.order, self.device)
            per = self.nodes[module].loss(emb[order], tensor(pack.tokens, self.device),
                                          tensor(pack.lengths, self.device), opts.p_truth_string,
                                          opts.generator)
            unsorted = torch.empty_like(per)
            unsorted[order] = per
            for node, _ in items:
                a, b = pack.slices[node.path]
                losses.add(node.path + "/recon", unsorted[a:b], self._root(batch, node))

    def _decode_train(self, node: Node, e: torch.Tensor, batch: Batch, enc: dict,
                      opts: DecodeOptions, losses: Losses, pending: dict) -> None:
        data = batch.nodes[node.path]
        m = self.module_for(node) if node.module else None
        root = lambda n: self._root(batch, n)  # noqa: E731
        if isinstance(node, TupleNode):
            truth = [enc[c.path] for c in node.children]
            fixed = {i: enc[c.path] for i, c in enumerate(node.children) if c.path in opts.fixed_paths}
            emitted = m.decode(e, truth, opts.p_truth_tuple, fixed=fixed, generator=opts.generator)
            for child, e_c in zip(node.children, emitted):
                if isinstance(child, TruncatedNode):
                    continue
                losses.add(child.path + "/skew", _skew(e_c, enc[child.path]), root(child))
                self._decode_train(child, e_c, batch, enc, opts, losses, pending)
        elif isinstance(node, (ScalarsNode, NumberNode)):
            losses.add(node.path + "/recon", m.loss(e, enc[node.path + "#w"]), root(node))
        elif isinstance(node, CategoricalNode):
            losses.add(node.path + "/recon", m.loss(e, tensor(data.values, self.device)), root(node))
        elif isinstance(node, StringNode):
            pending.setdefault(node.module, []).append((node, e))
        elif isinstance(node, PresenceNode):
            present = tensor(data.present, self.device)
            losses.add(node.path + "/presence", m.loss(e, present), root(node))
            self._decode_train(node.child, e[present], batch, enc, opts, losses, pending)
        elif isinstance(node, SequenceNode):
            el = node.element
            emitted, stop = m.decode_train(e, enc[el.path], tensor(data.lengths, self.device),
                                           opts.p_truth_tuple, opts.generator)
            losses.add(node.path + "/length", stop, root(node))
            losses.add(el.path + "/skew", _skew(emitted, enc[el.path]), root(el))
            self._decode_train(el, emitted, batch, enc, opts, losses, pending)
        elif isinstance(node, OneofNode):
            case = tensor(data.case, self.device)
            losses.add(node.path + "/case", m.loss(e, case), root(node))
            for k, child in enumerate(node.children):
                rows = (case == k).nonzero()[:, 0]
                e_k = m.emit[k](e[rows])
                losses.add(child.path + "/skew", _skew(e_k, enc[child.path]), root(child))
                self._decode_train(child, e_k, batch, enc, opts, losses, pending)

    # -- generation ------------------------------------------------------------------------
    @torch.no_grad()
    def fixed_loglik(self, batch: Batch, z: torch.Tensor, paths: frozenset[str]) -> torch.Tensor:
        """log p(fixed values | z) per row (B,): the decoder's likelihood of the fixed fields.

        `batch` holds the conditioning record once per row of z. The fixed Tuple
        children are teacher-forced; everything else is decoded freely.
        """
        mu, enc = self.encode(batch)
        losses = Losses(batch.size, z.device)
        self.decode_losses(batch, z, enc, DecodeOptions(0.0, 1.0, fixed_paths=paths), losses)
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
                 force_present: frozenset[str] = frozenset(), reencode: bool = False) -> Batch:
        """Decode latents (B, D) into a Batch of values (numpy) for the codec.

        fixed: node path -> encoder embeddings (B, D) of values fixed by a condition;
        the Tuple decoder is teacher-forced with them (conditional sampling).
        """
        batch = Batch(z.shape[0])
        pending: dict[str, list[tuple[StringNode, torch.Tensor]]] = {}
        g = _Gen(temperature, greedy, generator, fixed or {}, force_present, reencode)
        self._generate(self.plan, z, np.arange(z.shape[0]), batch, g, pending)
        for module, items in pending.items():
            emb = torch.cat([e for _, e in items])
            max_len = torch.cat([torch.full((e.shape[0],), n.max_len, dtype=torch.long) for n, e in items])
            strings = self.nodes[module].generate(emb, max_len, temperature, greedy, generator)
            start = 0
            for node, e in items:
                batch.nodes[node.path].values = strings[start: start + e.shape[0]]
                start += e.shape[0]
        return batch

    def _encode_leaf(self, node: Node, data: NodeData) -> torch.Tensor:
        """Encoder embeddings (n, D) of generated leaf values."""
        m = self.module_for(node)
        if isinstance(node, StringNode):
            pack = pack_strings({node.path: data.values})
            emb = m.encode(tensor(pack.tokens, self.device), tensor(pack.lengths, self.device))
            out = torch.empty_like(emb)
            out[tensor(pack.order, self.device)] = emb
            return out
        if isinstance(node, (ScalarsNode, NumberNode)):
            return m.encode(m.whiten(tensor(np.asarray(data.values), self.device).reshape(data.n, m.k)))
        return m.encode(tensor(np.asarray(data.values), self.device))

    def _generate(self, node: Node, e: torch.Tensor, root: np.ndarray, batch: Batch, g: "_Gen",
                  pending: dict) -> None:
        data = NodeData(e.shape[0], root)
        batch.nodes[node.path] = data
        m = self.module_for(node) if node.module else None
        if isinstance(node, TupleNode):
            h, x = m.start(e)
            for i, child in enumerate(node.children):
                h, e_c = m.step(i, x, h)
                if child.path in g.fixed:
                    x = g.fixed[child.path].expand(e.shape[0], -1)
                    self._generate(child, e_c, root, batch, g, pending)
                elif g.reencode and isinstance(child, LEAVES):
                    # feed back the embedding of the value actually drawn, not the emitted one
                    self._generate(child, e_c, root, batch, g, None)
                    x = self._encode_leaf(child, batch.nodes[child.path])
                else:
                    self._generate(child, e_c, root, batch, g, pending)
                    x = e_c
        elif isinstance(node, ScalarsNode):
            data.values = m.decode(e, g.temperature, g.greedy, g.generator).cpu().numpy()
        elif isinstance(node, NumberNode):
            data.values = m.decode(e, g.temperature, g.greedy, g.generator).cpu().numpy()[:, 0]
        elif isinstance(node, CategoricalNode):
            data.values = m.decode(e, g.temperature, g.greedy, g.generator).cpu().numpy()
        elif isinstance(node, StringNode):
            if pending is None:  # decode now (re-encoding feedback needs the value)
                max_len = torch.full((e.shape[0],), node.max_len, dtype=torch.long)
                data.values = m.generate(e, max_len, g.temperature, g.greedy, g.generator)
            else:
                pending.setdefault(node.module, []).append((node, e))
        elif isinstance(node, PresenceNode):
            present = m.decide(e, g.temperature, g.greedy, g.generator)
            if node.path in g.force_present:
                present = torch.ones_like(present)
            data.present = present.cpu().numpy()
            self._generate(node.child, e[present], root[data.present], batch, g, pending)
        elif isinstance(node, SequenceNode):
            emitted, lengths = m.decode_sample(e, node.max_len, g.temperature, g.greedy, g.generator)
            data.lengths = lengths.cpu().numpy()
            self._generate(node.element, emitted, np.repeat(root, data.lengths), batch, g, pending)
        elif isinstance(node, OneofNode):
            blocked = [k for k, c in enumerate(node.children) if isinstance(c, TruncatedNode)]
            case = m.choose(e, g.temperature, g.greedy, g.generator, blocked)
            data.case = case.cpu().numpy()
            for k, child in enumerate(node.children):
                rows = (case == k).nonzero()[:, 0]
                self._generate(child, m.emit[k](e[rows]), root[data.case == k], batch, g, pending)


LEAVES = (StringNode, ScalarsNode, NumberNode, CategoricalNode)


@dataclass
class _Gen:
    temperature: float
    greedy: bool
    generator: torch.Generator | None
    fixed: dict[str, torch.Tensor]
    force_present: frozenset[str]
    reencode: bool = False
