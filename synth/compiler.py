"""The compiler: schema tree -> plan + module tree (DESIGN.md section 3, Fold's Blocks).

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
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import nn

from synth.errors import ConfigError, Violation
from synth.fitstats import JOINT, MAX_CATEGORIES, FitStats
from synth.nn.categorical import Categorical
from synth.nn.gru import GRUConfig
from synth.nn.oneof import Oneof
from synth.nn.presence import Presence
from synth.nn.scalar_tuple import ScalarTuple, ScalarTupleConfig
from synth.nn.sequence import Sequence
from synth.nn.string_literal import StringLiteral, StringLiteralConfig
from synth.nn.tuple import Tuple
from synth.plan import (CategoricalNode, Node, NumberNode, OneofNode, PresenceNode, ScalarsNode,
                        SequenceNode, StringNode, TruncatedNode, TupleNode)
from synth.schema.tree import FieldNode, MessageNode, SchemaOptions, INT_TYPES, is_joint_float


@dataclass(frozen=True)
class ModelConfig:
    """Everything that shapes the module tree. Defaults are the paper's (appendix B)."""

    latent_dim: int = 128  # every module's embedding size, and the latent size
    char_dim: int = 16
    celu_alpha: float = 3.0
    celu_cap: float = 6.0
    std_layers: int = 3
    std_bias_init: float = -5.0  # sigma starts at sigmoid(-5) ~ 0.0067
    n_levels: int = 1  # standard deviation networks (multiscale VAE uses n > 1)
    whitening_decay: float = 0.999
    whitening_eps: float = 1e-5
    latent_stats_decay: float = 0.999  # moving mean/cov of sampled latents, for generation
    share_strings: bool = True  # one StringLiteral for all string fields (paper)
    share_message_modules: bool = True  # one Tuple per message type (needed for recursion)
    max_recursion: int = 3  # occurrences of one message type on a path
    int_categorical_max: int = 16  # ints with at most this many distinct values are categorical
    # Per-field choice, overriding the automatic one: {"path.or.Type.field": "categorical"|"number"};
    # integer fields take either, string fields "categorical" (a softmax over the training values)
    field_overrides: dict[str, str] = field(default_factory=dict)
    max_string_len: int = 256  # hard cap on generated string length (bytes)
    string_len_slack: float = 1.5  # generation stops at slack x the longest training value
    max_sequence_len: int = 64
    latent_prior_components: int = 0  # 0: generate from one Gaussian (paper); K: a K-component mixture
    # Generation defaults (used when a call gives none): the temperature of leaf draws
    # (characters, categories, Gaussian scalars) and the scale of the latent noise.
    sample_temperature: float = 1.0
    latent_temperature: float = 1.0
    scalar_likelihood: str = "mse"  # "mse" (paper) or "gaussian" (learned spread; see ScalarTuple)
    # What the Tuple decoder feeds back while generating: the embedding it emitted (paper),
    # or the encoder's embedding of the leaf value actually drawn ("reencoded").
    generation_feedback: str = "emitted"

    def __post_init__(self) -> None:
        problems = []
        if self.scalar_likelihood not in ("mse", "gaussian"):
            problems.append(Violation("scalar_likelihood", "must be 'mse' or 'gaussian'"))
        if self.generation_feedback not in ("emitted", "reencoded"):
            problems.append(Violation("generation_feedback", "must be 'emitted' or 'reencoded'"))
        if not (self.sample_temperature > 0 and self.latent_temperature > 0):
            problems.append(Violation("sample_temperature", "temperatures must be > 0"))
        if self.n_levels < 1 or self.latent_dim < 1:
            problems.append(Violation("n_levels", "n_levels and latent_dim must be >= 1"))
        if problems:
            raise ConfigError("invalid model config", problems)

    def schema_options(self) -> SchemaOptions:
        return SchemaOptions(max_recursion=self.max_recursion)

    def gru(self) -> GRUConfig:
        return GRUConfig(alpha=self.celu_alpha, cap=self.celu_cap)


