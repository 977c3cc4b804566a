"""StringLiteral (Chou & Hathi 2019, appendix B.1): string and bytes fields, byte-level.

Values: str (UTF-8) or bytes; the Batch holds bytes. Module:
`synth.nn.string_literal.StringLiteral`, one for all string fields and one for all
bytes fields when `share_strings` (the paper's choice), else one per field.

Batching: the values of every node sharing a module are packed into one
`Batch.strings[module]` (sorted longest first), so the character GRU runs once per
step for all of them, in the encoder, in the loss and in generation; `encode` reads
the packed result and `decode_train`/`generate` defer their node to one
`flush_losses`/`flush_generate` call per module.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from synth.batch import pack_strings, tensor
from synth.kinds.base import Kind, Node, register
from synth.nn.string_literal import StringLiteral, StringLiteralConfig
from synth.schema.tree import FieldNode


@dataclass
class StringNode(Node):
    field: FieldNode
    binary: bool  # bytes field: values are bytes, not str
    max_len: int = 64  # generation stops here (bytes)


@register
class StringKind(Kind):
    node_type = StringNode
    leaf = True
    packed = True
    priority = 10

    def compile_value(self, c, f, path, scope, stat_key):
        if f.type not in ("string", "bytes"):
            return None
        binary = f.type == "bytes"
        key = ("$bytes" if binary else "$strings") if c.cfg.share_strings else f"{scope}.{f.name}"
        cfg = StringLiteralConfig(dim=c.cfg.latent_dim, char_dim=c.cfg.char_dim, context=c.cfg.string_context,
                                  loss=c.cfg.string_loss)
        seen = c.stats.string_max_len.get(stat_key, 32)
        max_len = min(c.cfg.max_string_len, max(8, math.ceil(seen * c.cfg.string_len_slack)))
        return StringNode(path, c.module(key, lambda: StringLiteral(cfg, c.cfg.gru())), f, binary, max_len)

    # -- codec ---------------------------------------------------------------------
    def extract(self, codec, node, data, values, batch, errors):
        data.values = [v if isinstance(v, bytes) else v.encode("utf-8") for v in values]

    def build(self, codec, node, data, batch):
        if node.binary:
            return [bytes(v) for v in data.values]
        return [bytes(v).decode("utf-8", errors="ignore") for v in data.values]

    def pack(self, per_node):
        return pack_strings(per_node)

    # -- VAE ------------------------------------------------------------------------
    def prepare_encode(self, vae, batch, enc):
        for module, pack in batch.strings.items():
            emb = vae.nodes[module].encode(tensor(pack.tokens, vae.device), tensor(pack.lengths, vae.device))
            unsorted = torch.empty_like(emb)
            unsorted[tensor(pack.order, vae.device)] = emb
            for path, (a, b) in pack.slices.items():
                enc[path] = unsorted[a:b]

    def encode(self, vae, node, data, batch, enc):
        return enc[node.path]

    def decode_train(self, vae, node, data, e, batch, enc, opts, losses, pending):
        pending.setdefault(node.module, []).append((node, e))

    def flush_losses(self, vae, module, items, batch, opts, losses):
        pack = batch.strings[module]
        emb = torch.cat([e for _, e in items])  # concatenation order == pack.slices order
        order = tensor(pack.order, vae.device)
        per = vae.nodes[module].loss(emb[order], tensor(pack.tokens, vae.device),
                                     tensor(pack.lengths, vae.device), opts.p_truth_string, opts.generator)
        unsorted = torch.empty_like(per)
        unsorted[order] = per
        for node, _ in items:
            a, b = pack.slices[node.path]
            losses.add(node.path + "/recon", unsorted[a:b], vae.root_of(batch, node))

    def generate(self, vae, node, data, e, batch, g, pending):
        if pending is None:  # decode now (re-encoding feedback needs the value)
            max_len = torch.full((e.shape[0],), node.max_len, dtype=torch.long)
            data.values = vae.module_for(node).generate(e, max_len, g.temperature, g.greedy, g.rng(data.root))
        else:
            pending.setdefault(node.module, []).append((node, e))

    def flush_generate(self, vae, module, items, batch, g):
        emb = torch.cat([e for _, e in items])
        max_len = torch.cat([torch.full((e.shape[0],), n.max_len, dtype=torch.long) for n, e in items])
        root = np.concatenate([batch.nodes[n.path].root for n, _ in items])  # the rows' records, in emb's order
        strings = vae.nodes[module].generate(emb, max_len, g.temperature, g.greedy, g.rng(root))
        start = 0
        for node, e in items:
            batch.nodes[node.path].values = strings[start: start + e.shape[0]]
            start += e.shape[0]

    def encode_values(self, vae, node, data, batch):
        pack = pack_strings({node.path: data.values})
        emb = vae.module_for(node).encode(tensor(pack.tokens, vae.device), tensor(pack.lengths, vae.device))
        out = torch.empty_like(emb)
        out[tensor(pack.order, vae.device)] = emb
        return out

    def order_key(self, node):
        return (2, 0)

    def render(self, node):
        return f"StringLiteral({'bytes' if node.binary else 'utf-8'}, max {node.max_len})"
