"""Avro in the Confluent wire format: byte 0x00, a 4-byte big-endian schema id, the Avro body.

Decoding resolves the writer's schema (found by id) to this process's reader schema, so old and new
producers can run side by side. Every way a value can be unreadable has its own reason code, which
is what a dead letter records.
"""

from __future__ import annotations

import io
import struct
import uuid
from collections.abc import Collection
from typing import Any, NamedTuple

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from schemas.compiled_reader import Reader, compile_reader
from schemas.contract import CANONICAL_UUID
from schemas.registry import SchemaRegistry, UnknownSchemaId

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")
_Plan = tuple[Any, Any, tuple[str, ...], Reader | None]


class DecodeError(ValueError):
    """A value that cannot be decoded. `reason` is a stable code for dead letters and metrics."""

    def __init__(self, reason: str, detail: str, schema_id: int | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.schema_id = schema_id


class Decoded(NamedTuple):  # one per record consumed: a tuple is made in a third of a dataclass's time
    schema_id: int
    record: dict[str, Any]


class AvroCodec:
    """`uuids_as_text`: decode the uuid logical type to its canonical text (lower-case, hyphenated),
    not to a uuid.UUID -- for a consumer that compares and prints ids and stores none (the rule
    consumer): a UUID built only to be turned back into text costs it about 2 us a record.

    `plain_subjects`: subjects decoded with their logical types left as the values on the wire --
    timestamp-micros as integer microseconds since the epoch, date as days since the epoch, uuid as its
    canonical text -- for a consumer that stores them as such (the store consumer's actions): fastavro
    builds no datetime, date or UUID that would be taken apart again, a fifth of the decode's time.
    Only these three logical types are left plain (`PLAIN_LOGICAL_TYPES`); any other is still converted."""

    def __init__(self, registry: SchemaRegistry, *, uuids_as_text: bool = False,
                 plain_subjects: Collection[str] = ()) -> None:
        self.registry = registry
        self.uuids_as_text = uuids_as_text
        self.plain_subjects = frozenset(plain_subjects)
        self._plans: dict[tuple[str, int], _Plan] = {}  # see _plan
        # (id(schema), logical types left plain) -> (copy, top-level uuid fields, schema)
        self._copies: dict[tuple[int, frozenset[str]], tuple[Any, tuple[str, ...], Any]] = {}

    def encode(self, subject: str, record: dict[str, Any]) -> bytes:
        schema_id, schema = self.registry.writer(subject)
        buffer = io.BytesIO()
        buffer.write(_HEADER.pack(MAGIC_BYTE, schema_id))
        schemaless_writer(buffer, schema, record)
        return buffer.getvalue()

    def decode(self, subject: str, value: bytes | None) -> Decoded:
        if not value:
            raise DecodeError("EMPTY_VALUE", "the record has no value (tombstone or empty bytes)")
        if len(value) < _HEADER.size:
            raise DecodeError("TRUNCATED", f"{len(value)} bytes is shorter than the 5-byte header")
        magic, schema_id = _HEADER.unpack_from(value)
        if magic != MAGIC_BYTE:
            raise DecodeError("BAD_MAGIC", f"first byte is {magic & 0xFF:#04x}, expected 0x00")
        writer, reader, uuid_fields, compiled = self._plans.get((subject, schema_id)) or self._plan(subject, schema_id)
        record: Any
        try:
            if compiled is not None:  # a record schema: it returns a dict
                record, end = compiled(value, _HEADER.size)
            else:
                body = io.BytesIO(memoryview(value)[_HEADER.size:])
                record, end = schemaless_reader(body, writer, reader), _HEADER.size + body.tell()
        except Exception as exc:  # fastavro raises many types on corrupt input; the compiled decoder
            # ValueError, IndexError (past the end, an index out of range) or UnicodeDecodeError
            raise DecodeError("CORRUPT_BODY", f"schema id {schema_id}: {type(exc).__name__}: {exc}",
                              schema_id) from None
        if end != len(value):
            raise DecodeError("TRAILING_BYTES",
                              f"schema id {schema_id}: {len(value) - end} bytes left after the record", schema_id)
        if compiled is None and not isinstance(record, dict):
            raise DecodeError("CORRUPT_BODY", f"schema id {schema_id}: decoded to a non-record", schema_id)
        for name in uuid_fields:
            text = record.get(name)
            if isinstance(text, str) and not CANONICAL_UUID.fullmatch(text):
                record[name] = _canonical_uuid(text)
        return Decoded(schema_id, record)

    def _plan(self, subject: str, schema_id: int) -> _Plan:
        """How to read `subject` written with `schema_id`: (writer schema, reader schema or None when it is
        the writer's, top-level uuid fields to canonicalise, the decoder compiled for the writer's schema
        when it is read as itself and compiles -- see schemas/compiled_reader.py), kept per (subject, id)."""
        try:
            writer = self.registry.by_id(schema_id)
        except UnknownSchemaId:
            raise DecodeError("UNKNOWN_SCHEMA_ID", f"schema id {schema_id} is not in the registry",
                              schema_id) from None
        reader = self.registry.reader(subject)
        uuid_fields: tuple[str, ...] = ()
        plain = PLAIN_LOGICAL_TYPES if subject in self.plain_subjects else _UUID_ONLY if self.uuids_as_text else None
        if plain is not None:
            (writer, uuid_fields), reader = self._copy(writer, plain), self._copy(reader, plain)[0]
        same = writer is reader
        plan = self._plans[(subject, schema_id)] = (writer, None if same else reader, uuid_fields,
                                                    compile_reader(writer) if same else None)
        return plan

    def _copy(self, schema: Any, plain: frozenset[str]) -> tuple[Any, tuple[str, ...]]:
        """The schema with the logical types `plain` left as their base types, and the names of its
        top-level uuid fields."""
        known = self._copies.get((id(schema), plain))
        if known is None or known[2] is not schema:
            fields = tuple(f["name"] for f in schema["fields"] if _logical_type(f["type"]) == "uuid")
            copy = parse_schema(_without_logical_types(schema, plain), named_schemas={})
            known = self._copies[(id(schema), plain)] = (copy, fields, schema)  # the schema itself: ids are reused
        return known[0], known[1]


PLAIN_LOGICAL_TYPES = frozenset({"timestamp-micros", "date", "uuid"})
_UUID_ONLY = frozenset({"uuid"})


def _logical_type(avro_type: Any) -> str | None:
    return avro_type.get("logicalType") if isinstance(avro_type, dict) else None


def _without_logical_types(node: Any, plain: frozenset[str]) -> Any:
    """A copy of a parsed schema without fastavro's marks, each logical type in `plain` its base type."""
    if isinstance(node, list):
        return [_without_logical_types(item, plain) for item in node]
    if not isinstance(node, dict):
        return node
    if _logical_type(node) in plain:
        return node["type"]
    return {k: _without_logical_types(v, plain) for k, v in node.items() if not k.startswith("__")}


def _canonical_uuid(text: str) -> str:
    """A uuid written another way (upper case, braces, no hyphens) as its canonical text; text that is
    no uuid is left for the contract to reject."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text
