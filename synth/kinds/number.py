"""Numbers: a ScalarTuple of one (Chou & Hathi 2019, appendix B.2) for one int or float.

Values: one number per instance, for ints modelled as numbers (many distinct values,
or `field_overrides` "number") and floats that are not joint (they have presence, are
repeated or sit in a oneof). Module: `synth.nn.scalar_tuple.ScalarTuple` with k=1,
keyed per field. `ScalarTupleKind` holds the VAE side shared with the joint floats
(`synth.kinds.scalars`): whitening, the reconstruction loss, decoding.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from synth.batch import tensor
from synth.kinds.base import Kind, Node, non_finite, register
from synth.nn.scalar_tuple import ScalarTuple, ScalarTupleConfig
from synth.schema.tree import FLOAT32_MAX, FieldNode
from synth.value_grid import dequantization_noise


@dataclass
class NumberNode(Node):
    field: FieldNode
    # Set on the escape of a categorical int (synth.kinds.categorical): the min and max of
    # the field's training values, which generated values are clamped to.
    bounds: tuple[int, int] | None = None


def clamp_number(f: FieldNode, x: float) -> int | float:
    """Round/clamp a generated number so that it fits the field's type."""
    return clamp_numbers(f, np.array([x]))[0]


def clamp_numbers(f: FieldNode, x: np.ndarray) -> list:
    """Generated numbers rounded/clamped to fit the field's type, as Python ints or floats:
    ints rounded half to even and clamped to the type's range (NaN -> 0), floats with NaN
    -> 0.0 and `float` fields clamped to float32's range."""
    x = np.asarray(x, dtype=np.float64)
    if f.int_range is not None:
        lo, hi = f.int_range
        # NaN -> 0, +-inf -> the range's ends; np.rint rounds half to even, like round(). The
        # ends are compared as Python ints: 2**63 - 1 has no float64.
        r = np.rint(np.nan_to_num(x, nan=0.0, posinf=np.finfo(np.float64).max, neginf=np.finfo(np.float64).min))
        return [lo if v < lo else hi if v > hi else int(v) for v in r.tolist()]
    x = np.where(np.isnan(x), 0.0, x)
    if f.type == "float":
        x = np.clip(x, -FLOAT32_MAX, FLOAT32_MAX)
    return x.tolist()


def scalar_tuple_config(c) -> ScalarTupleConfig:
    return ScalarTupleConfig(c.cfg.latent_dim, c.cfg.whitening_decay, c.cfg.whitening_eps, c.cfg.scalar_likelihood,
                             c.cfg.scalar_tail)


def scalar_quantiles(c, stat_key: str) -> list[list[float]] | None:
    """The members' quantile functions when the number transform is on (none in artifacts
    from before it: they keep raw values)."""
    return c.stats.scalar_quantiles.get(stat_key) if c.cfg.number_transform == "normal_scores" else None


class ScalarTupleKind(Kind):
    """The VAE side of the kinds whose module is a ScalarTuple: values (n, k), whitened."""

    leaf = True

    def encode(self, vae, node, data, batch, enc):
        m = vae.module_for(node)
        x = tensor(data.values, vae.device).reshape(data.n, m.k)
        if vae.training:  # generated variants must not move the data's whitening statistics
            real = batch.real_rows(data.root)
            m.update_stats(x if real.all() else x[tensor(real, vae.device)])
        enc[node.path + "#w"] = xw = m.whiten(x)
        if vae.training and m.has_grid or m.anchored:  # the loss's target is made from x (decode_train)
            enc[node.path + "#x"] = x
        return m.encode(xw)

    def anchor_classes(self, vae, node, batch, enc) -> torch.Tensor | None:
        """Each row's class of the label the values are modelled relative to (joint floats
        only: synth.kinds.scalars), or None."""
        return None

    def decode_train(self, vae, node, data, e, batch, enc, opts, losses, pending):
        m = vae.module_for(node)
        cls = self.anchor_classes(vae, node, batch, enc)
        if node.path in opts.partial:  # a condition fixes some members: their marginal likelihood
            idx, values = opts.partial[node.path]
            loss = m.marginal_nll(e, idx, values.expand(e.shape[0], -1), cls)
        else:
            raw = enc.get(node.path + "#x")
            if raw is not None and m.has_grid and opts.noise_key is not None:  # the target is dequantized
                positions = opts.positions if opts.positions is not None else np.arange(batch.size)
                u = dequantization_noise(opts.noise_key, node.path, positions, data.root, m.k)
                target = m.target(m.dequantize(raw, torch.from_numpy(u)), cls)
            elif cls is None:
                target = enc[node.path + "#w"]  # whitened once, by encode
            else:
                target = m.anchored_target(raw, cls)
            opts.record_head(node.module, e, target)
            loss = m.loss(e, target, opts.temperature_of(node.module))
            if cls is not None:  # the NLL of the scores, whatever the row's class
                loss = loss + m.anchor_logdet(cls)
        losses.add(node.path + "/recon", loss, vae.root_of(batch, node))

    def decoded(self, vae, node, e, g, root: np.ndarray, cls: torch.Tensor | None = None) -> np.ndarray:
        m = vae.module_for(node)
        if node.path in g.partial:  # some members fixed: draw the others given them
            idx, values = g.partial[node.path]
            out = m.decode_given(e, idx, values.expand(e.shape[0], -1), g.temperature_of(node), g.greedy,
                                 g.generator, cls)
            return m.snap(out, keep=idx).cpu().numpy()
        return m.snap(m.decode(e, g.temperature_of(node), g.greedy, g.rng(root), cls)).cpu().numpy()

    def encode_values(self, vae, node, data, batch):
        m = vae.module_for(node)
        return m.encode(m.whiten(tensor(np.asarray(data.values), vae.device).reshape(data.n, m.k)))

    def order_key(self, node):
        return (1, 0)


@register
class NumberKind(ScalarTupleKind):
    node_type = NumberNode
    priority = -100  # the fallback: every scalar value no other kind claims

    def compile_value(self, c, f, path, scope, stat_key):
        mean = c.stats.scalar_mean.get(stat_key)
        cov = c.stats.scalar_cov.get(stat_key)
        cfg = scalar_tuple_config(c)
        grid, quantiles = c.stats.scalar_grid.get(stat_key), scalar_quantiles(c, stat_key)
        key = c.module(f"{scope}.{f.name}", lambda: ScalarTuple(1, cfg, mean, cov, grid, quantiles))
        return NumberNode(path, key, f)

    def extract(self, codec, node, data, values, batch, errors):
        data.values = np.asarray([float(v) for v in values], dtype=np.float64)
        errors += non_finite(node, data, ~np.isfinite(data.values))

    def build(self, codec, node, data, batch):
        return clamp_numbers(node.field, data.values)

    def generate(self, vae, node, data, e, batch, g, pending):
        values = self.decoded(vae, node, e, g, data.root)[:, 0]
        if node.bounds is not None:
            # An escape's Gaussian is fitted to the few rare values only (briefly trained, to
            # almost none), so its draws can land far outside the data (a flight number of -277).
            values = np.clip(values, *node.bounds)
        data.values = values

    def render(self, node):
        return f"Scalar({node.field.type})"
