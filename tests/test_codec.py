"""Codec round trips: record -> Batch -> record unchanged, one case per protobuf type.

The ground-truth path (`model.codec.encode` then `model.codec.decode`) must give
back exactly the record it was given: same wire bytes, same field presence. Also the
bad-data errors of the codec (DataError with the field path).
"""
from __future__ import annotations

import math

import pytest

from schemas import PROTO2, TYPES_PROTO, schema, tiny, wire
from synth.errors import ConfigError, DataError
from synth.model import Model
from synth.schema.tree import INT_RANGES
from synth.plan import CategoricalNode, NumberNode, walk


CITY_PROTO = """
syntax = "proto3";
package city;
message Row { string street = 1; string city = 2; }
"""


def make_model(text: str, message: str, records: list, **cfg):
    return Model.create(schema(text, message), records=records, config=tiny(**cfg))


def roundtrip(model: Model, records: list) -> list:
    msgs = model.messages(records)
    out = model.codec.decode(model.codec.encode(msgs))
    assert len(out) == len(msgs)
    return out


def assert_same(originals: list, decoded: list) -> None:
    assert wire(decoded) == wire(originals)
    for a, b in zip(originals, decoded):
        assert a == b
        assert [f.name for f, _ in a.ListFields()] == [f.name for f, _ in b.ListFields()]


def leaf_kinds(model: Model) -> dict[str, type]:
    return {n.path: type(n) for n in walk(model.plan)}


# -- integers: every kind, extreme values, as categorical and as number ----------------------
INT_MESSAGES = {
    "int32": "Int32s", "int64": "Int64s", "uint32": "Uint32s", "uint64": "Uint64s",
    "sint32": "Sint32s", "sint64": "Sint64s", "fixed32": "Fixed32s", "fixed64": "Fixed64s",
    "sfixed32": "Sfixed32s", "sfixed64": "Sfixed64s",
}


def int_values(kind: str, choice: str = "categorical") -> list[int]:
    """Extremes of the range and values around zero; as a number (float64), only exact doubles."""
    lo, hi = INT_RANGES[kind]
    vals = {lo, hi, 0, 1, 2, 12345}
    if choice == "categorical" or hi < 2**53:
        vals |= {hi - 1, lo + 1}
    if lo < 0:
        vals |= {-1, -12345}
    if hi > 2**53:  # 64-bit: the largest exactly representable doubles
        vals |= {2**53, -(2**53) if lo < 0 else 2**53 - 1}
    return sorted(vals)


@pytest.mark.parametrize("choice", ["categorical", "number"])
@pytest.mark.parametrize("kind", sorted(INT_MESSAGES))
def test_int_roundtrip(kind, choice):
    text, message = TYPES_PROTO, INT_MESSAGES[kind]
    cls = schema(text, message).message_class
    records = [cls(v=v) for v in int_values(kind, choice)]
    model = make_model(text, message, records, field_overrides={"v": choice})
    node = {"categorical": CategoricalNode, "number": NumberNode}[choice]
    assert leaf_kinds(model)["v"] is node
    out = roundtrip(model, records)
    assert [m.v for m in out] == int_values(kind, choice)
    assert_same(records, out)


@pytest.mark.parametrize("kind", ["int64", "uint64", "sint64", "fixed64", "sfixed64"])
def test_int_beyond_2_53_categorical_is_exact(kind):
    cls = schema(TYPES_PROTO, INT_MESSAGES[kind]).message_class
    values = [2**53 + 1, 2**60 + 1, 2**60 + 3, INT_RANGES[kind][1] - 1]
    records = [cls(v=v) for v in values]
    model = make_model(TYPES_PROTO, INT_MESSAGES[kind], records, field_overrides={"v": "categorical"})
    assert [m.v for m in roundtrip(model, records)] == values


@pytest.mark.parametrize("kind", ["int64", "uint64", "sint64", "fixed64", "sfixed64"])
def test_int_beyond_2_53_as_number_goes_through_float64(kind):
    # Documented codec behaviour ("ints are rounded and clamped to their type's range"):
    # a number leaf holds float64, so past 2**53 the value is the nearest double, clamped.
    lo, hi = INT_RANGES[kind]
    cls = schema(TYPES_PROTO, INT_MESSAGES[kind]).message_class
    values = [2**53 + 1, 2**60 + 1, hi - 1, hi]
    records = [cls(v=v) for v in values]
    model = make_model(TYPES_PROTO, INT_MESSAGES[kind], records, field_overrides={"v": "number"})
    got = [m.v for m in roundtrip(model, records)]
    assert got == [max(lo, min(hi, int(float(v)))) for v in values]
    assert got[0] == 2**53 and got[1] == 2**60 and got[3] == hi


