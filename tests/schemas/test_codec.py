import json
import struct
import uuid
from datetime import date
from typing import Any

import pytest

from schemas.catalog import Catalog, SchemaVersion
from schemas.codec import PLAIN_LOGICAL_TYPES, AvroCodec, DecodeError
from schemas.contract import parse_event, to_micros
from schemas.registry import CatalogRegistry
from tests.conftest import NOW, action

ACTIONS = "collection.actions-value"
REFERENCES = "collection.reference-value"


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return AvroCodec(CatalogRegistry(Catalog.load()))


def test_confluent_framing_is_magic_byte_then_big_endian_schema_id(codec: AvroCodec) -> None:
    event = parse_event(action(), now=NOW)
    value = codec.encode(ACTIONS, event.record)
    assert value[0] == 0
    assert struct.unpack(">I", value[1:5])[0] == Catalog.load().latest(ACTIONS).schema_id


def test_round_trip_keeps_every_field(codec: AvroCodec) -> None:
    event = parse_event(action(collector_id=None, attributes={"campaign": "Q2"}), now=NOW)
    decoded = codec.decode(ACTIONS, codec.encode(ACTIONS, event.record))
    assert decoded.schema_id == 1
    record = decoded.record
    assert str(record["event_id"]) == event.event_id
    assert record["collector_id"] is None and record["attributes"] == {"campaign": "Q2"}
    assert record["occurred_at"].isoformat() == "2024-05-01T02:00:00+00:00"
    assert record["occurred_at_offset_minutes"] == 480
    assert record["due_date"].isoformat() == "2024-11-01"


@pytest.mark.parametrize("written", [
    "0f8fad5b-d9cb-469f-a165-70867728950e", "0F8FAD5B-D9CB-469F-A165-70867728950E",
    "{0f8fad5b-d9cb-469f-a165-70867728950e}", "0f8fad5bd9cb469fa16570867728950e",
])
def test_uuids_as_text_decodes_every_spelling_to_the_canonical_text(codec: AvroCodec, written: str) -> None:
    record = dict(parse_event(action(), now=NOW).record, event_id=written)
    as_text = AvroCodec(codec.registry, uuids_as_text=True)
    decoded = as_text.decode(ACTIONS, codec.encode(ACTIONS, record)).record
    assert decoded["event_id"] == "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert decoded == dict(codec.decode(ACTIONS, codec.encode(ACTIONS, record)).record, event_id=decoded["event_id"])


def test_plain_subjects_decode_instants_dates_and_ids_as_they_are_on_the_wire(codec: AvroCodec) -> None:
    record = dict(parse_event(action(), now=NOW).record, event_id="0F8FAD5BD9CB469FA16570867728950E")
    value = codec.encode(ACTIONS, record)
    plain = AvroCodec(codec.registry, plain_subjects=[ACTIONS]).decode(ACTIONS, value).record
    decoded = codec.decode(ACTIONS, value).record
    assert plain["event_id"] == "0f8fad5b-d9cb-469f-a165-70867728950e" == str(decoded["event_id"])
    assert plain["occurred_at"] == 1_714_528_800_000_000 == to_micros(decoded["occurred_at"])
    assert plain["produced_at"] == to_micros(decoded["produced_at"])
    assert plain["due_date"] == (decoded["due_date"] - date(1970, 1, 1)).days == 20_028
    assert {k: v for k, v in plain.items() if k not in ("event_id", "occurred_at", "produced_at", "due_date")} == \
        {k: v for k, v in decoded.items() if k not in ("event_id", "occurred_at", "produced_at", "due_date")}


@pytest.mark.parametrize("subject", [ACTIONS, REFERENCES])
def test_every_logical_type_of_every_stored_schema_is_one_a_plain_decode_leaves_plain(subject: str) -> None:
    """The store reads actions and reference events plain (microseconds, days, text): a new version with
    another logical type (timestamp-millis, decimal) would reach its enrichment converted, so it must extend
    PLAIN_LOGICAL_TYPES and the enrichment first."""
    def logical_types(node: Any) -> set[str]:
        if isinstance(node, list):
            return set().union(*map(logical_types, node)) if node else set()
        if not isinstance(node, dict):
            return set()
        found = {node["logicalType"]} if "logicalType" in node else set()
        return found.union(*map(logical_types, node.values()))

    for version in Catalog.load().versions(subject):
        assert logical_types(version.schema) <= PLAIN_LOGICAL_TYPES, version


