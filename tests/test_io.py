"""Record files: round trips for every format, the real Vermont CSV, and located errors."""
from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest

from synth.errors import DataError, InvalidArgument
from synth.datasets import vermont_csv_path
from synth.io import ReadResult, detect_format, read_records, write_records
from synth.io.binpb_format import encode_varint
from synth.records import message_class_of
from synth.schema.loader import load_schema

REPO = Path(__file__).resolve().parents[1]
VERMONT = vermont_csv_path()  # the packaged, gzipped copy of the paper's data

PROTO = """
syntax = "proto3";
package iot;

enum Color { COLOR_UNSPECIFIED = 0; RED = 1; GREEN = 2; }

message Geo { double lat = 1; float lon = 2; }

// Flat enough for CSV: scalars, one nested message, an optional, a oneof.
message Item {
  string name = 1;
  Geo geo = 2;
  Color color = 3;
  bool active = 4;
  int32 count = 5;
  bytes blob = 6;
  optional uint32 rank = 7;
  int64 big = 8;
  string post_code = 9;
  oneof extra { string label = 10; sint32 delta = 11; }
}

// Not flat: repeated and map fields (JSON Lines and binpb only).
message Bag {
  Item item = 1;
  repeated string tags = 2;
  map<string, int32> counts = 3;
  repeated Geo path = 4;
}
"""


@pytest.fixture(scope="module")
def Bag():
    return load_schema(PROTO, "Bag").message_class


@pytest.fixture(scope="module")
def Item(Bag):
    # From Bag's descriptor pool, so Items can be placed inside Bags.
    return message_class_of(Bag.DESCRIPTOR.fields_by_name["item"].message_type)


def items(Item):
    return [
        Item(name="plain", geo={"lat": 44.47, "lon": -73.21}, color=1, active=True, count=-5,
             blob=b"\x00\x01\xfe", rank=0, big=-(2**62), post_code="05401", label="x"),
        Item(name="  spaced, \"quoted\"\nand multi-line  ", color=2, count=2**31 - 1, delta=-3),
        Item(name="ünïcødé ✓", geo={"lat": 0.1, "lon": 0.1}, post_code="007", rank=4_000_000_000),
        Item(),  # everything unset
        Item(name="99", color=7),  # unknown value of an open enum
    ]


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def assert_located(err: pytest.ExceptionInfo, *fragments: str) -> None:
    text = str(err.value)
    for f in fragments:
        assert f in text, f"{f!r} not in error:\n{text}"


# ---------------------------------------------------------------------------- formats


@pytest.mark.parametrize("name, fmt", [
    ("a.csv", "csv"), ("a.jsonl", "jsonl"), ("a.ndjson", "jsonl"), ("a.binpb", "binpb"),
    ("dir.v2/A.CSV.GZ", "csv"), ("a.binpb.gz", "binpb"),
])
def test_detect_format(name, fmt):
    assert detect_format(name) == fmt


@pytest.mark.parametrize("name", ["a.txt", "a", "a.gz", "a.json"])
def test_detect_format_unknown_extension(name):
    with pytest.raises(DataError) as err:
        detect_format(name)
    assert "--data-format" in str(err.value) and "--data-format" in err.value.details["hint"]
    assert name in str(err.value)


def test_unknown_fmt_argument(tmp_path, Item):
    with pytest.raises(InvalidArgument, match="unknown data format"):
        read_records(write_text(tmp_path / "a.csv", "name\n"), Item, fmt="xml")


def test_missing_file(tmp_path, Item):
    with pytest.raises(DataError, match="not found"):
        read_records(tmp_path / "nope.csv", Item)


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("filename", ["items.csv", "items.jsonl", "items.binpb",
                                      "items.csv.gz", "items.jsonl.gz", "items.binpb.gz"])
def test_round_trip_flat(tmp_path, Item, filename):
    path = tmp_path / filename
    assert write_records(items(Item), path, Item) == 5
    result = read_records(path, Item)
    assert isinstance(result, ReadResult)
    assert result.records == items(Item)
    assert (result.skipped, result.errors) == (0, [])


@pytest.mark.parametrize("filename", ["bags.jsonl", "bags.binpb", "bags.ndjson.gz"])
def test_round_trip_repeated_and_map(tmp_path, Bag, Item, filename):
    bags = [Bag(item=m, tags=["a", "b,c"], counts={"x": 1, "y": -2}, path=[{"lat": 1.0}, {"lon": 2.0}])
            for m in items(Item)] + [Bag()]
    write_records(bags, tmp_path / filename, Bag)
    assert read_records(tmp_path / filename, Bag).records == bags


