import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from consumers.pii import PiiMasker
from consumers.reference_state import ReferenceState
from consumers.store_rows import Enricher, Provenance, plain_action
from consumers.trail_writer import ACTION_COLUMNS
from schemas.contract import to_micros

AT = datetime(2024, 3, 10, 7, 30, tzinfo=UTC)  # New York's first hour of summer time: 03:30 EDT


def record() -> dict[str, object]:
    return {"event_id": uuid.UUID(int=7), "occurred_at": AT, "occurred_at_offset_minutes": -240, "produced_at": AT,
            "source_system": "dialer", "agency_id": "AG", "debtor_id": "D1", "account_id": "A1", "collector_id": "C1",
            "action_type": "SMS", "direction": "OUTBOUND", "counterparty": "DEBTOR",
            "contact_address": "+1 212 555 0143", "message_text": "Call 212-555-0143", "recording_id": None,
            "duration_seconds": None, "call_result": None, "automated": False, "staff_count": None,
            "credentials_shown": None, "amount_due_minor": 125_000, "currency": "USD", "due_date": date(2024, 4, 1),
            "attributes": {}}


def enricher() -> Enricher:
    state = ReferenceState(in_micros=True)
    state.apply({"kind": "DEBTOR_PROFILE", "event_id": uuid.uuid4(), "occurred_at": AT - timedelta(days=1),
                 "debtor_id": "D1", "timezone": "America/New_York", "phone_region": "US", "jurisdiction": "US"})
    state.apply({"kind": "AGENCY_LICENSE", "event_id": uuid.uuid4(), "occurred_at": AT - timedelta(days=2),
                 "agency_id": "AG", "status": "VALID", "valid_from": AT - timedelta(days=2), "valid_to": AT})
    return Enricher(PiiMasker(bytes(32)), state)


def test_the_store_enriches_with_a_reference_state_kept_in_microseconds() -> None:
    with pytest.raises(ValueError, match="in_micros"):
        Enricher(PiiMasker(bytes(32)), ReferenceState())


def test_an_action_enriched_from_its_plain_decode_has_every_column_as_hand_computed() -> None:
    columns = enricher().action_columns([plain_action(record())], "collection.actions", [2], [41], [1], 5)
    row = {name: values[0] for name, values in columns.items()}
    assert set(row) == set(ACTION_COLUMNS)
    assert row["event_id"] == "00000000-0000-0000-0000-000000000007"
    assert row["occurred_at"] == to_micros(AT) and row["produced_at"] == to_micros(AT)
    assert row["due_date"] == date(2024, 4, 1)
    assert (row["debtor_timezone"], row["timezone_source"], row["jurisdiction"]) == \
        ("America/New_York", "PROFILE", "US")
    assert (row["local_time"], row["local_date"], row["local_hour"], row["local_weekday"]) == \
        ("2024-03-10T03:30:00-04:00", date(2024, 3, 10), 3, 7)
    assert row["agency_license_status"] == "EXPIRED"  # valid_to is exclusive: it lapsed at this very instant
    assert row["collector_cert_status"] == "UNKNOWN"
    assert row["contact_address_last4"] == "0143" and "555-0143" not in row["message_text"]
    assert row["pii_redactions"] == 1 and row["message_text_normalized"] == row["message_text"].lower()
    assert (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"], row["schema_id"], row["ingested_at"]) \
        == ("collection.actions", 2, 41, 1, 5)


def test_action_row_reads_a_record_decoded_either_way() -> None:
    origin = Provenance("collection.actions", 0, 3, 1, AT)
    assert enricher().action_row(record(), origin) == enricher().action_row(plain_action(record()), origin)
    empty = enricher().action_columns([], "collection.actions", [], [], [], 0)
    assert set(empty) == set(ACTION_COLUMNS) and not any(empty.values())
