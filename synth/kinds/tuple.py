"""Tuple (Chou & Hathi 2019, appendix B.3): a message, or a map entry, over its children.

Values: message instances (or `MapEntry` objects). Module: `synth.nn.tuple.Tuple`,
one per message type when `share_message_modules` (which keeps recursion bounded).
Children: one per non-oneof field in declaration order, one Oneof per oneof, and the
message's ScalarTuple of joint floats last (appendix B); with `field_order = "auto"`
they are then sorted by their kind's `order_key`, which is the order the decoder
generates them in (the codec writes each value to its own field, so records keep the
proto's field order).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from synth.errors import SchemaError
from synth.kinds.base import Kind, MapEntry, Node, kind_of, register, skew
from synth.kinds.scalars import ANCHOR
from synth.nn.tuple import Tuple
from synth.schema.tree import FieldNode, MessageNode, is_joint_float

if TYPE_CHECKING:
    from synth.compiler import _Compiler


@dataclass
class TupleNode(Node):
    message: MessageNode
    children: list[Node]
    map_entry: bool = False  # values are MapEntry objects, not messages
    full_name: str = ""
    field: FieldNode | None = None  # the field it is read from, when its parent is a Tuple


def _fix_timestamp(ts: Any) -> None:
    # RFC 3339 range 0001-01-01 .. 9999-12-31, nanos in [0, 1e9): what the JSON mapping accepts
    ts.seconds = max(-62135596800, min(253402300799, ts.seconds))
    ts.nanos = max(0, min(999_999_999, ts.nanos))


def _fix_duration(d: Any) -> None:
    # seconds and nanos must share a sign, |seconds| <= 10,000 years, |nanos| < 1e9
    total = max(-315576000000, min(315576000000, d.seconds)) * 10**9 + max(-999_999_999, min(999_999_999, d.nanos))
    sign = -1 if total < 0 else 1
    d.seconds, d.nanos = sign * (abs(total) // 10**9), sign * (abs(total) % 10**9)


# Decoded well-known types must also be valid for the proto3 JSON mapping.
WELL_KNOWN_RANGES: dict[str, Callable[[Any], None]] = {
    "google.protobuf.Timestamp": _fix_timestamp,
    "google.protobuf.Duration": _fix_duration,
}


def compile_message(c: _Compiler, msg: MessageNode, path: str | None = None) -> TupleNode:
    """A message's Tuple: its fields, oneofs and joint floats, then the Tuple module."""
    scope = c.scope(msg)
    children: list[Node] = []
    seen_oneofs: set[str] = set()
    for f in msg.fields:
        if is_joint_float(f):
            continue
        if f.oneof:
            if f.oneof not in seen_oneofs:
                seen_oneofs.add(f.oneof)
                children.append(c.oneof(msg, f.oneof, scope))
            continue
        children.append(c.field(f, scope, msg.full_name))
    joint = [f for f in msg.fields if is_joint_float(f)]
    if joint:  # appendix B: the ScalarTuple is the last element of the tuple
        children.append(c.joint_floats(msg, joint, scope, children))
    children = _generation_order(c, msg, children)
    for i, child in enumerate(children):
        anchor = getattr(child, "anchor", None)
        if anchor is not None and children.index(anchor) > i:
            raise SchemaError(f"{msg.full_name}: the floats' anchor {anchor.path} is generated after them")
    tkey = c.module(scope, lambda: Tuple(len(children), c.cfg.latent_dim, c.cfg.gru()))
    return TupleNode(msg.path if path is None else path, tkey, msg, children, full_name=msg.full_name)


def _generation_order(c: _Compiler, msg: MessageNode, declared: list[Node]) -> list[Node]:
    """The children in the order the decoder generates them: the order stored in the fit
    statistics when there is one (a saved model), else, with `field_order = "auto"`, by
    their kinds' order keys (stable: declared order among equals), which is then stored."""
    stored = c.stats.field_order.get(msg.full_name)
    if stored is not None:
        if sorted(stored) != list(range(len(declared))):
            raise SchemaError(f"{msg.full_name}: the stored field order {stored} does not fit its "
                              f"{len(declared)} fields: the model was trained on another schema")
        return [declared[i] for i in stored]
    if c.cfg.field_order != "auto":
        return declared
    order = sorted(range(len(declared)), key=lambda i: kind_of(declared[i]).order_key(declared[i]))
    c.stats.field_order[msg.full_name] = order
    return [declared[i] for i in order]


def compile_map_entry(c: _Compiler, f: FieldNode, scope: str) -> TupleNode:
    """The key/value Tuple of a map field's entries."""
    entry_scope = f.type_name if c.cfg.share_message_modules else f.path + "{}"
    path = f.path + "{}"
    children = [
        c.value(f.map_key, path + ".key", entry_scope, f"{f.type_name}.key"),
        c.value(f.map_value, path + ".value", entry_scope, f"{f.type_name}.value"),
    ]
    key = c.module(entry_scope, lambda: Tuple(2, c.cfg.latent_dim, c.cfg.gru()))
    msg = MessageNode(f.type_name, path, (f.map_key, f.map_value), (), 0)
    return TupleNode(path, key, msg, children, map_entry=True, full_name=f.type_name)