def test_write_accepts_dicts_and_descriptor(tmp_path, Item):
    desc = Item.DESCRIPTOR
    write_records([{"name": "a", "postCode": "05401"}, '{"count": 3}'], tmp_path / "d.csv", desc)
    got = read_records(tmp_path / "d.csv", desc).records
    assert [(m.name, m.post_code, m.count) for m in got] == [("a", "05401", 0), ("", "", 3)]


def test_write_to_streams(Item):
    text = io.StringIO()
    write_records(items(Item)[:2], text, Item, "csv")
    assert text.getvalue().splitlines()[0] == \
        "name,geo.lat,geo.lon,color,active,count,blob,rank,big,post_code,label,delta,extra"
    raw = io.BytesIO()
    write_records(items(Item), raw, Item, "binpb")
    assert not raw.closed
    raw.seek(0)
    first = Item.FromString(raw.read(raw.getvalue()[0] + 1)[1:])  # one-byte size prefix
    assert first == items(Item)[0]
    jsonl = io.BytesIO()
    write_records(items(Item)[2:3], jsonl, Item, "jsonl")
    assert jsonl.getvalue().decode("utf-8") == \
        '{"name":"ünïcødé ✓","geo":{"lat":0.1,"lon":0.1},"rank":4000000000,"post_code":"007"}\n'


def test_write_to_stream_needs_fmt(Item):
    with pytest.raises(InvalidArgument, match="fmt is required"):
        write_records([], io.StringIO(), Item)


def test_write_bad_record_names_index_and_leaves_no_file(tmp_path, Item):
    path = tmp_path / "out.csv"
    with pytest.raises(DataError) as err:
        write_records([{"name": "ok"}, {"count": "lots"}], path, Item)
    assert_located(err, "record[1]", "count")
    assert not path.exists()


def test_csv_writer_refuses_repeated_and_map_fields(tmp_path, Bag):
    with pytest.raises(DataError) as err:
        write_records([Bag()], tmp_path / "bags.csv", Bag)
    assert_located(err, "tags", "counts", "path", "repeated", "map")
    assert ".jsonl" in str(err.value) and ".jsonl" in err.value.details["hint"]
    assert not (tmp_path / "bags.csv").exists()


def test_csv_writer_cells(Item):
    out = io.StringIO()
    write_records([Item(geo={"lon": 0.1}, rank=0, active=False, blob=b"hi")], out, Item, "csv")
    row = out.getvalue().splitlines()[1].split(",")
    cells = dict(zip(out.getvalue().splitlines()[0].split(","), row))
    assert cells["geo.lat"] == "0.0"  # geo is set, lat has no presence: its value is written
    assert cells["geo.lon"] == "0.1"  # shortest float32 text, not 0.10000000149011612
    assert cells["rank"] == "0"  # optional and set to zero: written
    assert cells["label"] == cells["delta"] == ""  # unset oneof
    assert cells["active"] == "false" and cells["color"] == "COLOR_UNSPECIFIED"
    assert cells["blob"] == "aGk="


# ---------------------------------------------------------------------------- CSV reading


def test_vermont_addresses_csv():
    address = load_schema(REPO / "protos/examples/address.proto", "Address")
    result = read_records(VERMONT, address.message_class)
    assert len(result.records) == 33_432
    assert result.skipped == 0
    first = result.records[0]  # -73.2349...,42.9350...,70,MCCARTHY ACRES,,SHAFTSBURY,,,05262
    assert first.postcode == "05262" and first.number == "70" and first.street == "MCCARTHY ACRES"
    assert first.lon == pytest.approx(-73.2349, abs=1e-4) and first.lat == pytest.approx(42.935, abs=1e-3)
    postcodes = {m.postcode for m in result.records}
    assert "05401" in postcodes  # Burlington, leading zero intact
    assert all(isinstance(p, str) for p in postcodes)
    assert sum(p.startswith("0") for p in postcodes) > 100


