"""Avro in the Confluent wire format: byte 0x00, a 4-byte big-endian schema id, the Avro body.

Decoding resolves the writer's schema (found by id) to this process's reader schema, so old and new
producers can run side by side. Every way a value can be unreadable has its own reason code, which
is what a dead letter records.
"""

from __future__ import annotations

import io
import struct
from typing import Any, NamedTuple

from fastavro import schemaless_reader, schemaless_writer

from schemas.registry import SchemaRegistry, UnknownSchemaId

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")


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
    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry

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
        return Decoded(schema_id, record)
