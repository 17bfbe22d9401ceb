from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.store_rows import plain_action
from schemas.contract import (
    EventRejected,
    parse_event,
    parse_rfc3339,
    record_problems,
    record_to_json,
)
from tests.conftest import NOW, action

REQUIRED_ACTION_FIELDS = ["occurred_at", "source_system", "agency_id", "debtor_id", "account_id",
                          "action_type", "direction", "counterparty"]


def rejected(event: Any) -> dict[str, str]:
    with pytest.raises(EventRejected) as caught:
        parse_event(event, now=NOW)
    return {e.field: e.problem for e in caught.value.errors}


def test_a_valid_action_becomes_a_record_keyed_by_debtor() -> None:
    event = parse_event(action(debtor_id="D-42"), now=NOW)
    assert event.topic == "collection.actions" and event.key == "D-42"
    assert event.record["occurred_at_offset_minutes"] == 480
    assert event.record["amount_due_minor"] == 125000


def test_event_id_is_assigned_when_absent_and_kept_when_given() -> None:
    assert len(parse_event(action(), now=NOW).event_id) == 36
    given_id = "3f2b1c4e-8a9d-4e6f-b1a2-c3d4e5f60718"
    assert parse_event(action(event_id=given_id), now=NOW).event_id == given_id


@pytest.mark.parametrize("field", REQUIRED_ACTION_FIELDS)
def test_every_required_field_missing_is_named(field: str) -> None:
    event = action()
    del event[field]
    assert rejected(event)[field] == "missing required field"


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("debtor_id", 42, "must be a string, got int"),
    ("debtor_id", "", "must not be empty"),
    ("agency_id", "A\x00B", "control characters"),
    ("account_id", "x" * 129, "longer than 128"),
    ("amount_due_minor", "125000", "must be an integer, got str"),
    ("amount_due_minor", True, "must be an integer, got bool"),
    ("amount_due_minor", -1, "between 0"),
    ("duration_seconds", 1.5, "must be an integer, got float"),
    ("automated", "yes", "must be true or false"),
    ("attributes", ["a"], "must be an object"),
    ("attributes", {"k": 1}, "values must be strings"),
    ("due_date", "01/11/2024", "YYYY-MM-DD"),
    ("due_date", "2024-02-30", "YYYY-MM-DD"),
    ("currency", "cny", "ISO 4217"),
    ("event_id", "not-a-uuid", "is not a UUID"),
    ("event_id", 7, "must be a UUID string"),
])
def test_mistyped_fields_are_named_with_the_problem(field: str, value: Any, problem: str) -> None:
    assert problem in rejected(action(**{field: value}))[field]


@pytest.mark.parametrize(("field", "value"), [
    ("action_type", "CALLL"), ("action_type", "sms"), ("direction", "OUT"),
    ("counterparty", "NEIGHBOUR"), ("call_result", "HUNG_UP"),
])
def test_unknown_enum_values_list_the_allowed_ones(field: str, value: str) -> None:
    overrides: dict[str, Any] = {field: value}
    if field == "call_result":
        overrides["action_type"] = "CALL_ATTEMPT"
    problem = rejected(action(**overrides))[field]
    assert f"{value!r} is not one of" in problem


@pytest.mark.parametrize("stamp", [
    "2024-05-01T10:00:00",          # no offset: local to whom?
    "2024-05-01",                   # a date is not an instant
    "2024-05-01T25:00:00+08:00",    # no such hour
    "2024-02-30T10:00:00+08:00",    # no such day
    "2024-05-01T10:00:00+19:00",    # offset beyond ±18:00
    "1714557600",                   # epoch seconds
    "1999-12-31T23:59:59Z",         # before the trail can exist
    "2025-01-03T00:00:00Z",         # two days after NOW: clock skew
    "May 1 2024 10:00",
])
def test_bad_timestamps_are_rejected(stamp: str) -> None:
    assert "occurred_at" in rejected(action(occurred_at=stamp))


@pytest.mark.parametrize(("stamp", "offset"), [
    ("2024-05-01T10:00:00Z", 0), ("2024-05-01t10:00:00z", 0), ("2024-05-01 10:00:00-04:00", -240),
    ("2024-05-01T10:00:00.123456789+05:45", 345),
])
def test_rfc3339_variants_are_accepted_with_their_offset(stamp: str, offset: int) -> None:
    assert parse_event(action(occurred_at=stamp), now=NOW).record["occurred_at_offset_minutes"] == offset