def test_int_automatic_choice_follows_distinct_values():
    cls = schema(TYPES_PROTO, "Int32s").message_class
    few = make_model(TYPES_PROTO, "Int32s", [cls(v=v % 3) for v in range(30)])
    many = make_model(TYPES_PROTO, "Int32s", [cls(v=v) for v in range(30)])
    assert leaf_kinds(few)["v"] is CategoricalNode
    assert leaf_kinds(many)["v"] is NumberNode


def test_int_override_categorical_with_many_distinct_values():
    # An explicit "categorical" must work whatever int_categorical_max says: the values
    # were all seen in the training data.
    cls = schema(TYPES_PROTO, "Int32s").message_class
    records = [cls(v=v * 7) for v in range(40)]
    model = make_model(TYPES_PROTO, "Int32s", records, field_overrides={"v": "categorical"})
    assert leaf_kinds(model)["v"] is CategoricalNode
    assert_same(records, roundtrip(model, records))


def test_override_of_unknown_field_is_a_config_error():
    cls = schema(TYPES_PROTO, "Int32s").message_class
    with pytest.raises(ConfigError) as e:
        make_model(TYPES_PROTO, "Int32s", [cls(v=1)], field_overrides={"nope": "number"})
    assert "nope" in str(e.value)


# -- every other type ---------------------------------------------------------------------------
def _doubles(c):
    vals = [0.0, -0.0, 1.5, -2.25, math.pi, 5e-324, 2.2250738585072014e-308,
            1.7976931348623157e308, -1.7976931348623157e308, 44.4758, -73.2121]
    return [c(v=v, w=-v / 3) for v in vals]


def _floats(c):
    return [c(v=v) for v in [0.0, -0.0, 0.1, -1.5, 3.4028234663852886e38, -3.4028234663852886e38,
                             1.401298464324817e-45, 1e-38, 123456.789]]


def _strings(c):
    vals = ["", "a", "hello world", "héllo wörld", "日本語テキスト", "emoji 🎉👍🏽🇻🇹", "a\x00b",
            "tab\tnew\nline", "x" * 300, "\u200b\ufeff"]
    return [c(v=v, w=v[::-1]) for v in vals]


def _bytes(c):
    return [c(v=v) for v in [b"", b"\x00", b"\x00\xff\xfe\x00", bytes(range(256)), b"\xc3\x28",
                             b"\xed\xa0\x80", "ok ü".encode()]]


def _enums(c):
    return [c(v=v) for v in [0, 5, -3, 1000]]


def _nested(c):
    return [c(), c(tag="t"), c(inner={}), c(inner={"name": "a", "n": -7, "x": 2.5}),
            c(inner={"n": 2**31 - 1}, tag="ü")]


def _repeated_scalars(c):
    return [c(), c(ints=[1, -2, 2**31 - 1, -(2**31)], strs=["", "x", "ÿ"], dbls=[0.5, -1e300],
                   flags=[True, False, True], kinds=[5, -3, 0, 1000], blobs=[b"", b"\x00\xff"]),
            c(ints=[0], strs=["only"]), c(dbls=[1.0] * 5)]


def _repeated_messages(c):
    return [c(), c(items=[{}]), c(items=[{"name": "a"}, {"n": 3}, {"x": -1.25, "name": "ß"}])]


def _proto3_optional(c):
    return [c(), c(i=0, s="", d=0.0, b=False, e=0), c(i=-5, s="x", d=2.5, b=True, e=1000),
            c(s="only")]


def _oneof(c):
    return [c(), c(text=""), c(text="hi"), c(number=0), c(number=-9), c(inner={}),
            c(inner={"name": "in"}), c(real=0.0), c(real=-7.5, after="z"), c(after="no case")]


