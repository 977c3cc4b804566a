"""The plan: a tree of typed nodes mirroring the schema, one per modelled value.

The compiler builds it from the schema tree; the codec fills it with values and the
VAE runs a module per node. Each node has a unique `path` (its key in a Batch and in
the loss breakdown) and a `module` key into the model's ModuleDict; nodes of the
same message type share modules, which is how recursion stays bounded in size.

Values each node kind carries (codec):
  TupleNode      message instances (or map entries)
  ScalarsNode    k-tuples of floats: the message's joint float fields (ScalarTuple)
  NumberNode     one number (int modelled as a number, or a float that has presence)
  StringNode     str or bytes (byte-level StringLiteral)
  CategoricalNode bool / enum number / int, one of `classes`
  PresenceNode   the child's value, or None when the field is absent
  SequenceNode   a list of the element's values (repeated fields and maps)
  OneofNode      (case index or -1, the case's value)
  TruncatedNode  nothing: a recursive field past the depth bound, always absent
"""
from __future__ import annotations

from dataclasses import dataclass

from synth.schema.tree import FieldNode, MessageNode


@dataclass
class Node:
    path: str
    module: str


@dataclass
class ScalarsNode(Node):
    fields: list[FieldNode]


@dataclass
class NumberNode(Node):
    field: FieldNode


@dataclass
class StringNode(Node):
    field: FieldNode
    binary: bool  # bytes field: values are bytes, not str
    max_len: int = 64  # generation stops here (bytes)


@dataclass
class CategoricalNode(Node):
    field: FieldNode
    classes: list  # class index -> value (False/True, enum numbers, ints)


@dataclass
class PresenceNode(Node):
    field: FieldNode
    child: Node


@dataclass
class SequenceNode(Node):
    field: FieldNode
    element: Node
    max_len: int = 16  # generation stops here (elements)


@dataclass
class OneofNode(Node):
    name: str
    cases: list[FieldNode]
    children: list[Node]


@dataclass
class TruncatedNode(Node):
    field: FieldNode


@dataclass
class TupleNode(Node):
    message: MessageNode
    children: list[Node]
    map_entry: bool = False  # values are MapEntry objects, not messages
    full_name: str = ""
    field: FieldNode | None = None  # the field it is read from, when its parent is a Tuple


def walk(node: Node):
    """Every node under (and including) `node`, parents before children."""
    yield node
    for child in children_of(node):
        yield from walk(child)


def children_of(node: Node) -> list[Node]:
    if isinstance(node, (TupleNode, OneofNode)):
        return list(node.children)
    if isinstance(node, PresenceNode):
        return [node.child]
    if isinstance(node, SequenceNode):
        return [node.element]
    return []
