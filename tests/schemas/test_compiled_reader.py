"""The compiled decoder reads what fastavro reads, and refuses what fastavro refuses (and a few faults
fastavro reads past): compared with fastavro on written records, on every cut and on changed bytes."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import TOPIC_ACTIONS, value_subject
from schemas._avro_reader import Reader
from schemas.catalog import Catalog
from schemas.codec import AvroCodec, DecodeError
from schemas.compiled_reader import compile_reader
from schemas.contract import parse_event
from schemas.registry import CatalogRegistry
from tests.conftest import NOW, action

EVERY_TYPE = parse_schema({"type": "record", "name": "Every", "fields": [
    {"name": "nothing", "type": "null"},
    {"name": "flag", "type": "boolean"},
    {"name": "small", "type": "int"},
    {"name": "big", "type": "long"},
    {"name": "single", "type": "float"},
    {"name": "double", "type": "double"},
    {"name": "raw", "type": "bytes"},
    {"name": "text", "type": {"type": "string"}},
    {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN", "BLUE"]}},
    {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
    {"name": "maybe", "type": ["null", "string", "long"]},
    {"name": "numbers", "type": {"type": "array", "items": "long"}},
    {"name": "labels", "type": {"type": "map", "values": ["null", "string"]}},
    {"name": "nested", "type": {"type": "array", "items": {"type": "map", "values": "boolean"}}},
]})
LONGS = st.integers(-(2**63), 2**63 - 1)
INTS = st.integers(-(2**31), 2**31 - 1)
EVERY_RECORD = st.fixed_dictionaries({
    "nothing": st.none(), "flag": st.booleans(), "small": INTS, "big": LONGS,
    "single": st.floats(width=32, allow_nan=False), "double": st.floats(allow_nan=False),
    "raw": st.binary(max_size=40), "text": st.text(max_size=40), "colour": st.sampled_from(["RED", "GREEN", "BLUE"]),
    "digest": st.binary(min_size=4, max_size=4), "maybe": st.none() | st.text(max_size=10) | LONGS,
    "numbers": st.lists(LONGS, max_size=8),
    "labels": st.dictionaries(st.text(max_size=8), st.none() | st.text(max_size=8), max_size=5),
    "nested": st.lists(st.dictionaries(st.text(max_size=4), st.booleans(), max_size=3), max_size=3),
})
READ = compile_reader(EVERY_TYPE)


def written(schema: Any, record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, schema, record)
    return buffer.getvalue()


def by_fastavro(schema: Any, value: bytes) -> tuple[Any, int] | None:
    body = io.BytesIO(value)
    try:
        return schemaless_reader(body, schema, None), body.tell()
    except Exception:
        return None


def compiled(value: bytes) -> tuple[Any, int] | None:
    assert READ is not None
    try:
        return READ(value, 0)
    except (ValueError, IndexError):  # UnicodeDecodeError and struct.error are ValueErrors
        return None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(EVERY_RECORD)
def test_every_type_reads_as_fastavro_reads_it(record: dict[str, Any]) -> None:
    value = written(EVERY_TYPE, record)
    assert compiled(value) == by_fastavro(EVERY_TYPE, value) == (record, len(value))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(EVERY_RECORD, st.data())
def test_a_changed_or_cut_value_is_read_as_fastavro_reads_it_or_refused(record: dict[str, Any], data: Any) -> None:
    value = bytearray(written(EVERY_TYPE, record))
    for _ in range(data.draw(st.integers(1, 3))):
        value[data.draw(st.integers(0, len(value) - 1))] = data.draw(st.integers(0, 255))
    for candidate in (bytes(value), bytes(value[:data.draw(st.integers(0, len(value) - 1))])):
        ours, theirs = compiled(candidate), by_fastavro(EVERY_TYPE, candidate)
        if theirs is None:
            assert ours is None, "fastavro refuses it"
        elif ours is not None:
            assert repr(ours) == repr(theirs)  # a changed float may be NaN, which equals nothing


def test_every_cut_of_an_action_is_refused_as_a_corrupt_body() -> None:
    codec = AvroCodec(CatalogRegistry(Catalog.load()), plain_subjects=[value_subject(TOPIC_ACTIONS)])
    subject = value_subject(TOPIC_ACTIONS)
    full = codec.encode(subject, parse_event(action(message_text="您好，请尽快还款"), now=NOW).record)
    assert codec._plans == {} and codec.decode(subject, full).record["message_text"] == "您好，请尽快还款"
    assert all(plan[3] is not None for plan in codec._plans.values()), "the action schema compiles"
    for end in range(5, len(full)):
        with pytest.raises(DecodeError) as refused:
            codec.decode(subject, full[:end])
        assert refused.value.reason == "CORRUPT_BODY"


FAULTS = parse_schema({"type": "record", "name": "Faults", "fields": [
    {"name": "flag", "type": "boolean"},
    {"name": "colour", "type": {"type": "enum", "name": "C", "symbols": ["RED", "GREEN", "BLUE"]}},
    {"name": "digest", "type": {"type": "fixed", "name": "D", "size": 4}},
    {"name": "maybe", "type": ["null", "string", "long"]},
]})


@pytest.mark.parametrize(("value", "fastavro_reads"), [
    (b"\x02" + b"\x00" * 6, {"flag": True, "colour": "RED", "digest": bytes(4), "maybe": None}),  # boolean byte 2
    (b"\x00\x01" + b"\x00" * 5, {"flag": False, "colour": "BLUE", "digest": bytes(4), "maybe": None}),  # enum -1
    (b"\x00\x06" + b"\x00" * 5, None),  # enum index 3 of 3 symbols
    (b"\x00" * 6 + b"\x01\x04", {"flag": False, "colour": "RED", "digest": bytes(4), "maybe": 2}),  # union -1
    (b"\x00" * 6 + b"\x07", None),  # union index -4
    (b"\x00" * 6 + b"\x06", None),  # union index 3 of 3 branches
    (b"\x00" * 4, None),  # fixed cut short
])
def test_an_index_or_byte_out_of_range_is_refused_where_fastavro_reads_past_it_too(
        value: bytes, fastavro_reads: dict[str, Any] | None) -> None:
    theirs = by_fastavro(FAULTS, value)
    assert (theirs and theirs[0]) == fastavro_reads
    read = compile_reader(FAULTS)
    assert read is not None and read(b"\x00" * 7, 0) == ({"flag": False, "colour": "RED", "digest": bytes(4),
                                                           "maybe": None}, 7)
    with pytest.raises((ValueError, IndexError)):
        read(value, 0)


@pytest.mark.parametrize("varint", [b"\x80" * 9 + b"\x02", b"\xff" * 9 + b"\x7f", b"\x80" * 10 + b"\x01"])
def test_a_varint_beyond_64_bits_is_refused(varint: bytes) -> None:
    schema = parse_schema({"type": "record", "name": "L", "fields": [{"name": "n", "type": "long"}]})
    read = compile_reader(schema)
    assert read is not None
    assert read(b"\x80" * 9 + b"\x01", 0) == ({"n": 2**62}, 10)  # the 64th bit, in the tenth byte
    with pytest.raises(ValueError, match="beyond 64 bits"):
        read(varint, 0)


def test_an_index_written_in_more_than_one_byte_is_read_as_fastavro_reads_it() -> None:
    schema = parse_schema({"type": "record", "name": "I", "fields": [
        {"name": "level", "type": {"type": "enum", "name": "Level", "symbols": [f"L{i}" for i in range(100)]}},
        {"name": "maybe", "type": ["null", "long"]}]})
    read = compile_reader(schema)
    assert read is not None
    value = written(schema, {"level": "L70", "maybe": None})
    assert value == b"\x8c\x01\x00"  # index 70, zig-zag 140, takes two bytes
    assert read(value, 0) == by_fastavro(schema, value) == ({"level": "L70", "maybe": None}, 3)
    padded = b"\x8c\x01\x80\x00"  # the union's index 0 written in two bytes
    assert read(padded, 0) == by_fastavro(schema, padded) == ({"level": "L70", "maybe": None}, 4)
    with pytest.raises(ValueError, match="enum index -70"):
        read(b"\x8b\x01\x00", 0)  # zig-zag 139
    with pytest.raises(ValueError, match="union index 70 of 2 branches"):
        read(b"\x00\x8c\x01", 0)


def test_a_string_running_past_the_end_is_refused_not_cut_short() -> None:
    schema = parse_schema({"type": "record", "name": "S", "fields": [{"name": "text", "type": "string"}]})
    value = written(schema, {"text": "abcdef"})[:-2]
    assert by_fastavro(schema, value) is None
    read = compile_reader(schema)
    assert read is not None
    with pytest.raises(ValueError, match="runs past the end"):
        read(value, 0)


def test_blocks_with_a_negative_count_carry_their_size_and_are_read() -> None:
    schema = parse_schema({"type": "record", "name": "B", "fields": [
        {"name": "numbers", "type": {"type": "array", "items": "long"}},
        {"name": "labels", "type": {"type": "map", "values": "string"}}]})
    # numbers: a block of -2 items (4 bytes) [1, 2], then a block of 1 item [3], then 0; labels: -1 item, 0
    value = b"\x03\x08\x02\x04" + b"\x02\x06" + b"\x00" + b"\x01\x08\x02a\x02b" + b"\x00"
    read = compile_reader(schema)
    assert read is not None
    assert read(value, 0) == by_fastavro(schema, value) == ({"numbers": [1, 2, 3], "labels": {"a": "b"}}, len(value))


@pytest.mark.parametrize("field_type", [
    {"type": "long", "logicalType": "timestamp-micros"},
    {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "long"}]},
    "Colour",  # a named type given by name
])
def test_what_it_does_not_read_is_left_to_fastavro(field_type: Any) -> None:
    schema = {"type": "record", "name": "Outer", "fields": [
        {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["RED"]}},
        {"name": "other", "type": field_type}]}
    assert compile_reader(schema) is None



def test_a_plan_the_reader_cannot_walk_is_refused_when_it_is_made() -> None:
    negative = {"type": "record", "name": "N",
                "fields": [{"name": "d", "type": {"type": "fixed", "name": "D", "size": -1}}]}
    assert compile_reader(negative) is None  # left to fastavro
    for plan in [("record", ("d",), (("fixed", -1),)), ("long",), ("record", ("a", "b"), (("long",),)),
                 ("record", ("a",), (("decimal",),))]:
        with pytest.raises(TypeError):
            Reader(plan)