def _maps(c):
    return [c(), c(counts={"a": 1, "": 0, "ü": -5, "zz": 2**31 - 1}),
            c(by_id={-(2**63): {"name": "min"}, 2**63 - 1: {}, 0: {"n": 4}}),
            c(counts={"k": 3}, by_id={42: {"x": 1.5}})]


def _tree(c):
    # Tree appears at most 3 times on a path (max_recursion=3): root, child, grandchild.
    leaf = {"label": "leaf"}
    return [c(), c(label="root"),
            c(label="r", children=[{"label": "c1", "children": [leaf, {}]}, {"label": "c2"}]),
            c(label="r", parent={"label": "p", "parent": {"label": "pp"}}),
            c(children=[{"parent": {"label": "up"}}])]


def _times(c):
    return [c(), c(at={"seconds": 1_700_000_000, "nanos": 123_456_789}),
            c(at={"seconds": -62_135_596_800}, took={"seconds": -5, "nanos": -500_000_000}),
            c(at={"seconds": 253_402_300_799, "nanos": 999_999_999}, took={"seconds": 315_576_000_000}),
            c(at={}, took={})]


def _wrappers(c):
    return [c(), c(s={"value": ""}, i={"value": 0}, d={"value": 0.0}, b={"value": False}),
            c(s={"value": "wrapped ✓"}, i={"value": -(2**63)}, d={"value": -1e-300}, b={"value": True}),
            c(i={"value": 2**63 - 1})]


def _expr(c):
    # at most 3 Expr on a path (the default max_recursion)
    return [c(), c(literal=0), c(literal=-(2**63)), c(negate={"literal": 5}),
            c(add={"left": {"literal": 1}, "right": {"negate": {"literal": 2}}}), c(add={})]


def _json(c):
    return [c(), c(name="n", doc={}), c(doc={"a": 1.5, "b": "x", "c": True, "d": None}),
            c(doc={"list": [1, "two", False]})]


def _empties(c):
    return [c(), c(a={}), c(b={}, x=3), c(a={}, b={}, many=[{}, {}, {}])]


CASES = [
    ("double", "Doubles", _doubles), ("float", "Floats", _floats), ("string", "Strings", _strings),
    ("bytes", "Bytes", _bytes), ("enum", "Enums", _enums), ("nested", "Nested", _nested),
    ("repeated_scalars", "RepeatedScalars", _repeated_scalars),
    ("repeated_messages", "RepeatedMessages", _repeated_messages),
    ("proto3_optional", "Proto3Optional", _proto3_optional), ("oneof", "Choice", _oneof),
    ("maps", "Maps", _maps), ("recursive", "Tree", _tree), ("timestamp_duration", "Times", _times),
    ("wrappers", "Wrappers", _wrappers), ("recursive_oneof", "Expr", _expr),
    ("struct", "Json", _json), ("empty_messages", "Empties", _empties),
]


@pytest.mark.parametrize("message,factory", [pytest.param(m, f, id=i) for i, m, f in CASES])
def test_type_roundtrip(message, factory):
    cls = schema(TYPES_PROTO, message).message_class
    records = factory(cls)
    model = make_model(TYPES_PROTO, message, records)
    assert_same(records, roundtrip(model, records))


def test_bool_roundtrip():
    cls = schema(TYPES_PROTO, "Bools").message_class
    records = [cls(v=True), cls(v=False), cls(v=True)]
    model = make_model(TYPES_PROTO, "Bools", records)
    assert [m.v for m in roundtrip(model, records)] == [True, False, True]


def test_proto3_optional_presence_is_kept():
    cls = schema(TYPES_PROTO, "Proto3Optional").message_class
    records = _proto3_optional(cls)
    out = roundtrip(make_model(TYPES_PROTO, "Proto3Optional", records), records)
    for name in "isdbe":
        assert [m.HasField(name) for m in out] == [m.HasField(name) for m in records]
    assert out[1].HasField("i") and out[1].i == 0 and not out[0].HasField("i")


def test_oneof_case_is_kept():
    cls = schema(TYPES_PROTO, "Choice").message_class
    records = _oneof(cls)
    out = roundtrip(make_model(TYPES_PROTO, "Choice", records), records)
    assert [m.WhichOneof("pick") for m in out] == [m.WhichOneof("pick") for m in records]
    assert out[3].WhichOneof("pick") == "number" and out[3].number == 0


