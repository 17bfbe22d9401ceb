"""Avro in the Confluent wire format: byte 0x00, a 4-byte big-endian schema id, the Avro body.

Decoding resolves the writer's schema (found by id) to this process's reader schema, so old and new
producers can run side by side. Every way a value can be unreadable has its own reason code, which
is what a dead letter records.
"""

from __future__ import annotations

import io
import re
import struct
import uuid
from typing import Any, NamedTuple

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from schemas.registry import SchemaRegistry, UnknownSchemaId

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


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
    consumer): a UUID built only to be turned back into text costs it about 2 us a record."""

    def __init__(self, registry: SchemaRegistry, *, uuids_as_text: bool = False) -> None:
        self.registry = registry
        self.uuids_as_text = uuids_as_text
        self._as_text: dict[int, tuple[Any, tuple[str, ...], Any]] = {}  # id(schema) -> (copy, uuid fields, schema)

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
        try:
            writer = self.registry.by_id(schema_id)
        except UnknownSchemaId:
            raise DecodeError("UNKNOWN_SCHEMA_ID", f"schema id {schema_id} is not in the registry",
                              schema_id) from None
        reader = self.registry.reader(subject)
        uuid_fields: tuple[str, ...] = ()
        if self.uuids_as_text:
            (writer, uuid_fields), reader = self._text_schema(writer), self._text_schema(reader)[0]
        body = io.BytesIO(memoryview(value)[_HEADER.size:])
        try:
            record = schemaless_reader(body, writer, None if writer is reader else reader)
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise DecodeError("CORRUPT_BODY", f"schema id {schema_id}: {type(exc).__name__}: {exc}",
                              schema_id) from None
        if body.tell() != len(value) - _HEADER.size:
            raise DecodeError("TRAILING_BYTES",
                              f"schema id {schema_id}: {len(value) - _HEADER.size - body.tell()} bytes "
                              "left after the record", schema_id)
        if not isinstance(record, dict):
            raise DecodeError("CORRUPT_BODY", f"schema id {schema_id}: decoded to a non-record", schema_id)
        for name in uuid_fields:
            text = record.get(name)
            if isinstance(text, str) and not _CANONICAL_UUID.fullmatch(text):
                record[name] = _canonical_uuid(text)
        return Decoded(schema_id, record)

    def _text_schema(self, schema: Any) -> tuple[Any, tuple[str, ...]]:
        """The schema with its top-level uuid fields read as plain strings, and those fields' names."""
        known = self._as_text.get(id(schema))
        if known is None or known[2] is not schema:
            fields = tuple(f["name"] for f in schema["fields"] if _is_uuid_type(f["type"]))
            copy = parse_schema(_without_uuid_type(schema), named_schemas={})
            known = self._as_text[id(schema)] = (copy, fields, schema)  # the schema itself: ids are reused
        return known[0], known[1]


def _is_uuid_type(avro_type: Any) -> bool:
    return isinstance(avro_type, dict) and avro_type.get("logicalType") == "uuid"


def _without_uuid_type(node: Any) -> Any:
    """A copy of a parsed schema without fastavro's marks, each uuid logical type a plain string."""
    if isinstance(node, list):
        return [_without_uuid_type(item) for item in node]
    if not isinstance(node, dict):
        return node
    if _is_uuid_type(node):
        return node["type"]
    return {k: _without_uuid_type(v) for k, v in node.items() if not k.startswith("__")}


def _canonical_uuid(text: str) -> str:
    """A uuid written another way (upper case, braces, no hyphens) as its canonical text; text that is
    no uuid is left for the contract to reject."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text
