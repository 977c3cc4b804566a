"""The `Kind` protocol and its registry: one home per plan-node kind.

A plan node kind (Tuple, Sequence, StringLiteral, ...) is one dataclass, a subclass
of `Node`, plus one `Kind` object registered for it with `@register`. The kind says,
in one module, everything the layers need to know about its nodes:

* plan     `children`: the nodes under it (`synth.plan.walk` recurses through them);
* compiler `compile_value`: claim a schema value and build its node and modules
           (kinds built around the schema's structure, such as Sequence or Presence,
           expose a `compile_*` function that `synth.compiler` calls instead);
* codec    `read`/`write`: its value inside the parent message; `extract`: values
           -> field-major `NodeData`; `build`: `NodeData` -> values (`synth.codec`);
* VAE      `encode`, `decode_train` (loss terms), `generate` and, for leaves,
           `encode_values` (`synth.vae`);
* inspect  `render`: a one-line description (`synth inspect`);
* where    `where_fields`, `where_scope`, `presence_paths` (`synth.condition`).

The drivers (`synth.codec.Codec`, `synth.vae.RecordVAE`, `synth.compiler`,
`synth.inspect_tree`, `synth.condition`) own recursion order and batching and look a
node's kind up with `kind_of`, once per node and never per record, so dispatch costs
nothing in the forward pass. The paper's module per node type is Chou & Hathi 2019,
appendix B; docs/kinds.md walks through adding a kind.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from synth.batch import NodeData
from synth.errors import Violation

if TYPE_CHECKING:
    from synth.batch import Batch
    from synth.codec import Codec
    from synth.compiler import _Compiler
    from synth.schema.tree import FieldNode
    from synth.vae import DecodeOptions, Losses, RecordVAE, _Gen


@dataclass
class Node:
    """A plan node: `path` is its key in a Batch and in the loss breakdown; `module` its
    key in the model's ModuleDict ("" for a kind without a module)."""

    path: str
    module: str


class MapEntry:
    """One key/value pair of a map field, as the map-entry Tuple sees it."""

    __slots__ = ("key", "value")

    def __init__(self, key: Any = None, value: Any = None):
        self.key, self.value = key, value


def read_field(obj: Any, f: FieldNode, presence: bool = False) -> Any:
    """The value of field f of a message (or MapEntry): a list for repeated fields, a list of
    MapEntry (sorted by key) for maps and, with `presence`, None when a singular field is unset."""
    if isinstance(obj, MapEntry):
        return getattr(obj, f.name)
    if f.is_map:
        container = getattr(obj, f.name)
        return [MapEntry(k, container[k]) for k in sorted(container)]
    if f.repeated:
        return list(getattr(obj, f.name))
    if presence:
        return getattr(obj, f.name) if obj.HasField(f.name) else None
    return getattr(obj, f.name)


def write_field(obj: Any, f: FieldNode, value: Any) -> None:
    """Store one singular value of field f into a message (or MapEntry)."""
    if isinstance(obj, MapEntry):
        setattr(obj, f.name, value)
    elif f.type == "message":
        sub = getattr(obj, f.name)
        sub.SetInParent()
        sub.CopyFrom(value)
    else:
        setattr(obj, f.name, value)


def at(node: Node, data: NodeData, i: int) -> str:
    """Where instance i of a node comes from, for error messages."""
    return f"record[{data.root[i]}].{node.path}"


def non_finite(node: Node, data: NodeData, bad: np.ndarray) -> list[Violation]:
    return [Violation(at(node, data, i), "non-finite float (NaN or inf) cannot be modelled")
            for i in np.nonzero(bad)[0]]