def test_nanoseconds_are_truncated_to_microseconds() -> None:
    instant, _ = parse_rfc3339("2024-05-01T10:00:00.123456789Z")
    assert instant.microsecond == 123456


def test_a_misspelt_field_is_rejected_not_ignored() -> None:
    event = action()
    event["occured_at"] = event.pop("occurred_at")
    problems = rejected(event)
    assert "unknown field" in problems["occured_at"]
    assert problems["occurred_at"] == "missing required field"


def test_all_problems_of_an_event_are_reported_together() -> None:
    problems = rejected(action(direction="OUT", currency="cny", occurred_at="yesterday"))
    assert {"direction", "currency", "occurred_at"} <= set(problems)


@pytest.mark.parametrize(("overrides", "field"), [
    ({"action_type": "SMS", "call_result": "BUSY"}, "call_result"),
    ({"action_type": "CALL_CONNECTED", "staff_count": 2}, "staff_count"),
    ({"amount_due_minor": 100, "currency": None}, "currency"),
])
def test_fields_that_do_not_fit_the_action_type(overrides: dict[str, Any], field: str) -> None:
    assert field in rejected(action(**overrides))


def test_a_non_object_is_rejected() -> None:
    assert rejected(["not", "an", "object"]) == {"(event)": "must be a JSON object, got list"}


REFERENCE_EXAMPLES: dict[str, dict[str, Any]] = {
    "DEBTOR_PROFILE": {"debtor_id": "D1", "timezone": "America/New_York", "jurisdiction": "US", "phone_region": "US"},
    "CEASE_REQUEST": {"debtor_id": "D1", "channels": ["EMAIL"]},
    "CEASE_WITHDRAWN": {"debtor_id": "D1"},
    "ATTORNEY_REPRESENTATION": {"debtor_id": "D1", "contact_address": "Law Office"},
    "COMPLAINT_FILED": {"debtor_id": "D1", "complaint_id": "C-1", "complex": True},
    "COMPLAINT_RESOLVED": {"debtor_id": "D1", "complaint_id": "C-1"},
    "AGENCY_LICENSE": {"agency_id": "AG1", "status": "VALID", "valid_from": "2024-01-01T00:00:00+08:00",
                       "valid_to": "2029-01-01T00:00:00+08:00"},
    "COLLECTOR_CERTIFICATION": {"collector_id": "C1", "agency_id": "AG1", "valid_from": "2024-01-01T00:00:00Z"},
    "PAYMENT_PLAN": {"debtor_id": "D1", "status": "ACTIVE", "plan_id": "P1"},
}
EXPECTED_KEY = {"AGENCY_LICENSE": "AG1", "COLLECTOR_CERTIFICATION": "C1"}


@pytest.mark.parametrize("kind", list(REFERENCE_EXAMPLES))
def test_each_reference_kind_validates_and_is_keyed_by_its_entity(kind: str) -> None:
    event = parse_event({"kind": kind, "occurred_at": "2024-05-01T09:00:00+08:00", **REFERENCE_EXAMPLES[kind]},
                        now=NOW)
    assert event.topic == "collection.reference"
    assert event.key == EXPECTED_KEY.get(kind, "D1")
    assert event.record["kind"] == kind


@pytest.mark.parametrize(("kind", "fields", "field", "problem"), [
    ("DEBTOR_PROFILE", {"debtor_id": "D1", "timezone": "Mars/Olympus"}, "timezone", "IANA"),
    ("DEBTOR_PROFILE", {"debtor_id": "D1", "phone_region": "XX"}, "phone_region", "ISO 3166"),
    ("DEBTOR_PROFILE", {"debtor_id": "D1"}, "timezone", "at least one of"),
    ("DEBTOR_PROFILE", {"debtor_id": "D1", "jurisdiction": "FR"}, "jurisdiction", "is not one of"),
    ("CEASE_REQUEST", {"debtor_id": "D1", "channels": ["PIGEON"]}, "channels", "list of action types"),
    ("CEASE_REQUEST", {"debtor_id": "D1", "status": "ACTIVE"}, "status", "unknown field"),
    ("COMPLAINT_FILED", {"debtor_id": "D1"}, "complaint_id", "missing required field"),
    ("AGENCY_LICENSE", {"agency_id": "A", "status": "MAYBE", "valid_from": "2024-01-01T00:00:00Z"}, "status",
     "is not one of"),
    ("AGENCY_LICENSE", {"agency_id": "A", "status": "VALID"}, "valid_from", "missing required field"),
    ("COLLECTOR_CERTIFICATION", {"collector_id": "C", "agency_id": "A", "valid_from": "2024-02-01T00:00:00Z",
                                 "valid_to": "2024-01-01T00:00:00Z"}, "valid_to", "after valid_from"),
    ("PAYMENT_PLAN", {"debtor_id": "D1", "status": "VALID"}, "status", "is not one of"),
])
def test_reference_events_are_validated_per_kind(kind: str, fields: dict[str, Any], field: str,
                                                 problem: str) -> None:
    problems = rejected({"kind": kind, "occurred_at": "2024-05-01T09:00:00Z", **fields})
    assert problem in problems[field]


