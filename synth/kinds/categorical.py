"""Categorical (a softmax leaf): bool, enum and low-cardinality int fields, and string
fields overridden to "categorical".

Values: one of `classes` (False/True, enum numbers, the training data's ints or
strings); the Batch holds class indices. Module: `synth.nn.categorical.Categorical`,
keyed per field. Ints are categorical when the training data has at most
`int_categorical_max` distinct values, or by `field_overrides`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synth.batch import tensor
from synth.errors import Violation
from synth.fitstats import MAX_CATEGORIES
from synth.kinds.base import Kind, Node, at, register
from synth.nn.categorical import Categorical
from synth.schema.tree import INT_TYPES, FieldNode


@dataclass
class CategoricalNode(Node):
    field: FieldNode
    classes: list  # class index -> value (False/True, enum numbers, ints)


@register
class CategoricalKind(Kind):
    node_type = CategoricalNode
    leaf = True
    priority = 20  # before StringKind (categorical strings) and NumberKind (categorical ints)

    def compile_value(self, c, f, path, scope, stat_key):
        if f.type in ("message", "bytes"):
            return None
        choice = c.override(f, path, scope)
        if f.type == "string":
            if choice != "categorical":
                return None
            # a string with few distinct values, modelled as a category (opt-in per field)
            classes = c.stats.string_values.get(stat_key)
            if not classes:
                c.problems.append(Violation(path, "a categorical string needs its values in the training "
                                            f"data (at most {MAX_CATEGORIES} distinct values)"))
                classes = [""]
            classes = list(classes)
        elif f.type == "bool":
            classes = [False, True]
        elif f.type == "enum":
            classes = list(f.enum.numbers)
        elif f.type in INT_TYPES and choice != "number" and (
                choice == "categorical" or len(c.stats.int_values.get(stat_key, ())) <= c.cfg.int_categorical_max
                and stat_key in c.stats.int_values):
            classes = c.stats.int_values.get(stat_key)
            if not classes:
                c.problems.append(Violation(path, "a categorical int needs its values in the training data "
                                            f"(at most {MAX_CATEGORIES} distinct values); model it as a number"))
                classes = [0]
        else:
            return None
        key = c.module(f"{scope}.{f.name}", lambda: Categorical(len(classes), c.cfg.latent_dim))
        return CategoricalNode(path, key, f, classes)

    # -- codec ---------------------------------------------------------------------
    def extract(self, codec, node, data, values, batch, errors):
        index = {c: i for i, c in enumerate(node.classes)}
        idx = np.empty(len(values), dtype=np.int64)
        for i, v in enumerate(values):
            if v not in index:
                errors.append(Violation(at(node, data, i), f"value {v!r} is not one of the model's "
                              f"{len(index)} known values; retrain with it, or model the field as a number"))
            idx[i] = index.get(v, 0)
        data.values = idx

    def build(self, codec, node, data, batch):
        return [node.classes[int(i)] for i in data.values]

    # -- VAE ------------------------------------------------------------------------
    def encode(self, vae, node, data, batch, enc):
        return vae.module_for(node).encode(tensor(data.values, vae.device))

    def decode_train(self, vae, node, data, e, batch, enc, opts, losses, pending):
        loss = vae.module_for(node).loss(e, tensor(data.values, vae.device))
        losses.add(node.path + "/recon", loss, vae.root_of(batch, node))

    def generate(self, vae, node, data, e, batch, g, pending):
        data.values = vae.module_for(node).decode(e, g.temperature, g.greedy, g.generator).cpu().numpy()

    def encode_values(self, vae, node, data):
        return vae.module_for(node).encode(tensor(np.asarray(data.values), vae.device))

    def render(self, node):
        return f"Categorical({node.field.type}, {len(node.classes)} classes)"
