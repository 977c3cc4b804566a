"""ScalarTuple (Chou & Hathi 2019, appendix B.2): a message's joint float fields.

Values: k-tuples of floats, the message's singular float/double fields that are always
set and not in a oneof (`synth.schema.tree.is_joint_float`), modelled jointly with a
whitened multivariate loss. One node per message, its Tuple's last child (path
`<message>.#floats`); module `synth.nn.scalar_tuple.ScalarTuple` with k fields.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from synth.fitstats import JOINT
from synth.kinds.base import Node, non_finite, register
from synth.kinds.categorical import CategoricalNode
from synth.kinds.number import ScalarTupleKind, clamp_numbers, scalar_quantiles, scalar_tuple_config
from synth.nn.scalar_tuple import ScalarTuple
from synth.schema.tree import FieldNode, MessageNode


@dataclass
class ScalarsNode(Node):
    fields: list[FieldNode]
    # The categorical sibling the floats are modelled relative to (synth.anchor_stats), drawn
    # before them; None: plain whitening
    anchor: CategoricalNode | None = None


def compile_scalars(c, msg: MessageNode, joint: list[FieldNode], scope: str,
                    siblings: list[Node] = ()) -> ScalarsNode:
    stat = msg.full_name + JOINT
    mean, cov = c.stats.scalar_mean.get(stat), c.stats.scalar_cov.get(stat)
    cfg = scalar_tuple_config(c)
    grid, quantiles = c.stats.scalar_grid.get(stat), scalar_quantiles(c, stat)
    anchor, tables = _anchor(c, msg, stat, siblings, mean, cov)
    key = c.module(scope + JOINT, lambda: ScalarTuple(len(joint), cfg, mean, cov, grid, quantiles, tables))
    return ScalarsNode((msg.path + "." if msg.path else "") + "#floats", key, joint, anchor)


def _anchor(c, msg: MessageNode, stat: str, siblings: list[Node], mean, cov):
    """The categorical sibling named by the first usable anchor candidate of the fit
    statistics, with the floats' raw mean and covariance per class of it (escape last), or
    (None, None). Only the anchor used stays in the statistics (they go into the manifest)."""
    candidates = c.stats.scalar_anchors.get(stat)
    if not candidates or not c.cfg.scalar_anchor or mean is None or cov is None:
        return None, None
    by_key = {f"{msg.full_name}.{n.field.name}": n for n in siblings if isinstance(n, CategoricalNode)}
    for cand in candidates:
        node = by_key.get(cand["field"])
        if node is not None:
            c.stats.scalar_anchors[stat] = [cand]
            return node, class_moments(cand, node.classes, np.asarray(mean), np.asarray(cov))
    return None, None


def class_moments(cand: dict, classes: list, mean: np.ndarray, cov: np.ndarray) -> tuple[list, list]:
    """Raw mean (C+1, k) and covariance (C+1, k, k) of the floats per class, the escape
    last. A class's covariance is shrunk towards the pooled within-class one by 2k + 2 rows'
    worth, so that a class seen twice gets a usable spread; values the statistics do not
    hold (seen once) and the escape get the floats' overall moments."""
    k = len(mean)
    index = {v: i for i, v in enumerate(cand["values"])}
    counts = np.asarray(cand["counts"], dtype=np.float64)
    means, covs = np.asarray(cand["means"]).reshape(-1, k), np.asarray(cand["covs"]).reshape(-1, k, k)
    within = np.asarray(cand["within"]).reshape(k, k)
    shrink = 2.0 * k + 2.0
    out_mean, out_cov = np.tile(mean, (len(classes) + 1, 1)), np.tile(cov.reshape(k, k), (len(classes) + 1, 1, 1))
    for j, v in enumerate(classes):
        i = index.get(v)
        if i is not None:
            dof = counts[i] - 1.0
            out_mean[j] = means[i]
            out_cov[j] = (dof * covs[i] + shrink * within) / (dof + shrink)
    return out_mean.tolist(), out_cov.tolist()


ANCHOR = "#anchor"  # enc key suffix: anchor classes chosen for a condition's scoring


@register
class ScalarsKind(ScalarTupleKind):
    node_type = ScalarsNode

    def read(self, node, obj):
        return tuple(getattr(obj, f.name) for f in node.fields)

    def write(self, node, obj, value):
        for f, v in zip(node.fields, value):
            setattr(obj, f.name, v)

    def plain_columns(self, node, values):
        columns = list(zip(*values)) if values else [()] * len(node.fields)
        return [(f.name, col) for f, col in zip(node.fields, columns)]

    def extract(self, codec, node, data, values, batch, errors):
        data.values = np.asarray(values, dtype=np.float64).reshape(len(values), len(node.fields))
        errors += non_finite(node, data, ~np.isfinite(data.values).all(1))

    def build(self, codec, node, data, batch):
        values = np.asarray(data.values, dtype=np.float64).reshape(-1, len(node.fields))
        return list(zip(*(clamp_numbers(f, values[:, j]) for j, f in enumerate(node.fields))))

    def anchor_classes(self, vae, node, batch, enc) -> torch.Tensor | None:
        """Each row's class of the anchor: the label a condition's scoring took for it
        (synth/kinds/tuple.py), else the anchor's values in the batch (true when training,
        drawn when generating)."""
        if node.anchor is None:
            return None
        chosen = enc.get(node.path + ANCHOR) if enc is not None else None
        if chosen is not None:
            return chosen
        return torch.as_tensor(np.asarray(batch.nodes[node.anchor.path].values), dtype=torch.long,
                               device=vae.device)

    def generate(self, vae, node, data, e, batch, g, pending):
        data.values = self.decoded(vae, node, e, g, data.root, self.anchor_classes(vae, node, batch, None))

    def render(self, node):
        return f"ScalarTuple({', '.join(f.name for f in node.fields)})"

    def where_fields(self, node):
        return list(node.fields)
