"""Records <-> Batch (docs/model.md, "Batching").

`encode` reads a list of messages into a field-major Batch (numpy) following the
plan; `decode` builds valid messages of the user's schema back from a Batch, whether
it came from `encode` (the ground-truth path) or from the model's generator:

* enums and categorical ints are always one of the known classes;
* ints are rounded and clamped to their type's range, floats to float32's;
* required fields are always set, a oneof has at most one case;
* strings are valid UTF-8 (undecodable byte runs from the generator are dropped).

This module is the driver (recursion over the plan, packing); what each node kind
reads, writes, extracts and builds is its `synth.kinds` module's `Kind`.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from synth.batch import Batch, NodeData
from synth.errors import DataError, Violation
from synth.kinds import MapEntry, kind_of
from synth.kinds.number import clamp_number
from synth.kinds.tuple import WELL_KNOWN_RANGES
from synth.plan import Node, TupleNode, walk

__all__ = ["Codec", "MapEntry", "WELL_KNOWN_RANGES", "clamp_number"]


class Codec:
    def __init__(self, plan: TupleNode, descriptor: Descriptor):
        self.plan = plan
        self.pool = descriptor.file.pool
        self.root_class = message_factory.GetMessageClass(descriptor)
        self._classes: dict[str, type[Message]] = {}
        # nodes of `packed` kinds (strings) by module: their values go into one Batch.strings entry
        self.packed_nodes: dict[str, list[Node]] = {}
        for node in walk(plan):
            if kind_of(node).packed:
                self.packed_nodes.setdefault(node.module, []).append(node)

    def message_class(self, full_name: str) -> Callable[[], Any]:
        if full_name not in self._classes:
            self._classes[full_name] = message_factory.GetMessageClass(
                self.pool.FindMessageTypeByName(full_name))
        return self._classes[full_name]

    # -- records -> Batch ---------------------------------------------------------------
    def encode(self, messages: list[Message]) -> Batch:
        batch = Batch(len(messages))
        errors: list[Violation] = []
        self.extract(self.plan, list(messages), np.arange(len(messages)), batch, errors)
        if errors:
            raise DataError(f"{len(errors)} value(s) do not fit the model", errors[:20],
                            total=len(errors))
        for module, nodes in self.packed_nodes.items():
            batch.strings[module] = kind_of(nodes[0]).pack({n.path: batch.nodes[n.path].values for n in nodes})
        return batch

    def extract(self, node: Node, values: list, root: np.ndarray, batch: Batch, errors: list[Violation]) -> None:
        """Lay out one node's instances (their values, and the record each belongs to) in the batch."""
        data = NodeData(len(values), root)
        batch.nodes[node.path] = data
        kind_of(node).extract(self, node, data, values, batch, errors)

    # -- Batch -> records ---------------------------------------------------------------
    def decode(self, batch: Batch) -> list[Message]:
        return self.build(self.plan, batch)

    def build(self, node: Node, batch: Batch) -> list:
        """One node's instance values, from the batch."""
        return kind_of(node).build(self, node, batch.nodes.get(node.path), batch)
