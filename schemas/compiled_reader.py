"""A decoder compiled from one Avro record schema: a plan of its fields, read in C.

fastavro's reader is generic: for every field of every record it looks the field's type up in the
schema and dispatches on it, 8.1-8.7 us for one of the store's actions (24 fields). `compile_reader`
turns a record schema into a plan once -- nested tuples, one per type -- and `schemas/_avro_reader.c`
builds a tree of nodes from it and reads each record by walking that tree: the values and the record's
dict are all that is made per record (docs/operations.md has the figures).

Only what the schema is written with, read as itself (no reader schema to resolve to) and without
logical types: `compile_reader` returns None for anything else and the codec keeps fastavro for it.
It refuses whatever fastavro refuses, and faults fastavro reads past: a negative enum or union index
(fastavro counts it from the last symbol or branch), a boolean byte other than 0 or 1 (fastavro reads
it as true), a varint beyond 64 bits (fastavro cuts it to 64). It raises ValueError (UnicodeDecodeError
for text that is not UTF-8) or IndexError; tests/schemas/test_compiled_reader.py compares it with fastavro.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas._avro_reader import Reader as _PlanReader

Reader = Callable[[bytes, int], tuple[dict[str, Any], int]]  # (value, start) -> (record, end)
Plan = tuple[Any, ...]
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


class _Unsupported(Exception):
    pass


def compile_reader(schema: Any) -> Reader | None:
    """A decoder for records written with `schema` (a record schema, parsed or not), or None when the
    schema has what the compiled decoder does not read (a logical type, a named-type reference, a
    recursive or nested record): those are read by fastavro."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    try:
        fields = [(field["name"], plan_of(field["type"])) for field in schema["fields"]]
    except _Unsupported:
        return None
    names, plans = zip(*fields, strict=True) if fields else ((), ())
    reader: Reader = _PlanReader(("record", tuple(names), tuple(plans)))
    return reader


def plan_of(avro_type: Any) -> Plan:
    """The plan that reads one value of `avro_type` (see schemas/_avro_reader.c)."""
    if isinstance(avro_type, dict) and avro_type.keys() == {"type"} and avro_type["type"] in _PRIMITIVES:
        avro_type = avro_type["type"]  # {"type": "string"}
    if isinstance(avro_type, list):
        return ("union", tuple(map(plan_of, avro_type)))
    if isinstance(avro_type, str):
        if avro_type not in _PRIMITIVES:
            raise _Unsupported(avro_type)  # a named-type reference
        return ("long",) if avro_type == "int" else (avro_type,)
    if isinstance(avro_type, dict) and "logicalType" not in avro_type:
        kind = avro_type.get("type")
        if kind == "enum":
            return ("enum", tuple(avro_type["symbols"]))
        if kind == "fixed" and int(avro_type["size"]) >= 0:
            return ("fixed", int(avro_type["size"]))
        if kind == "array":
            return ("array", plan_of(avro_type["items"]))
        if kind == "map":
            return ("map", plan_of(avro_type["values"]))
    raise _Unsupported(avro_type)
