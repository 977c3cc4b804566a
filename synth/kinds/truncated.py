"""Truncated: a recursive field past the `max_recursion` bound, always absent.

Values: nothing; records that set such a field are refused by the codec, naming the
path and the fix (raise `max_recursion`). No module: its encoder embedding is zero,
a Tuple parent neither decodes nor scores it, and a Oneof never chooses it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from synth.errors import Violation
from synth.kinds.base import Kind, Node, at, read_field, register
from synth.schema.tree import FieldNode


@dataclass
class TruncatedNode(Node):
    field: FieldNode


def compile_truncated(f: FieldNode) -> TruncatedNode:
    return TruncatedNode(f.path, "", f)


@register
class TruncatedKind(Kind):
    node_type = TruncatedNode
    modelled = False

    def read(self, node, obj):
        return read_field(obj, node.field, presence=True)

    def write(self, node, obj, value):
        return

    def extract(self, codec, node, data, values, batch, errors):
        errors += [Violation(at(node, data, i), "nesting exceeds max_recursion; raise max_recursion "
                             "in the model config") for i, v in enumerate(values) if v]

    def build(self, codec, node, data, batch):
        return [None] * data.n

    def encode(self, vae, node, data, batch, enc):
        return torch.zeros(data.n, vae.cfg.latent_dim, device=vae.device)

    def decode_train(self, vae, node, data, e, batch, enc, opts, losses, pending):
        return  # nothing is modelled (a Oneof still scores the skew of its emitted embedding)

    def generate(self, vae, node, data, e, batch, g, pending):
        return  # never present: the driver's empty NodeData is its value

    def render(self, node):
        return "Truncated (recursion bound: always absent)"