def _anchors_for_condition(vae, node: TupleNode, emitted: list, enc: dict, opts) -> None:
    """When a condition scores latents (`where`), the conditioning record's labels are
    placeholders unless the condition fixes them: anchored floats are then scored relative
    to the label the decoder would draw for each latent (its most likely class)."""
    for child in node.children:
        anchor = getattr(child, "anchor", None)
        if anchor is None or anchor.path in opts.fixed_paths:
            continue
        if child.path in opts.fixed_paths or child.path in opts.partial:
            e_a = emitted[node.children.index(anchor)]
            enc[child.path + ANCHOR] = vae.module_for(anchor).decode(e_a, greedy=True)


@register
class TupleKind(Kind):
    node_type = TupleNode
    priority = 30

    def children(self, node: TupleNode) -> list[Node]:
        return list(node.children)

    def compile_value(self, c, f, path, scope, stat_key):
        if f.type != "message":
            return None
        node = c.message(f.message, path)
        node.field = f
        return node

    # -- codec ---------------------------------------------------------------------
    def extract(self, codec, node: TupleNode, data, values, batch, errors):
        for child in node.children:
            read = kind_of(child).read
            codec.extract(child, [read(child, v) for v in values], data.root, batch, errors)

    def build(self, codec, node: TupleNode, data, batch):
        plain: list[tuple[str, list]] = []  # set by setattr (most fields)
        custom = []  # written by their kind, value by value
        for c in node.children:
            kind, vals = kind_of(c), codec.build(c, batch)
            columns = None if node.map_entry else kind.plain_columns(c, vals)
            if columns is None:
                custom.append((kind.write, c, vals))
            else:
                plain += columns
        factory = MapEntry if node.map_entry else codec.message_class(node.full_name)
        fix = WELL_KNOWN_RANGES.get(node.full_name)
        names = [name for name, _ in plain]
        out = []
        for i, row in enumerate(zip(*(vals for _, vals in plain)) if plain else ((),) * data.n):
            obj = factory()
            for name, v in zip(names, row):
                setattr(obj, name, v)
            for write, child, vals in custom:
                write(child, obj, vals[i])
            if fix:
                fix(obj)
            out.append(obj)
        return out

    # -- VAE ------------------------------------------------------------------------
    def encode(self, vae, node: TupleNode, data, batch, enc):
        return vae.module_for(node).encode([vae.encode_node(c, batch, enc) for c in node.children], data.n)

    def decode_train(self, vae, node: TupleNode, data, e, batch, enc, opts, losses, pending):
        m = vae.module_for(node)
        truth = [enc[c.path] for c in node.children]
        fixed = {i: enc[c.path] for i, c in enumerate(node.children) if c.path in opts.fixed_paths}
        p_truth = [opts.leaf_truth if kind_of(c).leaf else opts.p_truth_tuple for c in node.children]
        emitted = m.decode(e, truth, p_truth, fixed=fixed, generator=opts.generator)
        if opts.fixed_paths or opts.partial:
            _anchors_for_condition(vae, node, emitted, enc, opts)
        for child, e_c in zip(node.children, emitted):
            if not kind_of(child).modelled:
                continue
            losses.add(child.path + "/skew", skew(e_c, enc[child.path]), vae.root_of(batch, child))
            vae.decode_node(child, e_c, batch, enc, opts, losses, pending)

    def generate(self, vae, node: TupleNode, data, e, batch, g, pending):
        m = vae.module_for(node)
        root = data.root
        h, x = m.start(e)
        gi = None  # the next cell's input projection, when the fed-back value gives it directly
        last = len(node.children) - 1
        for i, child in enumerate(node.children):
            h, e_c = m.step(i, x, h, gi)
            gi = None
            kind = kind_of(child)
            if child.path in g.fixed:
                x = g.fixed[child.path].expand(e.shape[0], -1)
                vae.generate_node(child, e_c, root, batch, g, pending)
            elif g.reencode and kind.leaf:
                # feed back the embedding of the value actually drawn, not the emitted one
                vae.generate_node(child, e_c, root, batch, g, None)
                if i < last:  # nothing reads the last child's
                    gi = kind.feedback(vae, child, batch.nodes[child.path], batch, m.dec_cells[i + 1])
            else:
                vae.generate_node(child, e_c, root, batch, g, pending)
                x = e_c

    # -- inspect / where --------------------------------------------------------------
    def render(self, node: TupleNode) -> str:
        return f"Tuple({node.full_name}, {len(node.children)} children)"

    def where_scope(self, node: TupleNode):
        return None if node.map_entry else (node, ())
