"""Sequence: repeated fields and maps, over their element's node.

Values: a list of the element's values (maps: `MapEntry` objects sorted by key, whose
element is the map-entry Tuple); the Batch holds `lengths` and the element node holds
all elements flattened, record-major. Module: `synth.nn.sequence.Sequence` (a GRU over
the elements, and a decoder that emits element embeddings and a stop logit).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synth.batch import tensor
from synth.kinds.base import Kind, MapEntry, Node, register, skew, write_field
from synth.nn.sequence import Sequence
from synth.schema.tree import FieldNode


SEQUENCE_SUFFIX = "seq"  # the Sequence's key when the element Tuple already holds `field[]`


@dataclass
class SequenceNode(Node):
    field: FieldNode
    element: Node
    max_len: int = 16  # generation stops here (elements)
    min_len: int = 0  # ... and not before this


def compile_sequence(c, f: FieldNode, element: Node, key: str, stat_key: str) -> SequenceNode:
    """A repeated or map field over `element`; `key` is the field's module key."""
    seq_key = key + "[]"
    taken = c.modules.get(seq_key.replace(".", ":"))
    if taken is not None and not isinstance(taken, Sequence):
        # Without shared message modules a nested repeated message's element Tuple is keyed by
        # its path, `parent.field[]`, which is this key: such models never trained, so no saved
        # artifact holds the key this picks instead.
        seq_key = key + "[]" + SEQUENCE_SUFFIX
    seq = c.module(seq_key, lambda: Sequence(c.cfg.latent_dim, c.cfg.gru()))
    return SequenceNode(f.path, seq, f, element, c.seq_len(stat_key), c.seq_min_len(stat_key))


@register
class SequenceKind(Kind):
    node_type = SequenceNode

    def children(self, node):
        return [node.element]

    # -- codec ---------------------------------------------------------------------
    def write(self, node, obj, value):
        if isinstance(obj, MapEntry):
            write_field(obj, node.field, value)
            return
        container = getattr(obj, node.field.name)
        if node.field.is_map:
            for e in value:
                if node.field.map_value.type == "message":
                    container[e.key].CopyFrom(e.value)
                else:
                    container[e.key] = e.value
        else:
            container.extend(value)

    def extract(self, codec, node, data, values, batch, errors):
        data.lengths = np.fromiter((len(v) for v in values), dtype=np.int64, count=len(values))
        flat = [e for v in values for e in v]
        codec.extract(node.element, flat, np.repeat(data.root, data.lengths), batch, errors)

    def build(self, codec, node, data, batch):
        flat = codec.build(node.element, batch)
        ends = np.cumsum(data.lengths)
        return [flat[e - n: e] for n, e in zip(data.lengths, ends)]

    # -- VAE ------------------------------------------------------------------------
    def encode(self, vae, node, data, batch, enc):
        return vae.module_for(node).encode(vae.encode_node(node.element, batch, enc),
                                           tensor(data.lengths, vae.device))

    def decode_train(self, vae, node, data, e, batch, enc, opts, losses, pending):
        el = node.element
        emitted, stop = vae.module_for(node).decode_train(e, enc[el.path], tensor(data.lengths, vae.device),
                                                          opts.sequence_truth, opts.generator)
        losses.add(node.path + "/length", stop, vae.root_of(batch, node))
        losses.add(el.path + "/skew", skew(emitted, enc[el.path]), vae.root_of(batch, el))
        vae.decode_node(el, emitted, batch, enc, opts, losses, pending)

    def generate(self, vae, node, data, e, batch, g, pending):
        emitted, lengths = vae.module_for(node).decode_sample(e, node.max_len, g.temperature, g.greedy,
                                                              g.rng(data.root), min_len=node.min_len)
        data.lengths = lengths.cpu().numpy()
        vae.generate_node(node.element, emitted, np.repeat(data.root, data.lengths), batch, g, pending)

    def render(self, node):
        least = f"min {node.min_len}, " if node.min_len else ""
        return f"Sequence({'map' if node.field.is_map else 'repeated'}, {least}max {node.max_len})"
