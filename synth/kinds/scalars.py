"""ScalarTuple (Chou & Hathi 2019, appendix B.2): a message's joint float fields.

Values: k-tuples of floats, the message's singular float/double fields that are always
set and not in a oneof (`synth.schema.tree.is_joint_float`), modelled jointly with a
whitened multivariate loss. One node per message, its Tuple's last child (path
`<message>.#floats`); module `synth.nn.scalar_tuple.ScalarTuple` with k fields.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synth.fitstats import JOINT
from synth.kinds.base import Node, non_finite, register
from synth.kinds.number import ScalarTupleKind, clamp_numbers, scalar_quantiles, scalar_tuple_config
from synth.nn.scalar_tuple import ScalarTuple
from synth.schema.tree import FieldNode, MessageNode


@dataclass
class ScalarsNode(Node):
    fields: list[FieldNode]


def compile_scalars(c, msg: MessageNode, joint: list[FieldNode], scope: str) -> ScalarsNode:
    stat = msg.full_name + JOINT
    mean, cov = c.stats.scalar_mean.get(stat), c.stats.scalar_cov.get(stat)
    cfg = scalar_tuple_config(c)
    grid, quantiles = c.stats.scalar_grid.get(stat), scalar_quantiles(c, stat)
    key = c.module(scope + JOINT, lambda: ScalarTuple(len(joint), cfg, mean, cov, grid, quantiles))
    return ScalarsNode((msg.path + "." if msg.path else "") + "#floats", key, joint)


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

    def generate(self, vae, node, data, e, batch, g, pending):
        data.values = self.decoded(vae, node, e, g, data.root)

    def render(self, node):
        return f"ScalarTuple({', '.join(f.name for f in node.fields)})"

    def where_fields(self, node):
        return list(node.fields)
