"""The compiler: schema tree -> plan + module tree (Chou & Hathi 2019, appendix B; docs/model.md, "Type mapping").

A pure function of (schema, ModelConfig, FitStats): the same inputs rebuild the same
modules, which is how an artifact is loaded without its training data.

| schema                                  | plan node      | module        |
|-----------------------------------------|----------------|---------------|
| message                                 | TupleNode      | Tuple         |
| singular float/double (no presence)     | ScalarsNode    | ScalarTuple   | (one per message, last child)
| string / bytes                          | StringNode     | StringLiteral | (shared)
| bool, enum, int with few values         | CategoricalNode| Categorical   |
| other ints, floats with presence        | NumberNode     | ScalarTuple(k=1) |
| field with presence                     | PresenceNode   | Presence      |
| repeated T, map<K,V>                    | SequenceNode   | Sequence      | (map: of key/value Tuples)
| oneof                                   | OneofNode      | Oneof         |
| recursion past the bound                | TruncatedNode  | none          |

This module routes the schema's structure: a field is truncated, a map, repeated,
optional or a plain value; a message lays out its fields, oneofs and joint floats.
Each kind builds its own node and modules in its `synth.kinds` module: a plain value
goes to the first kind whose `compile_value` claims it (highest `priority` first), so
a new value kind plugs in without editing this file (docs/kinds.md).
"""
from __future__ import annotations

import math

from torch import nn

from synth.errors import ConfigError, Violation
from synth.fitstats import FitStats
from synth.model_config import ModelConfig  # noqa: F401 - re-exported: it used to live here
from synth.kinds import value_kinds
from synth.kinds.oneof import OneofNode, compile_oneof
from synth.kinds.presence import compile_presence
from synth.kinds.scalars import ScalarsNode, compile_scalars
from synth.kinds.sequence import compile_sequence
from synth.kinds.truncated import compile_truncated
from synth.kinds.tuple import TupleNode, compile_map_entry, compile_message
from synth.plan import Node
from synth.schema.tree import FieldNode, MessageNode, INT_TYPES


class _Compiler:
    def __init__(self, cfg: ModelConfig, stats: FitStats):
        self.cfg, self.stats = cfg, stats
        self.modules: dict[str, nn.Module] = {}
        self.problems: list[Violation] = []
        self.used_overrides: set[str] = set()
        self._overrides: dict[tuple[str, str, str], str | None] = {}

    def module(self, key: str, make) -> str:
        """The ModuleDict key for `key`, creating its module with make() on first use (sharing)."""
        key = key.replace(".", ":")  # ModuleDict keys cannot contain dots
        if key not in self.modules:
            self.modules[key] = make()
        return key

    def scope(self, msg: MessageNode) -> str:
        return msg.full_name if self.cfg.share_message_modules else (msg.path or "$root")

    def override(self, f: FieldNode, path: str, scope: str) -> str | None:
        """The `field_overrides` choice for this field ("categorical", "number" or None);
        problems are reported once per field, however many kinds ask."""
        memo = (path, f.path, f"{scope}.{f.name}")
        if memo not in self._overrides:
            self._overrides[memo] = self._override(f, path, scope)
        return self._overrides[memo]

    def _override(self, f: FieldNode, path: str, scope: str) -> str | None:
        for k in (path, f.path, f"{scope}.{f.name}"):
            if k in self.cfg.field_overrides:
                self.used_overrides.add(k)
                choice = self.cfg.field_overrides[k]
                if choice not in ("categorical", "number"):
                    self.problems.append(Violation(k, f"override must be 'categorical' or 'number', not {choice!r}"))
                elif f.type == "string" and choice != "categorical":
                    self.problems.append(Violation(k, "string fields can only be overridden to 'categorical'"))
                elif f.type not in INT_TYPES and f.type != "string":
                    self.problems.append(Violation(k, f"only integer and string fields can be overridden ({f.type})"))
                return choice
        return None

    # -- fields ---------------------------------------------------------------------
    def value(self, f: FieldNode, path: str, scope: str, stat_key: str) -> Node:
        """The node for one value of field f (already unwrapped from presence/repetition):
        the first kind that claims it builds it."""
        for kind in value_kinds():
            node = kind.compile_value(self, f, path, scope, stat_key)
            if node is not None:
                return node
        raise TypeError(f"no plan-node kind models {f.type} field {f.path}")

    def field(self, f: FieldNode, scope: str, type_name: str) -> Node:
        path = f.path
        key = f"{scope}.{f.name}"  # module key
        stat = f"{type_name}.{f.name}"  # FitStats key: always type-level
        if f.truncated:
            return compile_truncated(f)
        if f.is_map:
            return compile_sequence(self, f, compile_map_entry(self, f, scope), key, stat)
        if f.repeated:
            return compile_sequence(self, f, self.value(f, path + "[]", scope, stat), key, stat)
        optional = f.has_presence and not f.required
        node = self.value(f, path + "?" if optional else path, scope, stat)
        if optional:
            return compile_presence(self, f, node, key)
        return node

    def seq_len(self, stat_key: str) -> int:
        seen = self.stats.seq_max_len.get(stat_key, 8)
        return min(self.cfg.max_sequence_len, max(2, math.ceil(seen * self.cfg.string_len_slack)))

    def seq_min_len(self, stat_key: str) -> int:
        """Generation never makes fewer elements than the training data had (a list never
        seen empty is not generated empty)."""
        return min(self.stats.seq_min_len.get(stat_key, 0), self.seq_len(stat_key))

    def oneof(self, msg: MessageNode, name: str, scope: str) -> OneofNode:
        return compile_oneof(self, msg, name, scope)

    def joint_floats(self, msg: MessageNode, joint: list[FieldNode], scope: str,
                     siblings: list[Node] = ()) -> ScalarsNode:
        return compile_scalars(self, msg, joint, scope, siblings)

    def message(self, msg: MessageNode, path: str | None = None) -> TupleNode:
        return compile_message(self, msg, path)


def compile_plan(tree: MessageNode, cfg: ModelConfig, stats: FitStats) -> tuple[TupleNode, nn.ModuleDict]:
    """Build the plan and its modules; one ConfigError lists every problem found."""
    c = _Compiler(cfg, stats)
    root = c.message(tree)
    unused = sorted(set(cfg.field_overrides) - c.used_overrides)
    c.problems += [Violation(k, "field_overrides names no integer or string field of the schema") for k in unused]
    c.problems += [Violation(f"leaf_temperatures.{k}", "names no module of this model (see `synth inspect`)")
                   for k in sorted(set(cfg.leaf_temperatures) - set(c.modules))]
    if c.problems:
        raise ConfigError("the model config does not fit the schema", c.problems)
    return root, nn.ModuleDict(c.modules)