def test_nested_presence_is_kept():
    cls = schema(TYPES_PROTO, "Nested").message_class
    records = _nested(cls)
    out = roundtrip(make_model(TYPES_PROTO, "Nested", records), records)
    assert [m.HasField("inner") for m in out] == [False, False, True, True, True]


def test_unicode_strings_are_byte_exact():
    cls = schema(TYPES_PROTO, "Strings").message_class
    records = _strings(cls)
    out = roundtrip(make_model(TYPES_PROTO, "Strings", records), records)
    assert [m.v for m in out] == [m.v for m in records]


# -- proto2: required fields, defaults, set vs unset ---------------------------------------------
def _proto2_records(cls):
    base = dict(id="a", count=1, weight=2.5)
    return [
        cls(**base),  # every optional unset: getters give defaults, HasField is False
        cls(**base, level=7, tag="none", kind=2, score=0.5, flag=True),  # set to the defaults
        cls(id="", count=0, weight=0.0, level=0, tag="", kind=1, score=0.0, flag=False),
        cls(**base, main={"sku": "m"}, card="4111", stock={"x": 1, "y": 0}, parts=[{"sku": "p", "qty": 1}]),
        cls(**base, main={"sku": "m", "qty": 5}, account=2**40, parts=[{"sku": ""}, {"sku": "q", "qty": -1}]),
        cls(**base, voucher={"sku": "v"}, kind=7),
    ]


def test_proto2_required_optional_defaults_roundtrip():
    cls = schema(PROTO2, "Order").message_class
    records = _proto2_records(cls)
    model = make_model(PROTO2, "Order", records)
    out = roundtrip(model, records)
    assert_same(records, out)
    for name in ("level", "tag", "kind", "score", "flag", "main"):
        assert [m.HasField(name) for m in out] == [m.HasField(name) for m in records], name
    assert not out[0].HasField("level") and out[0].level == 7 and out[0].tag == "none"
    assert out[1].HasField("level") and out[1].level == 7
    assert all(m.IsInitialized() for m in out)
    assert [m.WhichOneof("payment") for m in out] == [None, None, None, "card", "account", "voucher"]


# -- bad data: DataError naming the field path ------------------------------------------------------
def test_enum_value_not_in_model_classes_is_a_data_error():
    cls = schema(TYPES_PROTO, "Enums").message_class
    model = make_model(TYPES_PROTO, "Enums", [cls(v=5)])
    bad = cls(v=7)  # proto3 enums are open: 7 is a legal wire value, but not a class
    with pytest.raises(DataError) as e:
        model.codec.encode([cls(v=5), bad])
    assert any(v.path == "record[1].v" for v in e.value.violations), e.value.violations
    with pytest.raises(DataError) as e:
        model.encode([cls(v=0), bad])
    assert "record[1].v" in str(e.value)


def test_categorical_int_value_not_seen_is_a_data_error_without_the_escape():
    cls = schema(TYPES_PROTO, "Int32s").message_class
    model = make_model(TYPES_PROTO, "Int32s", [cls(v=1), cls(v=2)], categorical_escape=False)
    with pytest.raises(DataError) as e:
        model.codec.encode([cls(v=3)])
    assert [v.path for v in e.value.violations] == ["record[0].v"]


def test_unseen_and_empty_values_go_through_the_escape_and_round_trip():
    """With the escape (the default), a categorical int or string takes any valid value:
    classes for the frequent ones, the field's own model (number, characters) for the rest."""
    ints = schema(TYPES_PROTO, "Int32s").message_class
    model = make_model(TYPES_PROTO, "Int32s", [ints(v=v) for v in (1, 1, 2, 2, 7)])
    v = next(n for n in walk(model.plan) if n.path == "v")
    assert type(v).__name__ == "CategoricalNode" and v.classes == [1, 2, 7] and v.other is not None
    assert [m.v for m in roundtrip(model, [ints(v=x) for x in (1, 3, 2, -40, 7)])] == [1, 3, 2, -40, 7]
    strings = [{"city": c, "street": f"{i} main st"} for i, c in enumerate(["a", "b"] * 10 + ["c"])]
    model = make_model(CITY_PROTO, "Row", strings)
    city = next(n for n in walk(model.plan) if n.path == "city")
    assert city.classes == ["a", "b"] and type(city.other).__name__ == "StringNode"
    assert type(next(n for n in walk(model.plan) if n.path == "street")).__name__ == "StringNode"
    probe = [{"city": c, "street": "x"} for c in ("a", "", "never seen", "b", "c")]
    assert [m.city for m in roundtrip(model, probe)] == ["a", "", "never seen", "b", "c"]
    model.encode(probe)  # and the VAE embeds them


