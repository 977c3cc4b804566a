"""The plan-node kind registry (synth.kinds): every node class has one kind that declares
how it is compiled, batched, run through the VAE and rendered, and a new kind plugs in
by registering it in one place (docs/kinds.md)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import synth.plan
from schemas import PROTO2, RECURSIVE_PROTO, TYPES_PROTO, proto2_records, schema, tiny, tree_records, wire
from synth.errors import DataError, Violation
from synth.inspect_tree import render
from synth.kinds import KINDS, Kind, Node, kind_of, register, unregister, value_kinds
from synth.kinds.base import at
from synth.kinds.categorical import CategoricalKind
from synth.kinds.number import NumberKind
from synth.kinds.string import StringKind
from synth.kinds.tuple import TupleKind
from synth.model import Model
from synth.plan import children_of, walk
from synth.schema.tree import FieldNode

NODE_CLASSES = [getattr(synth.plan, name) for name in synth.plan.__all__
                if isinstance(getattr(synth.plan, name), type) and issubclass(getattr(synth.plan, name), Node)
                and getattr(synth.plan, name) is not Node]

# every kind appears in at least one of these plans
PLANS = [(PROTO2, "Order", proto2_records(6)), (RECURSIVE_PROTO, "TreeNode", tree_records(6)),
         (TYPES_PROTO, "Expr", None), (TYPES_PROTO, "Maps", None), (TYPES_PROTO, "Json", None)]


def plan_models() -> list[Model]:
    return [Model.create(schema(text, msg), records=recs, config=tiny()) for text, msg, recs in PLANS]


# -- the registry covers the plan -------------------------------------------------------------
def test_every_node_class_of_the_plan_has_exactly_one_registered_kind():
    assert len(NODE_CLASSES) == 9
    for cls in NODE_CLASSES:
        kind = kind_of(cls)
        assert KINDS[cls] is kind and kind.node_type is cls
    assert set(NODE_CLASSES) <= set(KINDS)


def test_every_node_in_real_plans_dispatches_to_its_kind_and_all_kinds_occur():
    seen = set()
    for model in plan_models():
        for node in walk(model.plan):
            kind = kind_of(node)
            assert kind is KINDS[type(node)]
            assert children_of(node) == kind.children(node)
            seen.add(type(node))
    assert seen == set(NODE_CLASSES)


def test_builtin_kinds_implement_the_codec_and_vae_hooks():
    for cls in NODE_CLASSES:
        kind = type(kind_of(cls))
        for hook in ("extract", "build", "encode", "decode_train", "generate"):
            assert getattr(kind, hook) is not getattr(Kind, hook), (cls.__name__, hook)
        if kind.leaf:
            assert kind.encode_values is not Kind.encode_values, cls.__name__
        if kind.packed:
            assert kind.pack is not Kind.pack and kind.flush_losses is not Kind.flush_losses


def test_value_claims_are_tried_by_priority_with_number_as_the_fallback():
    order = [type(k) for k in value_kinds()]
    assert order.index(TupleKind) < order.index(CategoricalKind) < order.index(StringKind) < order.index(NumberKind)
    assert order[-1] is NumberKind


def test_inspect_lines_are_the_kinds_renderings():
    model = plan_models()[0]
    text = render(model)
    for node in walk(model.plan):
        assert kind_of(node).render(node) in text


def test_unknown_node_classes_are_refused_and_subclasses_inherit_their_kind():
    @dataclass
    class Stray(Node):
        pass

    with pytest.raises(TypeError, match="Stray"):
        kind_of(Stray("x", ""))

    class SpecialTuple(synth.plan.TupleNode):
        pass

    assert kind_of(SpecialTuple) is KINDS[synth.plan.TupleNode]
    with pytest.raises(TypeError):
        register(Stray)  # not a Kind


# -- a new kind in one place ------------------------------------------------------------------
TOY_PROTO = """
syntax = "proto3";
package toy;
message Versioned { int32 version = 1; string name = 2; repeated int32 history = 3; }
"""


@dataclass
class ConstantNode(Node):
    """Test-only kind: an int field named `version` that always holds the same value."""

    field: FieldNode
    value: int = 7


@pytest.fixture
def constant_kind():
    @register
    class ConstantKind(Kind):
        node_type = ConstantNode
        priority = 100  # ahead of the built-in claims

        def compile_value(self, c, f, path, scope, stat_key):
            return ConstantNode(path, "", f) if f.name == "version" and not f.repeated else None

        def extract(self, codec, node, data, values, batch, errors):
            errors += [Violation(at(node, data, i), f"must be {node.value}")
                       for i, v in enumerate(values) if v != node.value]

        def build(self, codec, node, data, batch):
            return [node.value] * data.n

        def encode(self, vae, node, data, batch, enc):
            return torch.zeros(data.n, vae.cfg.latent_dim, device=vae.device)

        def decode_train(self, vae, node, data, e, batch, enc, opts, losses, pending):
            pass

        def generate(self, vae, node, data, e, batch, g, pending):
            pass

        def render(self, node):
            return f"Constant({node.value})"

    yield ConstantKind
    unregister(ConstantNode)
    assert ConstantNode not in KINDS and ConstantKind not in map(type, value_kinds())


def test_a_kind_registered_in_one_place_is_compiled_batched_run_and_rendered(constant_kind):
    records = [{"version": 7, "name": f"n{i}", "history": list(range(i))} for i in range(6)]
    model = Model.create(schema(TOY_PROTO, "Versioned"), records=records, config=tiny())
    kinds = {n.path: type(n) for n in walk(model.plan)}
    assert kinds["version"] is ConstantNode
    assert kinds["history[]"] is not ConstantNode  # the claim only takes what it wants
    version = next(c for c in model.plan.children if c.path == "version")
    assert isinstance(kind_of(version), constant_kind)

    msgs = model.messages(records)
    assert wire(model.codec.decode(model.codec.encode(msgs))) == wire(msgs)
    with pytest.raises(DataError, match="must be 7"):
        model.codec.encode(model.messages([{"version": 3}]))

    terms = model.loss(records).terms
    assert "version/skew" in terms and "name/recon" in terms
    assert all(r.version == 7 for r in model.sample(5, seed=0))
    assert all(r.version == 7 and r.name == "n1" for r in model.sample(3, seed=0, where={"name": "n1"}))
    assert "version  Constant(7)" in render(model)


def test_removing_the_toy_kind_restores_the_builtin_choice(constant_kind):
    unregister(ConstantNode)
    model = Model.create(schema(TOY_PROTO, "Versioned"), records=[{"version": 1}, {"version": 2}],
                         config=tiny())
    version = next(c for c in model.plan.children if c.path == "version")
    assert type(version).__name__ == "CategoricalNode"


@pytest.mark.parametrize("index", range(len(PLANS)))
def test_every_kind_trains_under_bf16_autocast(index):
    """`[train] precision = "bf16"` (the GPU lever; CPU autocast runs the same code): every
    kind's training forward runs with bf16 module outputs next to fp32 embeddings."""
    from synth.train import TrainConfig, Trainer

    text, msg, recs = PLANS[index]
    model = Model.create(schema(text, msg), records=recs, config=tiny())
    records = recs or model.sample(8, seed=0)
    trainer = Trainer(model, TrainConfig(steps=2, batch_size=4, precision="bf16", eval_every=0, log_every=1,
                                         checkpoint_every=0, validation_fraction=0.0), records, progress=False)
    stats = trainer.train_step()
    assert stats["loss"].dtype == torch.float32 and torch.isfinite(stats["loss"]), stats


def test_a_categorical_fed_back_by_its_projection_table_matches_its_embedding_projected():
    """Generation feeds a drawn label back as a lookup in its projection table
    (`CategoricalKind.feedback`); it must equal the next cell's projection of the label's
    embedding, escape rows (class plus characters) included."""
    from synth import store
    from synth.kinds.base import Kind

    model = store.load(store.bundled_models()["vermont-address"])
    vae, root = model.vae, model.vae.plan
    with torch.inference_mode():
        vae.eval()
        batch = vae.generate(model.sample_latents(512, torch.Generator().manual_seed(0)), 0.8, False,
                             torch.Generator().manual_seed(1), reencode=True)
        cells = vae.module_for(root).dec_cells
        escapes = 0
        for i, child in enumerate(root.children[:-1]):
            if not isinstance(child, CategoricalKind.node_type):
                continue
            data = batch.nodes[child.path]
            got = kind_of(child).feedback(vae, child, data, batch, cells[i + 1])
            want = Kind.feedback(kind_of(child), vae, child, data, batch, cells[i + 1])
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
            if child.other is not None:
                escapes += int((torch.as_tensor(data.values) == len(child.classes)).sum())
    assert escapes > 0  # the escape's path was exercised