def skew(emitted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """The skew loss (n,): emitted vs encoder embedding of a child (appendix B.3)."""
    return ((emitted - truth) ** 2).mean(1)


class Kind:
    """How one node kind is compiled, batched, run through the VAE and rendered.

    Subclasses set `node_type` and override what applies to them; the defaults fit a
    node that models one singular field (`node.field`) and has no children.
    """

    node_type: type[Node] = Node
    leaf: bool = False  # its values are drawn directly (re-encoded under "reencoded" feedback)
    modelled: bool = True  # False: always absent; a Tuple neither decodes nor scores it
    packed: bool = False  # the values of all nodes sharing its module form one Batch.strings pack
    priority: int = 0  # order in which `compile_value` claims are tried, highest first

    # -- plan ----------------------------------------------------------------------------
    def children(self, node: Node) -> list[Node]:
        return []

    # -- compiler --------------------------------------------------------------------------
    def compile_value(self, c: _Compiler, f: FieldNode, path: str, scope: str, stat_key: str) -> Node | None:
        """The node for one value of field f (already unwrapped from presence/repetition),
        or None when this kind does not model it. `c` gives the config (`c.cfg`), the
        training statistics (`c.stats`), `c.module(key, make)` to create or share a module,
        `c.override(...)` and `c.problems` to report misfits."""
        return None

    # -- codec -------------------------------------------------------------------------------
    def read(self, node: Node, obj: Any) -> Any:
        """The value this node models, read from its parent message (or map entry)."""
        return read_field(obj, node.field)

    def write(self, node: Node, obj: Any, value: Any) -> None:
        """Store this node's value into its parent message (or map entry)."""
        write_field(obj, node.field, value)

    def plain_columns(self, node: Node, values: list) -> list[tuple[str, list]] | None:
        """The instances' values as (field name, one value per instance) columns that a
        message takes by plain `setattr`, or None when `write` must be called per value.

        Why: building sampled records is per-record Python; a Tuple sets plain columns in
        one tight loop instead of one `write` dispatch per field and record."""
        if type(self).write is not Kind.write:
            return None
        f = node.field
        return None if f.repeated or f.type == "message" else [(f.name, values)]

    def extract(self, codec: Codec, node: Node, data: NodeData, values: list, batch: Batch,
                errors: list[Violation]) -> None:
        """Fill `data` (n = len(values), root set) from the instances' values; recurse into
        children with `codec.extract(child, values, root, batch, errors)`."""
        raise NotImplementedError(type(node).__name__)

    def build(self, codec: Codec, node: Node, data: NodeData, batch: Batch) -> list:
        """The instances' values (valid for the schema) from `data`; children via `codec.build`."""
        raise NotImplementedError(type(node).__name__)

    def pack(self, per_node: dict[str, list]) -> Any:
        """For `packed` kinds: one Batch.strings entry from the values of the nodes sharing a module."""
        raise NotImplementedError(type(self).__name__)

    # -- VAE ----------------------------------------------------------------------------------
    def prepare_encode(self, vae: RecordVAE, batch: Batch, enc: dict[str, torch.Tensor]) -> None:
        """Called once per kind before the bottom-up pass (batch-level work such as packs)."""

    def encode(self, vae: RecordVAE, node: Node, data: NodeData, batch: Batch,
               enc: dict[str, torch.Tensor]) -> torch.Tensor:
        """Encoder embedding (n, D); children via `vae.encode_node`. The driver stores it in enc."""
        raise NotImplementedError(type(node).__name__)

    def decode_train(self, vae: RecordVAE, node: Node, data: NodeData, e: torch.Tensor, batch: Batch,
                     enc: dict[str, torch.Tensor], opts: DecodeOptions, losses: Losses, pending: dict) -> None:
        """Add this node's loss terms given the embedding e (n, D) its parent emitted;
        children via `vae.decode_node`. Deferred work goes in pending[module] (see `flush_losses`)."""
        raise NotImplementedError(type(node).__name__)

    def flush_losses(self, vae: RecordVAE, module: str, items: list[tuple[Node, torch.Tensor]], batch: Batch,
                     opts: DecodeOptions, losses: Losses) -> None:
        """Run the deferred `decode_train` work of every node of one module, in one call."""
        raise NotImplementedError(type(self).__name__)

    def generate(self, vae: RecordVAE, node: Node, data: NodeData, e: torch.Tensor, batch: Batch,
                 g: _Gen, pending: dict | None) -> None:
        """Draw values into `data` from e (n, D); children via `vae.generate_node`. With
        pending None the values are needed now (re-encoding feedback): do not defer."""
        raise NotImplementedError(type(node).__name__)

    def flush_generate(self, vae: RecordVAE, module: str, items: list[tuple[Node, torch.Tensor]],
                       batch: Batch, g: _Gen) -> None:
        raise NotImplementedError(type(self).__name__)

    def encode_values(self, vae: RecordVAE, node: Node, data: NodeData, batch: Batch) -> torch.Tensor:
        """For leaves: encoder embeddings (n, D) of generated values (children's data in `batch`)."""
        raise NotImplementedError(type(node).__name__)

    def feedback(self, vae: RecordVAE, node: Node, data: NodeData, batch: Batch, cell: Any) -> torch.Tensor:
        """For leaves: the input projection (n, 3H) that GRU `cell` takes for generated values,
        when a Tuple decoder feeds them back (`generation_feedback = "reencoded"`)."""
        return cell.project_input(self.encode_values(vae, node, data, batch))

    def order_key(self, node: Node) -> tuple:
        """Where a Tuple decoder generates this child under `field_order = "auto"`: lower
        first. Fields others depend on (closed vocabularies, numbers) come before free text,
        which comes before nested and repeated structure."""
        return (3, 0)

    # -- inspect ----------------------------------------------------------------------------------
    def render(self, node: Node) -> str:
        return type(node).__name__

    # -- conditional sampling (`where`) ------------------------------------------------------------
    def where_fields(self, node: Node) -> list[FieldNode]:
        """The singular fields of the parent message whose values this Tuple child models."""
        f = getattr(node, "field", None)
        return [] if f is None or f.repeated else [f]

    def presence_paths(self, node: Node) -> tuple[str, ...]:
        """Presence node paths to force present when this node's field is fixed."""
        return ()

    def where_scope(self, node: Node) -> tuple[Node, tuple[str, ...]] | None:
        """The message Tuple whose fields can be fixed under this node's field, and the
        presence paths above it; None when there is none."""
        return None


K = TypeVar("K", bound=Kind)

KINDS: dict[type[Node], Kind] = {}


def register(cls: type[K]) -> type[K]:
    """Class decorator: register one instance of a Kind subclass for its `node_type`."""
    if not (isinstance(cls, type) and issubclass(cls, Kind)) or cls.node_type is Node:
        raise TypeError(f"{cls!r} is not a Kind subclass with a node_type")
    KINDS[cls.node_type] = cls()
    _value_kinds.clear()
    return cls


def unregister(node_type: type[Node]) -> None:
    """Remove a kind (tests register throwaway kinds)."""
    KINDS.pop(node_type, None)
    _value_kinds.clear()


def kind_of(node: Node | type[Node]) -> Kind:
    """The registered kind of a node (or node class); subclasses inherit their base's kind."""
    cls = node if isinstance(node, type) else type(node)
    kind = KINDS.get(cls)
    if kind is None:
        for base in cls.__mro__[1:]:
            if base in KINDS and base is not Node:
                return KINDS[base]
        raise TypeError(f"no plan-node kind registered for {cls.__name__}")
    return kind


_value_kinds: list[Kind] = []


def value_kinds() -> list[Kind]:
    """Kinds that override `compile_value`, highest priority first (registration order on ties)."""
    if not _value_kinds:
        _value_kinds.extend(sorted((k for k in KINDS.values() if type(k).compile_value is not Kind.compile_value),
                                   key=lambda k: -k.priority))
    return _value_kinds