def test_the_automatic_categorical_test_tells_a_long_tail_from_open_text():
    """Streets (most rows hold a value seen before) are categorical with an escape; identifiers
    (every value once) stay characters; the class count is capped by frequency."""
    from synth.kinds.categorical import closed_vocabulary

    streets = {"MAIN ST": 40, "ELM ST": 30, "OAK AVE": 12, "RARE RD": 1, "LONE LN": 1}
    values, counts = list(streets), list(streets.values())
    assert closed_vocabulary(values, counts, 2, 0.8, 100) == ["ELM ST", "MAIN ST", "OAK AVE"]
    assert closed_vocabulary(values, counts, 2, 0.99, 100) is None  # 82 of 84 rows: under 99%
    assert closed_vocabulary(values, counts, 2, 0.5, 2) == ["ELM ST", "MAIN ST"]  # the most frequent
    ids = [f"id-{i}" for i in range(50)]
    assert closed_vocabulary(ids, [1] * 50, 2, 0.8, 100) is None

    rows = [{"city": "x", "street": s} for s, k in streets.items() for _ in range(k)]
    rows += [{"city": "x", "street": f"{i} unique text"} for i in range(5)]
    model = make_model(CITY_PROTO, "Row", rows)
    street = next(n for n in walk(model.plan) if n.path == "street")
    assert street.classes == ["ELM ST", "MAIN ST", "OAK AVE"] and street.other is not None
    model = make_model(CITY_PROTO, "Row", rows, categorical_min_coverage=0.99)
    assert type(next(n for n in walk(model.plan) if n.path == "street")).__name__ == "StringNode"


def test_nan_and_inf_are_data_errors_with_the_path():
    cls = schema(TYPES_PROTO, "Doubles").message_class
    model = make_model(TYPES_PROTO, "Doubles", [cls(v=1.0), cls(v=2.0)])
    with pytest.raises(DataError) as e:
        model.codec.encode([cls(v=1.0), cls(v=float("nan")), cls(w=float("inf"))])
    paths = [v.path for v in e.value.violations]
    assert len(paths) == 2
    assert paths[0].startswith("record[1].") and paths[1].startswith("record[2].")
    # the violation names the field(s) of the joint ScalarTuple
    assert "v" in str(e.value) or "#floats" in str(e.value)


def test_nan_in_number_leaf_is_a_data_error():
    cls = schema(TYPES_PROTO, "Proto3Optional").message_class
    model = make_model(TYPES_PROTO, "Proto3Optional", [cls(d=1.0), cls(d=2.0)])
    with pytest.raises(DataError) as e:
        model.codec.encode([cls(d=float("nan"))])
    assert any(v.path.startswith("record[0].d") for v in e.value.violations), e.value.violations


def test_record_deeper_than_max_recursion_is_a_data_error():
    cls = schema(TYPES_PROTO, "Tree").message_class
    ok = cls(label="r", children=[{"label": "c", "children": [{"label": "g"}]}])
    model = make_model(TYPES_PROTO, "Tree", [ok])
    too_deep = cls(label="r", children=[{"children": [{"children": [{"label": "too deep"}]}]}])
    with pytest.raises(DataError) as e:
        model.codec.encode([ok, too_deep])
    assert len(e.value.violations) == 1
    v = e.value.violations[0]
    assert v.path == "record[1].children[].children[].children", v
    assert "max_recursion" in v.message
    # a bigger bound accepts it, and round-trips it
    deeper = make_model(TYPES_PROTO, "Tree", [ok], max_recursion=4)
    assert_same([too_deep], roundtrip(deeper, [too_deep]))


def test_errors_list_every_bad_record():
    cls = schema(TYPES_PROTO, "Enums").message_class
    model = make_model(TYPES_PROTO, "Enums", [cls(v=5)])
    with pytest.raises(DataError) as e:
        model.codec.encode([cls(v=8), cls(v=5), cls(v=9)])
    assert [v.path for v in e.value.violations] == ["record[0].v", "record[2].v"]
