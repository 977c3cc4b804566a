"""Categorical (a softmax leaf): bool, enum and low-cardinality int fields, and strings
with a closed vocabulary.

Values: one of `classes` (False/True, enum numbers, the training data's ints or
strings); the Batch holds class indices. Module: `synth.nn.categorical.Categorical`,
keyed per field. Ints are categorical when the training data has at most
`int_categorical_max` distinct values; strings when `auto_categorical` finds their
vocabulary closed (`closed_vocabulary`); either by `field_overrides`.

The escape ("other"): with `categorical_escape`, a string or int leaf has one more
class, index len(classes), for every value that is not a class (rare in training, or
never seen). Its value is modelled by `other`, the node the field would have had
without the categorical (a StringLiteral, a number), fed the same embedding: its
encoder embedding is added to the "other" class's, its loss is trained on the rare
values, and generation defers to it when "other" is drawn. So any valid value encodes,
reconstructs and can be used in `where`, while frequent values are exact classes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F

from synth.batch import tensor
from synth.errors import Violation
from synth.fitstats import MAX_CATEGORIES
from synth.kinds.base import Kind, Node, at, kind_of, register, value_kinds
from synth.kinds.number import NumberNode
from synth.nn import rowwise
from synth.nn.categorical import Categorical
from synth.schema.tree import INT_TYPES, FieldNode

OTHER = "#other"  # path suffix of the escape's node


@dataclass
class CategoricalNode(Node):
    field: FieldNode
    classes: list  # class index -> value (False/True, enum numbers, ints, strings)
    other: Node | None = None  # the escape: models values that are not classes (index len(classes))


def closed_vocabulary(values: list, counts: list[int], min_count: int, min_coverage: float,
                      max_classes: int) -> list | None:
    """The classes of a string (or int) field whose vocabulary is closed enough, else None (open text).

    The classes are the values seen at least `min_count` times (the `max_classes` most
    frequent of them). They make a categorical leaf when they cover `min_coverage` of the
    training values: the rest, like the values new data brings (about the share of values
    seen once, by Good-Turing), go to the escape. Identifiers and free text (most values
    seen once) fail the test and stay character RNNs.
    """
    total = sum(counts)
    kept = sorted(((k, v) for v, k in zip(values, counts) if k >= min_count), reverse=True)[:max_classes]
    if not total or not kept or sum(k for k, _ in kept) < min_coverage * total:
        return None
    return sorted(v for _, v in kept)


SPARSE_DENSITY = 0.5


def sparse(values: list[int]) -> bool:
    """Ints that use under half the points of their grid between min and max (the grid: the
    gcd of their differences). Codes, seat counts and distances are sparse, and a number
    model would invent values between them. Measurements and counts (flipper lengths, masses
    in steps of 25 g, days of the month) are dense, and stay numbers: a softmax over them
    forgets that 190 mm is next to 191 mm."""
    if len(values) < 2:
        return False
    lo, hi = min(values), max(values)
    step = math.gcd(*(v - lo for v in values))
    return len(values) / ((hi - lo) // step + 1) < SPARSE_DENSITY


@register
class CategoricalKind(Kind):
    node_type = CategoricalNode
    leaf = True
    priority = 20  # before StringKind (categorical strings) and NumberKind (categorical ints)

    def children(self, node):
        return [node.other] if node.other is not None else []

    def compile_value(self, c, f, path, scope, stat_key):
        if f.type in ("message", "bytes"):
            return None
        choice = c.override(f, path, scope)
        escape = c.cfg.categorical_escape
        if f.type == "string":
            classes = self._string_classes(c, f, path, stat_key, choice)
            if classes is None:
                return None
        elif f.type == "bool":
            classes, escape = [False, True], False
        elif f.type == "enum":
            classes, escape = list(f.enum.numbers), False
        elif f.type in INT_TYPES and choice != "number":
            classes = self._int_classes(c, path, stat_key, choice)
            if classes is None:
                return None
        else:
            return None
        classes = list(classes)
        other = self._escape(c, f, path, scope, stat_key) if escape else None
        n = len(classes) + (other is not None)
        numbers = classes if f.type in INT_TYPES and c.cfg.numeric_categories else None
        key = c.module(f"{scope}.{f.name}", lambda: Categorical(n, c.cfg.latent_dim, numbers))
        return CategoricalNode(path, key, f, classes, other)

    def _int_classes(self, c, path, stat_key, choice) -> list[int] | None:
        """All the values of an int with few of them (at most `int_categorical_max`), or, by
        default, those of a closed vocabulary as for strings (seats, distances, HHMM times:
        values that recur, the rarer ones going to the escape); None: a number."""
        values = c.stats.int_values.get(stat_key)
        if choice == "categorical":
            if not values:
                c.problems.append(Violation(path, "a categorical int needs its values in the training data "
                                            f"(at most {MAX_CATEGORIES} distinct values); model it as a number"))
                return [0]
            return list(values)
        if values and len(values) <= c.cfg.int_categorical_max:
            return list(values)
        counts = c.stats.int_counts.get(stat_key)  # none in artifacts from before the test
        if c.cfg.categorical_escape and values and counts and sparse(values):
            return self._auto_classes(c, values, counts)
        return None

    def _string_classes(self, c, f, path, stat_key, choice) -> list[str] | None:
        values = c.stats.string_values.get(stat_key)
        counts = c.stats.string_counts.get(stat_key)
        if choice == "categorical":
            if not values:
                c.problems.append(Violation(path, "a categorical string needs its values in the training "
                                            f"data (at most {MAX_CATEGORIES} distinct values)"))
                return [""]
            if c.cfg.categorical_escape and counts:  # rare values go to the escape
                return [v for v, k in zip(values, counts) if k >= c.cfg.categorical_min_count] or list(values)
            return list(values)
        if choice is None and values and counts:
            return self._auto_classes(c, values, counts)
        return None

    @staticmethod
    def _auto_classes(c, values: list, counts: list[int]) -> list | None:
        """The automatic choice (`auto_categorical`) for strings and ints: a closed vocabulary's classes."""
        if not c.cfg.auto_categorical:
            return None
        return closed_vocabulary(values, counts, c.cfg.categorical_min_count, c.cfg.categorical_min_coverage,
                                 c.cfg.categorical_max_classes)

    def _escape(self, c, f, path, scope, stat_key) -> Node:
        """The node the field would have had without the categorical (the next kind that claims it)."""
        for kind in value_kinds():
            if kind.priority < self.priority:
                node = kind.compile_value(c, f, path + OTHER, f"{scope}{OTHER}", stat_key)
                if node is None:
                    continue
                if isinstance(node, NumberNode):  # an int's: generate within its training values
                    values = c.stats.int_values.get(stat_key)  # sorted; a categorical int has them
                    node.bounds = (values[0], values[-1]) if values else None
                return node
        raise TypeError(f"no kind models the escape of {f.type} field {f.path}")

    # -- codec ---------------------------------------------------------------------
    def extract(self, codec, node, data, values, batch, errors):
        index = {c: i for i, c in enumerate(node.classes)}
        escape = len(node.classes) if node.other is not None else None
        idx = np.empty(len(values), dtype=np.int64)
        for i, v in enumerate(values):
            j = index.get(v, escape)
            if j is None:
                errors.append(Violation(at(node, data, i), f"value {v!r} is not one of the model's "
                              f"{len(index)} known values; retrain with it, or model the field as a number"))
                j = 0
            idx[i] = j
        data.values = idx
        if node.other is not None:
            rare = idx == escape
            codec.extract(node.other, [v for v, r in zip(values, rare) if r], data.root[rare], batch, errors)

    def build(self, codec, node, data, batch):
        classes, k = node.classes, len(node.classes)
        others = iter(codec.build(node.other, batch)) if node.other is not None else iter(())
        return [classes[i] if i < k else next(others) for i in np.asarray(data.values).tolist()]

    # -- VAE ------------------------------------------------------------------------
    def _rare(self, vae, node, data):
        return tensor(np.asarray(data.values) == len(node.classes), vae.device)

    def _with_other(self, vae, node, data, e, other_e):
        """Add the escape node's embeddings to the rows whose class is "other"."""
        rows = self._rare(vae, node, data).nonzero()[:, 0]
        return e.index_add(0, rows, other_e.to(e.dtype)) if len(rows) else e  # (dtypes differ under autocast)

    def encode(self, vae, node, data, batch, enc):
        e = vae.module_for(node).encode(tensor(data.values, vae.device))
        if node.other is None:
            return e
        return self._with_other(vae, node, data, e, vae.encode_node(node.other, batch, enc))

    def decode_train(self, vae, node, data, e, batch, enc, opts, losses, pending):
        target = tensor(data.values, vae.device)
        opts.record_head(node.module, e, target)
        loss = vae.module_for(node).loss(e, target, opts.temperature_of(node.module))
        losses.add(node.path + "/recon", loss, vae.root_of(batch, node))
        if node.other is not None:
            vae.decode_node(node.other, e[self._rare(vae, node, data)], batch, enc, opts, losses, pending)

    def generate(self, vae, node, data, e, batch, g, pending):
        data.values = vae.module_for(node).decode(e, g.temperature_of(node), g.greedy, g.rng(data.root),
                                                  g.allowed(node, batch)).cpu().numpy()
        if node.path in g.fixed_values:
            # A condition fixes the value (written into the records afterwards): what is
            # generated after it (anchored floats) must see that class, not a draw. A value
            # outside the classes (the escape) has no moments of its own: the draw, the class
            # the decoder puts in its place given the latent and the labels before it, stays.
            fixed = int(np.asarray(g.fixed_values[node.path])[0])
            if node.other is None or fixed != len(node.classes):
                data.values = np.full_like(data.values, fixed)
        if node.other is not None:
            rare = self._rare(vae, node, data)
            vae.generate_node(node.other, e[rare], data.root[rare.cpu().numpy()], batch, g, pending)

    def _escaped_values(self, vae, node, batch):
        """Encoder embeddings of the escaped rows' own values (the escape node's data)."""
        return kind_of(node.other).encode_values(vae, node.other, batch.nodes[node.other.path], batch)

    def encode_values(self, vae, node, data, batch):
        e = vae.module_for(node).encode(tensor(np.asarray(data.values), vae.device))
        if node.other is None:
            return e
        return self._with_other(vae, node, data, e, self._escaped_values(vae, node, batch))

    def feedback(self, vae, node, data, batch, cell):
        module = vae.module_for(node)
        if module.numeric:  # its class table is computed per call: no table to keep
            return super().feedback(vae, node, data, batch, cell)
        # Each class's projection looked up, not its embedding multiplied again for every
        # row: about a sixth of a sampling chunk's products on Vermont's seven labels
        # (docs/benchmarks.md, Performance). The cell keeps the table until a weight changes.
        idx = tensor(np.asarray(data.values), vae.device)
        gi = F.embedding(idx, cell.input_table(module.enc.weight))
        if node.other is None:
            return gi
        # the escape's embedding is added to the class's (encode_values): so is its projection
        return self._with_other(vae, node, data, gi, rowwise.linear(self._escaped_values(vae, node, batch),
                                                                   cell.weight_ih))

    def order_key(self, node) -> tuple:
        # Every categorical before the numbers and strings, fewest classes first: the
        # labels (town, postcode) condition the coordinates, and a street drawn from its
        # vocabulary after them agrees with them (docs/benchmarks.md, "What we tried").
        return (0, len(node.classes))

    def render(self, node):
        extra = f" + other: {kind_of(node.other).render(node.other)}" if node.other is not None else ""
        return f"Categorical({node.field.type}, {len(node.classes)} classes{extra})"