class _Compiler:
    def __init__(self, cfg: ModelConfig, stats: FitStats):
        self.cfg, self.stats = cfg, stats
        self.modules: dict[str, nn.Module] = {}
        self.problems: list[Violation] = []
        self.used_overrides: set[str] = set()

    def module(self, key: str, make) -> str:
        key = key.replace(".", ":")  # ModuleDict keys cannot contain dots
        if key not in self.modules:
            self.modules[key] = make()
        return key

    def scope(self, msg: MessageNode) -> str:
        return msg.full_name if self.cfg.share_message_modules else (msg.path or "$root")

    # -- leaves -------------------------------------------------------------------
    def string(self, f: FieldNode, path: str, scope: str, stat_key: str) -> StringNode:
        binary = f.type == "bytes"
        key = ("$bytes" if binary else "$strings") if self.cfg.share_strings else f"{scope}.{f.name}"
        cfg = StringLiteralConfig(dim=self.cfg.latent_dim, char_dim=self.cfg.char_dim)
        if not binary and self.override(f, path, scope) == "categorical":
            # a string with few distinct values, modelled as a category (opt-in per field)
            classes = self.stats.string_values.get(stat_key)
            if not classes:
                self.problems.append(Violation(path, "a categorical string needs its values in the training "
                                               f"data (at most {MAX_CATEGORIES} distinct values)"))
                classes = [""]
            key = self.module(f"{scope}.{f.name}", lambda: Categorical(len(classes), self.cfg.latent_dim))
            return CategoricalNode(path, key, f, list(classes))
        seen = self.stats.string_max_len.get(stat_key, 32)
        max_len = min(self.cfg.max_string_len, max(8, math.ceil(seen * self.cfg.string_len_slack)))
        return StringNode(path, self.module(key, lambda: StringLiteral(cfg, self.cfg.gru())), f, binary, max_len)

    def scalar(self, f: FieldNode, path: str, scope: str, stat_key: str) -> Node:
        choice = self.override(f, path, scope)
        if f.type == "bool":
            classes: list = [False, True]
        elif f.type == "enum":
            classes = list(f.enum.numbers)
        elif f.type in INT_TYPES and choice != "number" and (
                choice == "categorical" or len(self.stats.int_values.get(stat_key, ())) <= self.cfg.int_categorical_max
                and stat_key in self.stats.int_values):
            classes = self.stats.int_values.get(stat_key)
            if not classes:
                self.problems.append(Violation(path, "a categorical int needs its values in the training data "
                                               f"(at most {MAX_CATEGORIES} distinct values); model it as a number"))
                classes = [0]
        else:
            mean = self.stats.scalar_mean.get(stat_key)
            cov = self.stats.scalar_cov.get(stat_key)
            cfg = ScalarTupleConfig(self.cfg.latent_dim, self.cfg.whitening_decay, self.cfg.whitening_eps,
                                    self.cfg.scalar_likelihood)
            key = self.module(f"{scope}.{f.name}", lambda: ScalarTuple(1, cfg, mean, cov))
            return NumberNode(path, key, f)
        key = self.module(f"{scope}.{f.name}", lambda: Categorical(len(classes), self.cfg.latent_dim))
        return CategoricalNode(path, key, f, classes)

    def override(self, f: FieldNode, path: str, scope: str) -> str | None:
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
        """The node for one value of field f (already unwrapped from presence/repetition)."""
        if f.type == "message":
            node = self.message(f.message, path)
            node.field = f
            return node
        if f.type in ("string", "bytes"):
            return self.string(f, path, scope, stat_key)
        return self.scalar(f, path, scope, stat_key)

    def field(self, f: FieldNode, scope: str, type_name: str) -> Node:
        path = f.path
        key = f"{scope}.{f.name}"  # module key
        stat = f"{type_name}.{f.name}"  # FitStats key: always type-level
        if f.truncated:
            return TruncatedNode(path, "", f)
        if f.is_map:
            entry = self.map_entry(f, scope)
            seq = self.module(key + "[]", lambda: Sequence(self.cfg.latent_dim, self.cfg.gru()))
            return SequenceNode(path, seq, f, entry, self.seq_len(stat))
        if f.repeated:
            elem = self.value(f, path + "[]", scope, stat)
            seq = self.module(key + "[]", lambda: Sequence(self.cfg.latent_dim, self.cfg.gru()))
            return SequenceNode(path, seq, f, elem, self.seq_len(stat))
        optional = f.has_presence and not f.required
        node = self.value(f, path + "?" if optional else path, scope, stat)
        if optional:
            pres = self.module(key + "?", lambda: Presence(self.cfg.latent_dim))
            return PresenceNode(path, pres, f, node)
        return node

    def seq_len(self, stat_key: str) -> int:
        seen = self.stats.seq_max_len.get(stat_key, 8)
        return min(self.cfg.max_sequence_len, max(2, math.ceil(seen * self.cfg.string_len_slack)))

    def map_entry(self, f: FieldNode, scope: str) -> TupleNode:
        entry_scope = f.type_name if self.cfg.share_message_modules else f.path + "{}"
        path = f.path + "{}"
        children = [
            self.value(f.map_key, path + ".key", entry_scope, f"{f.type_name}.key"),
            self.value(f.map_value, path + ".value", entry_scope, f"{f.type_name}.value"),
        ]
        key = self.module(entry_scope, lambda: Tuple(2, self.cfg.latent_dim, self.cfg.gru()))
        msg = MessageNode(f.type_name, path, (f.map_key, f.map_value), (), 0)
        return TupleNode(path, key, msg, children, map_entry=True, full_name=f.type_name)

    def oneof(self, msg: MessageNode, name: str, scope: str) -> OneofNode:
        cases = [f for f in msg.fields if f.oneof == name]
        children = [TruncatedNode(f.path, "", f) if f.truncated
                    else self.value(f, f.path, scope, f"{msg.full_name}.{f.name}") for f in cases]
        key = self.module(f"{scope}.{name}|", lambda: Oneof(len(cases), self.cfg.latent_dim, self.cfg.celu_alpha))
        path = f"{msg.path}.{name}|" if msg.path else f"{name}|"
        return OneofNode(path, key, name, cases, children)

    def message(self, msg: MessageNode, path: str | None = None) -> TupleNode:
        scope = self.scope(msg)
        children: list[Node] = []
        seen_oneofs: set[str] = set()
        for f in msg.fields:
            if is_joint_float(f):
                continue
            if f.oneof:
                if f.oneof not in seen_oneofs:
                    seen_oneofs.add(f.oneof)
                    children.append(self.oneof(msg, f.oneof, scope))
                continue
            children.append(self.field(f, scope, msg.full_name))
        joint = [f for f in msg.fields if is_joint_float(f)]
        if joint:  # appendix B: the ScalarTuple is the last element of the tuple
            stat = msg.full_name + JOINT
            mean, cov = self.stats.scalar_mean.get(stat), self.stats.scalar_cov.get(stat)
            cfg = ScalarTupleConfig(self.cfg.latent_dim, self.cfg.whitening_decay, self.cfg.whitening_eps,
                                    self.cfg.scalar_likelihood)
            key = self.module(scope + JOINT, lambda: ScalarTuple(len(joint), cfg, mean, cov))
            children.append(ScalarsNode((msg.path + "." if msg.path else "") + "#floats", key, joint))
        tkey = self.module(scope, lambda: Tuple(len(children), self.cfg.latent_dim, self.cfg.gru()))
        return TupleNode(msg.path if path is None else path, tkey, msg, children, full_name=msg.full_name)


def compile_plan(tree: MessageNode, cfg: ModelConfig, stats: FitStats) -> tuple[TupleNode, nn.ModuleDict]:
    """Build the plan and its modules; one ConfigError lists every problem found."""
    c = _Compiler(cfg, stats)
    root = c.message(tree)
    unused = sorted(set(cfg.field_overrides) - c.used_overrides)
    c.problems += [Violation(k, "field_overrides names no integer or string field of the schema") for k in unused]
    if c.problems:
        raise ConfigError("the model config does not fit the schema", c.problems)
    return root, nn.ModuleDict(c.modules)
