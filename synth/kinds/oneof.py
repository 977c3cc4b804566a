"""Oneof: a case selector plus the chosen case's child.

Values: (case index, or -1 when unset; the case's value); the Batch holds `case` and
each case's child holds the instances of its case only. Module: `synth.nn.oneof.Oneof`
(a case embedding and softmax, and per case an FC that emits the child's embedding).
Cases past the recursion bound are Truncated children that are never chosen.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synth.batch import tensor
from synth.kinds.base import Kind, Node, kind_of, register, skew, write_field
from synth.kinds.truncated import compile_truncated
from synth.nn.oneof import Oneof
from synth.schema.tree import FieldNode, MessageNode


@dataclass
class OneofNode(Node):
    name: str
    cases: list[FieldNode]
    children: list[Node]


def compile_oneof(c, msg: MessageNode, name: str, scope: str) -> OneofNode:
    cases = [f for f in msg.fields if f.oneof == name]
    children = [compile_truncated(f) if f.truncated
                else c.value(f, f.path, scope, f"{msg.full_name}.{f.name}") for f in cases]
    key = c.module(f"{scope}.{name}|", lambda: Oneof(len(cases), c.cfg.latent_dim, c.cfg.celu_alpha))
    path = f"{msg.path}.{name}|" if msg.path else f"{name}|"
    return OneofNode(path, key, name, cases, children)


@register
class OneofKind(Kind):
    node_type = OneofNode

    def children(self, node):
        return list(node.children)

    # -- codec ---------------------------------------------------------------------
    def read(self, node, obj):
        which = obj.WhichOneof(node.name)
        if which is None:
            return (-1, None)
        idx = next(i for i, f in enumerate(node.cases) if f.name == which)
        return (idx, getattr(obj, which))

    def write(self, node, obj, value):
        if value[0] >= 0:
            write_field(obj, node.cases[value[0]], value[1])

    def extract(self, codec, node, data, values, batch, errors):
        data.case = np.fromiter((v[0] for v in values), dtype=np.int64, count=len(values))
        for k, child in enumerate(node.children):
            rows = np.nonzero(data.case == k)[0]
            codec.extract(child, [values[i][1] for i in rows], data.root[rows], batch, errors)

    def build(self, codec, node, data, batch):
        built = [iter(codec.build(c, batch)) for c in node.children]
        return [(int(k), next(built[k]) if k >= 0 else None) for k in data.case]

    # -- VAE ------------------------------------------------------------------------
    def encode(self, vae, node, data, batch, enc):
        kids = [vae.encode_node(c, batch, enc) for c in node.children]
        return vae.module_for(node).encode(tensor(data.case, vae.device), kids)

    def decode_train(self, vae, node, data, e, batch, enc, opts, losses, pending):
        m = vae.module_for(node)
        case = tensor(data.case, vae.device)
        opts.record_head(node.module, e, case)
        losses.add(node.path + "/case", m.loss(e, case, opts.temperature_of(node.module)), vae.root_of(batch, node))
        for k, child in enumerate(node.children):
            rows = (case == k).nonzero()[:, 0]
            e_k = m.emit[k](e[rows])
            losses.add(child.path + "/skew", skew(e_k, enc[child.path]), vae.root_of(batch, child))
            vae.decode_node(child, e_k, batch, enc, opts, losses, pending)

    def generate(self, vae, node, data, e, batch, g, pending):
        m = vae.module_for(node)
        blocked = [k for k, c in enumerate(node.children) if not kind_of(c).modelled]
        case = m.choose(e, g.temperature_of(node), g.greedy, g.rng(data.root), blocked)
        data.case = case.cpu().numpy()
        for k, child in enumerate(node.children):
            rows = (case == k).nonzero()[:, 0]
            vae.generate_node(child, m.emit[k](e[rows]), data.root[data.case == k], batch, g, pending)

    # -- inspect / where --------------------------------------------------------------
    def render(self, node):
        return f"Oneof({', '.join(f.name for f in node.cases)})"

    def where_fields(self, node):
        return []  # no single case to fix


