"""The trail writer's Native blocks: each column byte for byte what clickhouse-connect writes for the same
values, so chDB and a server read them alike (a block read back through chDB, the relay and the chain's
hashes: tests/consumers/test_trail_writer.py, tests/deploy/test_clickhouse_relay.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, date
from typing import Any

import pytest
from clickhouse_connect.datatypes.registry import get_from_name
from clickhouse_connect.driver.insert import InsertContext
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.native_block import _ENCODERS, block_encoder

TEXT = st.text(max_size=12)
SOME_TEXTS = st.sampled_from(["", "CN", "US", "外呼", "VALID", "EXPIRED"]) | TEXT
DATES = st.dates(date(1900, 1, 1), date(2299, 12, 31))
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "String": TEXT,
    "Nullable(String)": st.none() | TEXT,
    "LowCardinality(String)": SOME_TEXTS,
    "LowCardinality(Nullable(String))": st.none() | SOME_TEXTS,
    "UUID": st.uuids().map(str) | st.uuids().map(lambda u: u.hex.upper()) | st.just(""),
    "DateTime64(6, 'UTC')": st.integers(-(2**62), 2**62) | st.datetimes(timezones=st.just(UTC)),
    "Date32": DATES,
    "Nullable(Date32)": st.none() | DATES,
    "Map(String, String)": st.dictionaries(TEXT, TEXT, max_size=4),
    "Bool": st.booleans(),
    "UInt8": st.integers(0, 2**8 - 1),
    "UInt16": st.integers(0, 2**16 - 1),
    "UInt32": st.integers(0, 2**32 - 1),
    "UInt64": st.integers(0, 2**64 - 1),
    "Int16": st.integers(-(2**15), 2**15 - 1),
    "Int64": st.integers(-(2**63), 2**63 - 1),
    "Nullable(Bool)": st.none() | st.booleans(),
    "Nullable(UInt16)": st.none() | st.integers(0, 2**16 - 1),
    "Nullable(UInt32)": st.none() | st.integers(0, 2**32 - 1),
    "Nullable(Int64)": st.none() | st.integers(-(2**63), 2**63 - 1),
}


# made once: an insert context draws on the random module, which Hypothesis wants left alone inside a test
CONTEXTS = {name: InsertContext("t", ["c"], [get_from_name(name)]) for name in VALUES}


def by_clickhouse_connect(type_name: str, values: list[Any]) -> bytes:
    context = CONTEXTS[type_name]
    out = bytearray()
    context.column_types[0].write_column(values, out, context)
    return bytes(out)


def test_every_type_the_block_takes_is_compared() -> None:
    assert set(VALUES) == set(_ENCODERS)


@pytest.mark.parametrize("type_name", sorted(VALUES))
def test_a_column_is_written_as_clickhouse_connect_writes_the_same_values(type_name: str) -> None:
    @settings(max_examples=40)
    @given(st.lists(VALUES[type_name], min_size=1, max_size=30))
    def written_alike(values: list[Any]) -> None:
        if type_name.startswith("DateTime64"):  # one column holds one kind: microseconds or datetimes
            values = [v for v in values if type(v) is type(values[0])]
        assert _ENCODERS[type_name](values) == by_clickhouse_connect(type_name, values)

    written_alike()


@pytest.mark.parametrize("distinct", [255, 256, 70_000])
def test_a_low_cardinality_dictionary_past_a_key_width_takes_wider_keys(distinct: int) -> None:
    values = [f"v{i % distinct}" for i in range(distinct + 10)]
    for type_name in ("LowCardinality(String)", "LowCardinality(Nullable(String))"):
        assert _ENCODERS[type_name](values) == by_clickhouse_connect(type_name, values)


def test_a_block_heads_its_columns_with_their_names_and_types() -> None:
    encode = block_encoder(["id", "n"], ["UUID", "UInt8"])
    assert encode is not None
    one = "00112233-4455-6677-8899-aabbccddeeff"
    assert encode([[one], [7]]) == (b"\x02\x01" + b"\x02id\x04UUID" + bytes.fromhex("7766554433221100ffeeddccbbaa9988")
                                    + b"\x01n\x05UInt8\x07")


def test_a_table_with_a_type_the_block_does_not_cover_has_no_encoder() -> None:
    assert block_encoder(["ids"], ["Array(String)"]) is None


def test_a_value_of_another_kind_is_refused_for_clickhouse_connect_to_encode() -> None:
    encode = block_encoder(["id"], ["UUID"])
    assert encode is not None
    with pytest.raises(TypeError):
        encode([[uuid.uuid4()]])  # the writer then inserts through clickhouse-connect
    with pytest.raises(ValueError, match="not a UUID"):
        encode([["not-a-uuid"]])
    with pytest.raises(ValueError, match="a column of 1 values in a block of 2 rows"):
        block_encoder(["a", "b"], ["UInt8", "UInt8"])([[1, 2], [1]])  # type: ignore[misc]
