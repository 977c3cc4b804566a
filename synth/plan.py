"""The plan: a tree of typed nodes mirroring the schema, one per modelled value.

The compiler builds it from the schema tree; the codec fills it with values and the
VAE runs a module per node. Each node has a unique `path` (its key in a Batch and in
the loss breakdown) and a `module` key into the model's ModuleDict; nodes of the
same message type share modules, which is how recursion stays bounded in size.

Each node kind lives in its own module of `synth.kinds`, with everything the layers
do with it (docs/kinds.md); the classes are re-exported here. Values each kind
carries (codec):
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

from synth.kinds import (CategoricalNode, Node, NumberNode, OneofNode, PresenceNode, ScalarsNode,
                         SequenceNode, StringNode, TruncatedNode, TupleNode, kind_of)

__all__ = ["CategoricalNode", "Node", "NumberNode", "OneofNode", "PresenceNode", "ScalarsNode",
           "SequenceNode", "StringNode", "TruncatedNode", "TupleNode", "children_of", "walk"]


def walk(node: Node):
    """Every node under (and including) `node`, parents before children."""
    yield node
    for child in children_of(node):
        yield from walk(child)


def children_of(node: Node) -> list[Node]:
    return kind_of(node).children(node)
