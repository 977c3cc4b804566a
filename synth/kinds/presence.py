"""Presence: a field that can be absent (proto2 optional, proto3 `optional`, messages).

Values: the child's value, or None when the field is unset; the Batch holds a
`present` mask and the child holds only the present instances. Module:
`synth.nn.presence.Presence` (a learned "absent" embedding and a presence logit).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from synth.batch import tensor
from synth.kinds.base import Kind, Node, kind_of, read_field, register, write_field
from synth.nn.presence import Presence
from synth.schema.tree import FieldNode


@dataclass
class PresenceNode(Node):
    field: FieldNode
    child: Node


def compile_presence(c, f: FieldNode, child: Node, key: str) -> PresenceNode:
    """Wrap the node of an optional field's value; `key` is the field's module key."""
    pres = c.module(key + "?", lambda: Presence(c.cfg.latent_dim))
    return PresenceNode(f.path, pres, f, child)


@register
class PresenceKind(Kind):
    node_type = PresenceNode

    def children(self, node):
        return [node.child]

    # -- codec ---------------------------------------------------------------------
    def read(self, node, obj):
        return read_field(obj, node.field, presence=True)

    def write(self, node, obj, value):
        if value is not None:
            write_field(obj, node.field, value)

    def extract(self, codec, node, data, values, batch, errors):
        data.present = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
        codec.extract(node.child, [v for v in values if v is not None], data.root[data.present], batch, errors)

    def build(self, codec, node, data, batch):
        child = iter(codec.build(node.child, batch))
        return [next(child) if p else None for p in data.present]

    # -- VAE ------------------------------------------------------------------------
    def encode(self, vae, node, data, batch, enc):
        return vae.module_for(node).encode(tensor(data.present, vae.device), vae.encode_node(node.child, batch, enc))

    def decode_train(self, vae, node, data, e, batch, enc, opts, losses, pending):
        present = tensor(data.present, vae.device)
        opts.record_head(node.module, e, present)
        loss = vae.module_for(node).loss(e, present, opts.temperature_of(node.module))
        losses.add(node.path + "/presence", loss, vae.root_of(batch, node))
        vae.decode_node(node.child, e[present], batch, enc, opts, losses, pending)

    def generate(self, vae, node, data, e, batch, g, pending):
        present = vae.module_for(node).decide(e, g.temperature_of(node), g.greedy, g.rng(data.root))
        if node.path in g.force_present:
            present = torch.ones_like(present)
        data.present = present.cpu().numpy()
        vae.generate_node(node.child, e[present], data.root[data.present], batch, g, pending)

    # -- inspect / where --------------------------------------------------------------
    def order_key(self, node):
        return kind_of(node.child).order_key(node.child)

    def render(self, node):
        return "Presence"

    def presence_paths(self, node):
        return (node.path,)

    def where_scope(self, node):
        inner = kind_of(node.child).where_scope(node.child)
        return None if inner is None else (inner[0], (node.path,) + inner[1])
