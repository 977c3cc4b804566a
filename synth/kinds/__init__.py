"""Plan-node kinds: each module holds one kind's node class and its `Kind` (see base.py).

Importing this package registers the built-in kinds. A new kind is one module that
defines a `Node` subclass and a `@register`ed `Kind` for it, imported here
(docs/kinds.md).
"""
from synth.kinds.base import KINDS, Kind, MapEntry, Node, kind_of, register, unregister, value_kinds
from synth.kinds.truncated import TruncatedNode
from synth.kinds.number import NumberNode
from synth.kinds.scalars import ScalarsNode
from synth.kinds.categorical import CategoricalNode
from synth.kinds.string import StringNode
from synth.kinds.presence import PresenceNode
from synth.kinds.sequence import SequenceNode
from synth.kinds.oneof import OneofNode
from synth.kinds.tuple import TupleNode

__all__ = ["KINDS", "Kind", "MapEntry", "Node", "kind_of", "register", "unregister", "value_kinds",
           "CategoricalNode", "NumberNode", "OneofNode", "PresenceNode", "ScalarsNode", "SequenceNode",
           "StringNode", "TruncatedNode", "TupleNode"]