def test_uuids_as_text_leaves_a_non_uuid_for_the_contract_to_reject(codec: AvroCodec) -> None:
    record = dict(parse_event(action(), now=NOW).record, event_id="not-a-uuid")
    value = codec.encode(ACTIONS, record)
    with pytest.raises(DecodeError):  # a UUID cannot be made of it
        codec.decode(ACTIONS, value)
    assert AvroCodec(codec.registry, uuids_as_text=True).decode(ACTIONS, value).record["event_id"] == "not-a-uuid"


@pytest.mark.parametrize(("value", "reason"), [
    (None, "EMPTY_VALUE"),
    (b"", "EMPTY_VALUE"),
    (b"\x00\x00\x00", "TRUNCATED"),
    (b"\x01\x00\x00\x00\x01abc", "BAD_MAGIC"),
    (b"{\"json\": true}", "BAD_MAGIC"),
    (b"\x00\x00\x00\x03\xe7\x02", "UNKNOWN_SCHEMA_ID"),
    (b"\x00\x00\x00\x00\x01\x02", "CORRUPT_BODY"),
])
def test_each_unreadable_value_has_its_own_reason(codec: AvroCodec, value: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        codec.decode(ACTIONS, value)
    assert caught.value.reason == reason


def test_trailing_bytes_are_not_silently_ignored(codec: AvroCodec) -> None:
    value = codec.encode(ACTIONS, parse_event(action(), now=NOW).record)
    with pytest.raises(DecodeError) as caught:
        codec.decode(ACTIONS, value + b"\x00junk")
    assert caught.value.reason == "TRAILING_BYTES"


def test_a_value_of_another_subject_does_not_decode_as_an_action(codec: AvroCodec) -> None:
    alert_schema_id = Catalog.load().latest("collection.alerts-value").schema_id
    value = b"\x00" + struct.pack(">I", alert_schema_id) + b"\x02"
    with pytest.raises(DecodeError) as caught:
        codec.decode(ACTIONS, value)
    assert caught.value.reason == "CORRUPT_BODY"


def _with_v2(extra_field: dict[str, Any]) -> Catalog:
    catalog = Catalog.load()
    v1 = catalog.latest(ACTIONS)
    schema = json.loads(v1.canonical)
    schema["fields"].append(extra_field)
    versions = [catalog.by_id(i) for i in (1, 2, 3, 4)]
    versions.insert(1, SchemaVersion(ACTIONS, 2, 9, schema, json.dumps(schema)))
    return Catalog(versions)


def test_old_writer_is_resolved_to_the_new_reader_schema() -> None:
    """A v1 producer and a v2 consumer side by side: the new field takes its default."""
    old_producer = AvroCodec(CatalogRegistry(Catalog.load()))
    new_consumer = AvroCodec(CatalogRegistry(_with_v2({"name": "channel_vendor", "type": "string",
                                                        "default": "unknown"})))
    event = parse_event(action(), now=NOW)
    decoded = new_consumer.decode(ACTIONS, old_producer.encode(ACTIONS, event.record))
    assert decoded.schema_id == 1
    assert decoded.record["channel_vendor"] == "unknown"
    assert decoded.record["debtor_id"] == event.record["debtor_id"]


def test_new_writer_is_read_by_an_old_consumer() -> None:
    new_producer = AvroCodec(CatalogRegistry(_with_v2({"name": "channel_vendor", "type": "string",
                                                        "default": "unknown"})))
    old_consumer = AvroCodec(CatalogRegistry(Catalog.load()))
    record = dict(parse_event(action(), now=NOW).record, channel_vendor="twilio")
    value = new_producer.encode(ACTIONS, record)
    assert struct.unpack(">I", value[1:5])[0] == 9
    with pytest.raises(DecodeError) as caught:  # the old consumer's registry does not know id 9
        old_consumer.decode(ACTIONS, value)
    assert caught.value.reason == "UNKNOWN_SCHEMA_ID"
    assert str(uuid.UUID(str(new_producer.decode(ACTIONS, value).record["event_id"])))
