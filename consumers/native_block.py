"""An insert block in ClickHouse's Native format, built for the trail writer's hot table.

clickhouse-connect encodes an insert column by column in Python: a loop per value for UUIDs, dates and
the dictionary of each LowCardinality column, 2.3 us a row for the store's actions (45 columns), about a
twentieth of what storing one costs. Here the fixed-width columns are packed by the array module and the
rest by `consumers/_native_columns.c`; the block is sent with `raw_insert` in the same format, so chDB and
a server read it as they read clickhouse-connect's own (tests/consumers/test_native_block.py holds each
column byte for byte equal to clickhouse-connect's encoding of the same values;
tests/deploy/test_clickhouse_relay.py reads a block back through the relay and chDB).

`block_encoder` returns None for a table with a column of a type not listed here: the writer then
inserts through clickhouse-connect as before.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Sequence
from itertools import accumulate, chain
from typing import Any

from consumers import _native_columns as native
from schemas.contract import as_micros

Encode = Callable[[list[Any]], bytes]
_LITTLE_ENDIAN = sys.byteorder == "little"
_LOW_CARDINALITY_PREFIX = (1).to_bytes(8, "little")  # the dictionary's key version: shared, with additions


def _packed(code: str, values: Any) -> bytes:
    packed = array(code, values)
    if not _LITTLE_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def _fixed(code: str) -> Encode:
    return lambda values: _packed(code, values)


def _nullable_fixed(code: str) -> Encode:
    return lambda values: bytes(v is None for v in values) + _packed(code, [0 if v is None else v for v in values])


def _instants(values: list[Any]) -> bytes:
    try:
        return _packed("q", values)  # microseconds since the epoch, as actions are decoded
    except TypeError:
        return _packed("q", map(as_micros, values))  # aware datetimes


def _text_map(values: list[dict[str, str]]) -> bytes:
    return (_packed("Q", accumulate(map(len, values))) + native.strings(list(chain.from_iterable(values)), False)
            + native.strings(list(chain.from_iterable(m.values() for m in values)), False))


_ENCODERS: dict[str, Encode] = {
    "String": lambda values: native.strings(values, False),
    "Nullable(String)": lambda values: native.strings(values, True),
    "LowCardinality(String)": lambda values: _LOW_CARDINALITY_PREFIX + native.low_cardinality(values, False),
    "LowCardinality(Nullable(String))": lambda values: _LOW_CARDINALITY_PREFIX + native.low_cardinality(values, True),
    "UUID": native.uuids,
    "DateTime64(6, 'UTC')": _instants,
    "Date32": lambda values: native.days(values, False),
    "Nullable(Date32)": lambda values: native.days(values, True),
    "Map(String, String)": _text_map,
    "Bool": _fixed("B"), "UInt8": _fixed("B"), "UInt16": _fixed("H"), "UInt32": _fixed("I"), "UInt64": _fixed("Q"),
    "Int16": _fixed("h"), "Int64": _fixed("q"),
    "Nullable(Bool)": _nullable_fixed("B"), "Nullable(UInt16)": _nullable_fixed("H"),
    "Nullable(UInt32)": _nullable_fixed("I"), "Nullable(Int64)": _nullable_fixed("q"),
}


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _text(value: str) -> bytes:
    encoded = value.encode()
    return _varint(len(encoded)) + encoded


def block_encoder(names: Sequence[str], types: Sequence[str]) -> Callable[[Sequence[list[Any]]], bytes] | None:
    """A function from the columns' values (in `names` order) to one Native block of them, for columns of
    the ClickHouse `types` (as clickhouse-connect names them for an insert); None if one is not covered."""
    if any(t not in _ENCODERS for t in types):
        return None
    heads = [_text(name) + _text(type_name) for name, type_name in zip(names, types, strict=True)]
    encoders = [_ENCODERS[t] for t in types]
    header = _varint(len(names))

    def encode(columns: Sequence[list[Any]]) -> bytes:
        rows = len(columns[0]) if columns else 0
        parts = [header, _varint(rows)]
        for head, encoder, values in zip(heads, encoders, columns, strict=True):
            if len(values) != rows:
                raise ValueError(f"a column of {len(values)} values in a block of {rows} rows")
            parts += (head, encoder(values))
        return b"".join(parts)

    return encode
