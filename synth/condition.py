"""Conditional sampling: `where` fixes field paths to given values (the service's `where`).

The condition is parsed into a partial record of the user's message. Its fixed
fields are (1) teacher-forced in the Tuple decoder, with their encoder embeddings,
(2) used to resample latents: for each output record, `candidates` latents are
drawn from N(m, S) and one is picked with probability proportional to the
decoder's likelihood of the fixed values, so the free fields come from latents
that agree with the condition; and (3) written into every output record, so that
each record satisfies the condition exactly.

Fields reachable through singular messages can be fixed (`postcode`, `geo.lat`).
Fields inside repeated fields, maps or oneofs cannot (there is no single value to
fix), and are refused with the list of paths that can be.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from synth.errors import InvalidArgument, Violation
from synth.kinds import kind_of
from synth.plan import Node, TupleNode
from synth.records import to_message


@dataclass(frozen=True)
class Target:
    node: Node  # the Tuple child that models the field
    presence: tuple[str, ...]  # PresenceNode paths above it, forced present


def where_targets(plan: TupleNode) -> dict[str, Target]:
    """Field path -> how to condition on it, for every fixable field."""
    out: dict[str, Target] = {}

    def visit(tuple_node: TupleNode, prefix: str, presence: tuple[str, ...]) -> None:
        for child in tuple_node.children:
            kind = kind_of(child)
            fields = kind.where_fields(child)
            for f in fields:
                out[prefix + f.name] = Target(child, presence)
            scope = kind.where_scope(child) if len(fields) == 1 else None
            if scope is not None:  # a singular message field: its own fields can be fixed too
                visit(scope[0], prefix + fields[0].name + ".", presence + scope[1])

    visit(plan, "", ())
    return out


def _nest(where: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in where.items():
        parts = path.split(".")
        d = out
        for p in parts[:-1]:
            d = d.setdefault(p, {})
            if not isinstance(d, dict):
                raise InvalidArgument(f"where: {path!r} conflicts with another condition")
        d[parts[-1]] = value
    return out


def _get(msg: Message, path: str) -> Any:
    for part in path.split("."):
        msg = getattr(msg, part)
    return msg


@dataclass
class Condition:
    message: Message  # the partial record holding the fixed values
    paths: dict[str, Target]  # field path -> target

    def fixed_nodes(self) -> frozenset[str]:
        """Tuple-child node paths that are fully fixed (a ScalarTuple only if all its fields are)."""
        out = set()
        for path, t in self.paths.items():
            prefix = path.rsplit(".", 1)[0] + "." if "." in path else ""
            if all(prefix + f.name in self.paths for f in kind_of(t.node).where_fields(t.node)):
                out.add(t.node.path)
        return frozenset(out)

    def partial_nodes(self) -> dict[str, tuple[list[int], list[float]]]:
        """ScalarTuple node path -> (member indices, fixed values) for each tuple only some of
        whose fields are fixed (`where lat=44.48` on a (lat, lon) tuple): the decoder draws the
        other members from its Gaussian conditioned on these."""
        out: dict[str, tuple[list[int], list[float]]] = {}
        full = self.fixed_nodes()
        for path, t in self.paths.items():
            if t.node.path in full:
                continue
            prefix = path.rsplit(".", 1)[0] + "." if "." in path else ""
            members = [prefix + f.name for f in kind_of(t.node).where_fields(t.node)]
            if len(members) > 1 and t.node.path not in out:
                idx = [i for i, m in enumerate(members) if m in self.paths]
                out[t.node.path] = (idx, [float(_get(self.message, members[i])) for i in idx])
        return out

    def forced_presence(self) -> frozenset[str]:
        out = {p for t in self.paths.values() for p in t.presence}
        out |= {p for t in self.paths.values() for p in kind_of(t.node).presence_paths(t.node)}
        return frozenset(out)

    def apply(self, record: Message) -> None:
        """Write the fixed values into a generated record, exactly."""
        for path in self.paths:
            parent_path, _, name = path.rpartition(".")
            parent = _get(record, parent_path) if parent_path else record
            value = _get(self.message, path)
            if isinstance(value, Message):
                getattr(parent, name).CopyFrom(value)
            else:
                setattr(parent, name, value)


def parse_where(where: dict[str, Any], plan: TupleNode, message_class: type[Message]) -> Condition:
    if not isinstance(where, dict) or not where:
        raise InvalidArgument("where must be a non-empty object of field path -> value")
    targets = where_targets(plan)
    bad = [p for p in where if p not in targets]
    if bad:
        raise InvalidArgument(
            "where names fields that cannot be fixed",
            [Violation(p, f"not a fixable field; fixable: {', '.join(sorted(targets))}") for p in bad])
    try:
        msg = to_message(_nest(where), message_class, where="where")
    except Exception as e:  # DataError from the JSON mapping: wrong type or enum name
        raise InvalidArgument(f"where: {getattr(e, 'message', e)}",
                              getattr(e, "violations", None)) from e
    return Condition(msg, {p: targets[p] for p in where})