def test_csv_headers_match_case_insensitively_and_by_json_name(tmp_path, Item):
    path = write_text(tmp_path / "h.csv", "NAME,Geo.LAT,GEO.lon,COLOR,Active,POSTCODE,postCode\n"
                                          "x,1.5,2.5,green,TRUE,,05401\n")
    with pytest.raises(DataError):  # POSTCODE is not post_code (no underscore), so it is unknown
        read_records(path, Item)
    write_text(path, "NAME,Geo.LAT,GEO.lon,COLOR,Active,PostCode\nx,1.5,2.5,green,TRUE,05401\n")
    (m,) = read_records(path, Item).records
    assert (m.name, m.geo.lat, m.geo.lon, m.color, m.active, m.post_code) == ("x", 1.5, 2.5, 2, True, "05401")


def test_csv_dotted_nested_columns_and_empty_cells(tmp_path, Item):
    path = write_text(tmp_path / "n.csv", "name,geo.lat,geo.lon,rank,count\n"
                                          "a,44.5,,,\n"
                                          "b,,,0,7\n")
    a, b = read_records(path, Item).records
    assert a.HasField("geo") and a.geo.lat == 44.5 and a.geo.lon == 0
    assert not a.HasField("rank")  # empty cell: unset, even for a field with presence
    assert not b.HasField("geo")  # all geo.* cells empty: geo stays unset
    assert b.HasField("rank") and b.rank == 0 and b.count == 7


def test_csv_values_are_parsed_by_field_type(tmp_path, Item):
    path = write_text(tmp_path / "v.csv", "name,post_code,count,big,active,color,blob,delta\n"
                                          "0012,00501, 12 ,-9000000000,0,1,3q2+7w,-4\n")
    (m,) = read_records(path, Item).records
    assert (m.name, m.post_code) == ("0012", "00501")  # strings verbatim, never numbers
    assert (m.count, m.big, m.active, m.color, m.delta) == (12, -9_000_000_000, False, 1, -4)
    assert m.blob == b"\xde\xad\xbe\xef"


def test_csv_strings_are_verbatim(tmp_path, Item):
    path = write_text(tmp_path / "s.csv", 'name,label\n" padded ",1e5\n')
    (m,) = read_records(path, Item).records
    assert (m.name, m.label) == (" padded ", "1e5")


def test_csv_byte_order_mark(tmp_path, Item):
    (tmp_path / "bom.csv").write_bytes("\ufeffname,count\nx,1\n".encode("utf-8"))
    assert read_records(tmp_path / "bom.csv", Item).records == [Item(name="x", count=1)]


def test_csv_header_problems_are_listed_together(tmp_path, Bag):
    path = write_text(tmp_path / "bags.csv", "item.name,tags,bogus,item.geo,item.nope,counts\nx,,,,,\n")
    with pytest.raises(DataError) as err:
        read_records(path, Bag)
    assert_located(err, "bags.csv:1", "'tags'", "'bogus'", "'item.geo'", "'item.nope'", "'counts'",
                   "repeated", "map", ".jsonl", "item.geo.lat")
    assert len(err.value.violations) == 5


def test_csv_duplicate_column(tmp_path, Item):
    path = write_text(tmp_path / "dup.csv", "name,NAME\na,b\n")
    with pytest.raises(DataError, match="repeats column"):
        read_records(path, Item)


@pytest.mark.parametrize("header, cell, words", [
    ("count", "abc", ["'abc' is not an integer"]),
    ("count", "1.5", ["not an integer"]),
    ("count", "2147483648", ["out of range for int32"]),
    ("rank", "-1", ["out of range for uint32"]),
    ("big", "9223372036854775808", ["out of range for int64"]),
    ("geo.lon", "1e39", ["out of range for float"]),
    ("geo.lat", "1e400", ["out of range for double"]),
    ("geo.lat", "north", ["not a number"]),
    ("active", "yes", ["not a boolean"]),
    ("color", "PURPLE", ["not a value of enum iot.Color", "RED"]),
    ("blob", "not base64!", ["not base64"]),
])
def test_csv_bad_cell_names_file_line_and_field(tmp_path, Item, header, cell, words):
    # A quoted cell spanning two lines first: the bad row starts on file line 4.
    path = write_text(tmp_path / "bad.csv", f'name,{header}\n"two\nlines",\nok,{cell}\n')
    with pytest.raises(DataError) as err:
        read_records(path, Item)
    assert_located(err, "bad.csv:4", f"field {header}", *words)