def test_unknown_kind_is_rejected() -> None:
    assert "is not one of" in rejected({"kind": "RUMOUR", "occurred_at": "2024-05-01T09:00:00Z"})["kind"]


def test_a_licence_may_be_valid_into_the_future() -> None:
    far = (NOW + timedelta(days=3650)).isoformat()
    parse_event({"kind": "AGENCY_LICENSE", "occurred_at": "2024-05-01T09:00:00Z", "agency_id": "A",
                 "status": "VALID", "valid_from": "2024-05-01T09:00:00Z", "valid_to": far}, now=NOW)


def test_json_form_round_trips_with_the_stated_offset() -> None:
    original = action(occurred_at="2024-03-10T03:30:00-04:00", attributes={"k": "v"}, automated=True,
                      event_id="3f2b1c4e-8a9d-4e6f-b1a2-c3d4e5f60718")
    assert record_to_json(parse_event(original, now=NOW).record) == original


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*REQUIRED_ACTION_FIELDS, "kind", "channels", "attributes", "due_date",
                                        "valid_from", "timezone", "amount_due_minor", "zzz"]), JSON_VALUES))
def test_any_json_object_is_either_valid_or_rejected_with_reasons(obj: dict[str, Any]) -> None:
    try:
        parse_event(obj, now=NOW)
    except EventRejected as exc:
        assert exc.errors and all(e.field and e.problem for e in exc.errors)


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("duration_seconds", -5, "outside 0..4294967295"),
    ("due_date", date(1800, 1, 1), "outside 1900-2299"),
    ("occurred_at_offset_minutes", 5000, "outside -1080..1080"),
    ("debtor_id", " ", "must not be empty"),
    ("call_result", "BUSY", "only a CALL_ATTEMPT"),
])
def test_decoded_records_that_the_store_could_not_insert_are_contract_violations(
        field: str, value: Any, problem: str) -> None:
    record = parse_event(action(), now=NOW).record
    moment = datetime(2024, 5, 1, tzinfo=UTC)
    decoded = record | {"occurred_at": moment, "produced_at": moment, "due_date": None, field: value}
    problems = {e.field: e.problem for e in record_problems("collection.actions", decoded)}
    assert problem in problems[field]
    plain = plain_action(decoded)  # as the store decodes actions: microseconds, days, text
    assert {e.field: e.problem for e in record_problems("collection.actions", plain)} == problems


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("produced_at", -2_208_988_800_000_001, "1899-12-31T23:59:59.999999+00:00 is outside 1900-2262"),
    ("produced_at", 9_223_286_400_000_000, "2262-04-11T00:00:00+00:00 is outside 1900-2262"),
    ("produced_at", 2**62, "4611686018427387904 microseconds since 1970 is outside 1900-2262"),
    ("due_date", -25_568, "1899-12-31 is outside 1900-2299"),
    ("due_date", 2**31 - 1, "2147483647 days since 1970 is outside 1900-2299"),
    ("occurred_at", 946_684_799_999_999, "before 2000-01-01"),
    ("event_id", "not-a-uuid", "is not a UUID"),
])
def test_plain_decoded_values_outside_what_the_store_can_insert_are_contract_violations(
        field: str, value: Any, problem: str) -> None:
    record = plain_action(parse_event(action(), now=NOW).record | {"occurred_at": datetime(2024, 5, 1, tzinfo=UTC),
                                                                  "produced_at": datetime(2024, 5, 1, tzinfo=UTC)})
    assert not record_problems("collection.actions", record)
    problems = {e.field: e.problem for e in record_problems("collection.actions", record | {field: value})}
    assert problem in problems[field]