def test_csv_all_bad_cells_of_a_row_are_reported(tmp_path, Item):
    path = write_text(tmp_path / "bad.csv", "count,active\nx,y\n")
    with pytest.raises(DataError) as err:
        read_records(path, Item)
    assert [v.path for v in err.value.violations] == ["bad.csv:2", "bad.csv:2"]


def test_csv_oneof_conflict(tmp_path, Item):
    path = write_text(tmp_path / "o.csv", "label,delta\na,1\n")
    with pytest.raises(DataError) as err:
        read_records(path, Item)
    assert_located(err, "o.csv:2", "oneof extra")


@pytest.mark.parametrize("case", [dict(label=""), dict(delta=0), dict(label="", geo={"lat": 1.0}), {}])
def test_csv_oneof_case_at_its_default_survives_a_round_trip(tmp_path, Item, case):
    """A oneof string set to "" (or a number set to 0) is written in the oneof's column, and read back."""
    path = tmp_path / "d.csv"
    write_records([Item(**case)], path, Item)
    (got,) = read_records(path, Item).records
    assert got == Item(**case) and got.WhichOneof("extra") == Item(**case).WhichOneof("extra")


def test_csv_oneof_column_must_agree_with_the_cells(tmp_path, Item):
    for text, words in [("label,extra\nx,delta\n", "names delta but field label is set"),
                        ("extra\nnope\n", "not a case of oneof extra")]:
        with pytest.raises(DataError) as err:
            read_records(write_text(tmp_path / "o.csv", text), Item)
        assert_located(err, "o.csv:2", "oneof extra", words)


def test_csv_row_width(tmp_path, Item):
    path = write_text(tmp_path / "w.csv", "name,count\na,1\nb,2,3\n")
    with pytest.raises(DataError) as err:
        read_records(path, Item)
    assert_located(err, "w.csv:3", "3 cells", "header has 2")


def test_csv_skip_bad_counts(tmp_path, Item):
    path = write_text(tmp_path / "skip.csv", "name,count,active\n"
                                             "a,1,true\n"
                                             "b,x,maybe\n"
                                             "\n"
                                             "c,3,false\n"
                                             "d,99999999999,\n")
    result = read_records(path, Item, skip_bad=True)
    assert [m.name for m in result.records] == ["a", "c"]
    assert result.skipped == 2
    assert [v.path for v in result.errors] == ["skip.csv:3", "skip.csv:6"]
    assert "count" in result.errors[0].message and "active" in result.errors[0].message


def test_csv_header_only_and_empty_file(tmp_path, Item):
    assert read_records(write_text(tmp_path / "h.csv", "name,count\n"), Item).records == []
    assert read_records(write_text(tmp_path / "e.csv", ""), Item).records == []


def test_csv_gz_input(tmp_path, Item):
    with gzip.open(tmp_path / "items.csv.gz", "wt", encoding="utf-8") as f:
        f.write("NAME,POST_CODE\nx,05401\ny,05402\n")
    result = read_records(tmp_path / "items.csv.gz", Item)
    assert [m.post_code for m in result.records] == ["05401", "05402"]


def test_gz_errors_name_the_file(tmp_path, Item):
    write_text(tmp_path / "fake.csv.gz", "name\nx\n")
    with pytest.raises(DataError, match="fake.csv.gz"):
        read_records(tmp_path / "fake.csv.gz", Item)
    good = gzip.compress(b"name\n" + b"x\n" * 1000)
    (tmp_path / "cut.csv.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="cut.csv.gz"):
        read_records(tmp_path / "cut.csv.gz", Item)


def test_csv_not_utf8(tmp_path, Item):
    (tmp_path / "latin.csv").write_bytes(b"name\nJos\xe9\n")
    with pytest.raises(DataError) as err:
        read_records(tmp_path / "latin.csv", Item)
    assert_located(err, "latin.csv:", "UTF-8")


# ---------------------------------------------------------------------------- JSON Lines reading


def test_jsonl_reads_both_name_styles_and_ignores_blank_lines(tmp_path, Item):
    path = write_text(tmp_path / "r.jsonl", '{"name": "a", "postCode": "05401"}\n\n   \n'
                                            '{"name": "b", "post_code": "05402", "color": "RED"}\n')
    assert read_records(path, Item).records == [Item(name="a", post_code="05401"),
                                                Item(name="b", post_code="05402", color=1)]


@pytest.mark.parametrize("line, words", [
    ('{"name": "a",', ["invalid JSON"]),
    ('{"colour": "red"}', ["colour"]),
    ('{"count": "many"}', ["count"]),
    ('[1, 2]', ["JSON object"]),
])
def test_jsonl_bad_line_names_file_and_line(tmp_path, Item, line, words):
    path = write_text(tmp_path / "bad.jsonl", '{"name": "ok"}\n\n' + line + "\n")
    with pytest.raises(DataError) as err:
        read_records(path, Item)
    assert_located(err, "bad.jsonl:3", *words)


def test_jsonl_skip_bad_counts(tmp_path, Item):
    path = write_text(tmp_path / "s.jsonl", '{"name": "a"}\nnot json\n{"count": 1.5}\n{"name": "d"}\n')
    result = read_records(path, Item, skip_bad=True)
    assert [m.name for m in result.records] == ["a", "d"]
    assert result.skipped == 2
    assert [v.path for v in result.errors] == ["s.jsonl:2", "s.jsonl:3"]


def test_jsonl_gz_input(tmp_path, Bag):
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(b'{"tags": ["x", "y"], "counts": {"k": 2}}\n'))
    (bag,) = read_records(tmp_path / "b.jsonl.gz", Bag).records
    assert list(bag.tags) == ["x", "y"] and dict(bag.counts) == {"k": 2}


# ---------------------------------------------------------------------------- binpb reading


def delimited(*payloads: bytes) -> bytes:
    return b"".join(encode_varint(len(p)) + p for p in payloads)


def test_varint_sizes_over_127(tmp_path, Item):
    big = [Item(name="x" * 300), Item(name="y" * 20_000)]
    write_records(big, tmp_path / "big.binpb", Item)
    data = (tmp_path / "big.binpb").read_bytes()
    size = len(big[0].SerializeToString())
    assert data[:2] == bytes([0x80 | (size & 0x7F), size >> 7])
    assert read_records(tmp_path / "big.binpb", Item).records == big


def test_binpb_truncated_message(tmp_path, Item):
    data = delimited(Item(name="a").SerializeToString(), Item(name="bbbbbb").SerializeToString())
    (tmp_path / "t.binpb").write_bytes(data[:-3])
    with pytest.raises(DataError) as err:
        read_records(tmp_path / "t.binpb", Item, skip_bad=True)  # not skippable
    assert_located(err, "t.binpb", "record 1", "byte 4", "truncated")


def test_binpb_truncated_size_prefix(tmp_path, Item):
    (tmp_path / "p.binpb").write_bytes(delimited(Item(name="a").SerializeToString()) + b"\x80")
    with pytest.raises(DataError) as err:
        read_records(tmp_path / "p.binpb", Item)
    assert_located(err, "p.binpb", "record 1", "byte 4", "size prefix")


def test_binpb_bad_message_is_located_and_skippable(tmp_path, Item):
    good = Item(name="ok").SerializeToString()
    bad = b"\x0a\x10abc"  # field 1, length 16, but only 3 bytes follow
    (tmp_path / "m.binpb").write_bytes(delimited(good, bad, good))
    with pytest.raises(DataError) as err:
        read_records(tmp_path / "m.binpb", Item)
    assert_located(err, "m.binpb", "record 1", f"byte {len(good) + 1}", "iot.Item")
    result = read_records(tmp_path / "m.binpb", Item, skip_bad=True)
    assert result.records == [Item(name="ok")] * 2 and result.skipped == 1
    assert "record 1" in result.errors[0].path


def test_binpb_empty_file(tmp_path, Item):
    (tmp_path / "e.binpb").write_bytes(b"")
    assert read_records(tmp_path / "e.binpb", Item).records == []


def test_jsonl_not_utf8(tmp_path, Item):
    (tmp_path / "latin.jsonl").write_bytes(b'{"name": "Jos\xe9"}\n')
    with pytest.raises(DataError) as err:
        read_records(tmp_path / "latin.jsonl", Item)
    assert_located(err, "latin.jsonl:1", "UTF-8")


def test_csv_crlf_line_numbers(tmp_path, Item):
    (tmp_path / "crlf.csv").write_bytes(b"name,count\r\na,1\r\nb,x\r\n")
    result = read_records(tmp_path / "crlf.csv", Item, skip_bad=True)
    assert result.records == [Item(name="a", count=1)]
    assert [v.path for v in result.errors] == ["crlf.csv:3"]
