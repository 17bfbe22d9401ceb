"""The JSON integration contract: upstream JSON objects -> validated Avro records.

These field names are the contract with upstream systems (docs/integration.md): fields may be
added, never renamed. Validation collects every problem of an event, each naming its field, so an
integrator fixes a payload in one round trip. Unknown fields are rejected: a typo such as
`occured_at` must not silently become a missing timestamp.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import available_timezones

import phonenumbers

from schemas import TOPIC_ACTIONS, TOPIC_ALERTS, TOPIC_REFERENCE, value_subject

ACTION_TYPES = ("CALL_ATTEMPT", "CALL_CONNECTED", "VOICEMAIL", "SMS", "EMAIL", "IM_MESSAGE", "LETTER",
                "FIELD_VISIT", "LEGAL_NOTICE", "PAYMENT_PLAN_OFFER")
DIRECTIONS = ("OUTBOUND", "INBOUND")
COUNTERPARTIES = ("DEBTOR", "GUARANTOR", "ATTORNEY", "FAMILY", "EMPLOYER", "OTHER_THIRD_PARTY", "UNKNOWN")
CALL_RESULTS = ("NO_ANSWER", "BUSY", "FAILED")
REFERENCE_KINDS = ("DEBTOR_PROFILE", "CEASE_REQUEST", "CEASE_WITHDRAWN", "ATTORNEY_REPRESENTATION",
                   "COMPLAINT_FILED", "COMPLAINT_RESOLVED", "AGENCY_LICENSE", "COLLECTOR_CERTIFICATION",
                   "PAYMENT_PLAN")
JURISDICTIONS = ("CN", "US", "UK")
LICENSE_STATUSES = ("VALID", "SUSPENDED", "REVOKED")
PLAN_STATUSES = ("ACTIVE", "BREACHED", "COMPLETED", "CANCELLED")

MAX_ID_CHARS = 128
MAX_TEXT_CHARS = 100_000
MAX_ATTRIBUTES = 64
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE = date(1970, 1, 1)
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$"
)
_CURRENCY = re.compile(r"^[A-Z]{3}$")
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # str(uuid.UUID)
_TIMEZONES = frozenset(available_timezones())


@dataclass(frozen=True)
class FieldError:
    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


class EventRejected(ValueError):
    """An event broke the contract. `errors` names every field at fault and why."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class ValidatedEvent:
    """An event ready to send: its topic, Kafka key and Avro record."""

    topic: str
    key: str
    record: dict[str, Any]

    @property
    def subject(self) -> str:
        return value_subject(self.topic)

    @property
    def event_id(self) -> str:
        return str(self.record["event_id"])


def to_micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """The aware UTC instant `micros` microseconds after the epoch (to_micros undone)."""
    return _EPOCH + timedelta(microseconds=micros)


def as_micros(moment: datetime | int) -> int:
    """An instant decoded (an aware datetime) or plain (microseconds since the epoch), as microseconds."""
    return moment if type(moment) is int else to_micros(moment)  # type: ignore[arg-type]


def to_days(day: date) -> int:
    """Days since 1970-01-01: a date as Avro's `date` holds it."""
    return (day - _EPOCH_DATE).days


def from_days(days: int) -> date:
    """The date `days` after 1970-01-01 (to_days undone)."""
    return _EPOCH_DATE + timedelta(days=days)


def parse_rfc3339(text: str) -> tuple[datetime, int]:
    """(UTC instant, stated offset in minutes) of an RFC 3339 timestamp; ValueError if it is not one."""
    match = _RFC3339.match(text)
    if not match:
        raise ValueError("must be RFC 3339 with a UTC offset, e.g. 2024-05-01T21:59:59+08:00")
    day, clock, fraction, offset = match.groups()
    micros = (fraction or "").ljust(6, "0")[:6]
    stamp = datetime.fromisoformat(f"{day}T{clock}.{micros}{'+00:00' if offset in 'Zz' else offset}")
    utc_offset = stamp.utcoffset()
    assert utc_offset is not None
    if abs(utc_offset) > timedelta(hours=18):
        raise ValueError("UTC offset beyond ±18:00")
    return stamp.astimezone(UTC), int(utc_offset.total_seconds() // 60)


def format_rfc3339(moment: int | datetime, offset_minutes: int) -> str:
    """RFC 3339 text of an instant (micros since epoch or aware datetime) at the stated offset."""
    if not isinstance(moment, datetime):
        moment = _EPOCH + timedelta(microseconds=moment)
    local = moment.astimezone(timezone(timedelta(minutes=offset_minutes)))
    return local.isoformat(timespec="microseconds" if local.microsecond else "seconds")


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return format_rfc3339(value, 0)
    if isinstance(value, date):
        return value.isoformat()
    return value


def record_to_json(record: Mapping[str, Any]) -> dict[str, Any]:
    """The contract's JSON form of an action or reference record (encoded or decoded Avro form).

    Timestamps come back at the offset the source stated; absent optional fields are left out.
    """
    offset = int(record["occurred_at_offset_minutes"])
    out: dict[str, Any] = {}
    for field, value in record.items():
        if field in ("occurred_at_offset_minutes", "produced_at") or value is None:
            continue
        if field in ("occurred_at", "valid_from", "valid_to"):
            out[field] = format_rfc3339(value, offset)
        elif field == "due_date" and isinstance(value, int):
            out[field] = from_days(value).isoformat()
        elif (field == "attributes" or field == "channels") and not value:
            continue
        else:
            out[field] = _plain(value)
    if out.get("complex") is False:
        del out["complex"]
    if out.get("automated") is False:
        del out["automated"]
    return out


class _Checker:
    """Collects the problems of one JSON object while converting its fields."""

    def __init__(self, obj: Mapping[str, Any], now: datetime) -> None:
        self.obj: Mapping[str, Any] = obj
        self.now = now
        self.errors: list[FieldError] = []

    def fail(self, field: str, problem: str) -> None:
        self.errors.append(FieldError(field, problem))

    def present(self, field: str) -> bool:
        return self.obj.get(field) is not None

    def string(self, field: str, *, required: bool = False, max_chars: int = MAX_ID_CHARS) -> str | None:
        value = self.obj.get(field)
        if value is None:
            if required:
                self.fail(field, "missing required field")
            return None
        if not isinstance(value, str):
            self.fail(field, f"must be a string, got {type(value).__name__}")
            return None
        if not _valid_unicode(value):
            self.fail(field, NOT_UNICODE)
            return None
        if required and not value.strip():
            self.fail(field, "must not be empty")
            return None
        if len(value) > max_chars:
            self.fail(field, f"longer than {max_chars} characters")
            return None
        if max_chars == MAX_ID_CHARS and any(ord(ch) < 32 for ch in value):
            self.fail(field, "contains control characters")
            return None
        return value

    def choice(self, field: str, allowed: tuple[str, ...], *, required: bool = False) -> str | None:
        value = self.string(field, required=required)
        if value is not None and value not in allowed:
            self.fail(field, f"{value!r} is not one of {', '.join(allowed)}")
            return None
        return value

    def integer(self, field: str, *, minimum: int = 0, maximum: int = 2**63 - 1) -> int | None:
        value = self.obj.get(field)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, f"must be an integer, got {type(value).__name__}")
            return None
        if not minimum <= value <= maximum:
            self.fail(field, f"must be between {minimum} and {maximum}")
            return None
        return value

    def boolean(self, field: str) -> bool | None:
        value = self.obj.get(field)
        if value is not None and not isinstance(value, bool):
            self.fail(field, f"must be true or false, got {type(value).__name__}")
            return None
        return value

    def timestamp(self, field: str, *, required: bool = False, future_ok: bool = False) -> tuple[int, int] | None:
        text = self.string(field, required=required, max_chars=40)
        if text is None:
            return None
        try:
            instant, offset = parse_rfc3339(text)
        except ValueError as exc:
            self.fail(field, f"{text!r} is not a valid timestamp: {exc}")
            return None
        if instant < EARLIEST:
            self.fail(field, f"{text!r} is before {EARLIEST.date()}")
            return None
        if not future_ok and instant > self.now + MAX_FUTURE:
            self.fail(field, f"{text!r} is more than {MAX_FUTURE} in the future (clock skew?)")
            return None
        if instant >= _STORABLE_INSTANTS[1]:
            self.fail(field, f"{text!r} is after {_STORABLE_INSTANTS[1].date()}, the latest moment the trail stores")
            return None
        return to_micros(instant), offset

    def day(self, field: str) -> int | None:
        text = self.string(field, max_chars=10)
        if text is None:
            return None
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                raise ValueError
            day = date.fromisoformat(text)
        except ValueError:
            self.fail(field, f"{text!r} is not a date in YYYY-MM-DD form")
            return None
        if not _STORABLE_DATES[0] <= day <= _STORABLE_DATES[1]:
            low, high = _STORABLE_DATES
            self.fail(field, f"{text!r} is outside {low}..{high}, the dates the trail stores")
            return None
        return to_days(day)

    def attributes(self) -> dict[str, str]:
        value = self.obj.get("attributes")
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail("attributes", "must be an object of string values")
            return {}
        if len(value) > MAX_ATTRIBUTES:
            self.fail("attributes", f"more than {MAX_ATTRIBUTES} entries")
            return {}
        bad = [k for k, v in value.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            self.fail("attributes", f"values must be strings (offending keys: {', '.join(map(str, bad[:5]))})")
            return {}
        if not all(_valid_unicode(k) and _valid_unicode(v) for k, v in value.items()):
            self.fail("attributes", NOT_UNICODE)
            return {}
        return dict(value)

    def event_id(self) -> str:
        value = self.obj.get("event_id")
        if value is None:
            return str(uuid.uuid4())
        if not isinstance(value, str):
            self.fail("event_id", "must be a UUID string")
            return ""
        try:
            return str(uuid.UUID(value))
        except ValueError:
            self.fail("event_id", f"{value!r} is not a UUID")
            return ""

    def unknown(self, allowed: frozenset[str]) -> None:
        for field in self.obj:
            if field not in allowed:
                self.fail(str(field), "unknown field (see docs/integration.md for the contract)")


_ACTION_FIELDS = frozenset({
    "event_id", "occurred_at", "source_system", "agency_id", "debtor_id", "account_id", "collector_id",
    "action_type", "direction", "counterparty", "contact_address", "message_text", "recording_id",
    "duration_seconds", "call_result", "automated", "staff_count", "credentials_shown",
    "amount_due_minor", "currency", "due_date", "attributes",
})


def parse_action(obj: Mapping[str, Any], now: datetime | None = None) -> ValidatedEvent:
    """Validate a collection action; raises EventRejected naming every bad field."""
    c = _Checker(obj, now or datetime.now(UTC))
    c.unknown(_ACTION_FIELDS)
    occurred = c.timestamp("occurred_at", required=True)
    action_type = c.choice("action_type", ACTION_TYPES, required=True)
    record: dict[str, Any] = {
        "event_id": c.event_id(),
        "source_system": c.string("source_system", required=True),
        "agency_id": c.string("agency_id", required=True),
        "debtor_id": c.string("debtor_id", required=True),
        "account_id": c.string("account_id", required=True),
        "collector_id": c.string("collector_id"),
        "action_type": action_type,
        "direction": c.choice("direction", DIRECTIONS, required=True),
        "counterparty": c.choice("counterparty", COUNTERPARTIES, required=True),
        "contact_address": c.string("contact_address", max_chars=512),
        "message_text": c.string("message_text", max_chars=MAX_TEXT_CHARS),
        "recording_id": c.string("recording_id"),
        "duration_seconds": c.integer("duration_seconds", maximum=86_400),
        "call_result": c.choice("call_result", CALL_RESULTS),
        "automated": c.boolean("automated") or False,
        "staff_count": c.integer("staff_count", maximum=1_000),
        "credentials_shown": c.boolean("credentials_shown"),
        "amount_due_minor": c.integer("amount_due_minor"),
        "currency": c.string("currency", max_chars=3),
        "due_date": c.day("due_date"),
        "attributes": c.attributes(),
    }
    c.errors += _action_cross_problems(record)
    if c.errors:
        raise EventRejected(c.errors)
    assert occurred is not None
    record["occurred_at"], record["occurred_at_offset_minutes"] = occurred
    record["produced_at"] = to_micros(c.now)
    return ValidatedEvent(TOPIC_ACTIONS, record["debtor_id"], record)


_REFERENCE_COMMON = frozenset({"event_id", "kind", "occurred_at", "source_system", "account_id", "attributes"})
# kind -> (required fields, optional fields); the Kafka key is the first required field.
_REFERENCE_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "DEBTOR_PROFILE": (("debtor_id",), ("timezone", "phone_region", "jurisdiction")),
    "CEASE_REQUEST": (("debtor_id",), ("channels", "contact_address", "counterparty")),
    "CEASE_WITHDRAWN": (("debtor_id",), ("channels", "contact_address", "counterparty")),
    "ATTORNEY_REPRESENTATION": (("debtor_id",), ("contact_address",)),
    "COMPLAINT_FILED": (("debtor_id", "complaint_id"), ("agency_id", "collector_id", "complex")),
    "COMPLAINT_RESOLVED": (("debtor_id", "complaint_id"), ("agency_id",)),
    "AGENCY_LICENSE": (("agency_id", "status", "valid_from"), ("valid_to",)),
    "COLLECTOR_CERTIFICATION": (("collector_id", "agency_id", "valid_from"), ("valid_to",)),
    "PAYMENT_PLAN": (("debtor_id", "status"), ("plan_id", "agency_id")),
}


def _action_cross_problems(record: Mapping[str, Any]) -> list[FieldError]:
    """Rules between fields of an action, which Avro cannot express."""
    problems = []
    action_type = record["action_type"]
    if record["call_result"] is not None and action_type not in (None, "CALL_ATTEMPT"):
        problems.append(FieldError("call_result", f"only a CALL_ATTEMPT has a call_result, this is a {action_type}"))
    for field in ("staff_count", "credentials_shown"):
        if record[field] is not None and action_type not in (None, "FIELD_VISIT"):
            problems.append(FieldError(field, f"only a FIELD_VISIT has {field}, this is a {action_type}"))
    if record["amount_due_minor"] is not None and record["currency"] is None:
        problems.append(FieldError("currency", "required with amount_due_minor (ISO 4217 code, e.g. CNY)"))
    if record["currency"] is not None and not _CURRENCY.match(record["currency"]):
        problems.append(FieldError("currency", f"{record['currency']!r} is not an ISO 4217 code such as CNY or USD"))
    return problems


def _reference_cross_problems(record: Mapping[str, Any]) -> list[FieldError]:
    """Rules between fields of a reference event, which Avro cannot express."""
    problems = []
    if record["kind"] == "DEBTOR_PROFILE":
        if record["timezone"] is not None and record["timezone"] not in _TIMEZONES:
            problems.append(FieldError("timezone", f"{record['timezone']!r} is not an IANA time zone such as "
                                                   "Asia/Shanghai"))
        region = record["phone_region"]
        if region is not None and region not in phonenumbers.SUPPORTED_REGIONS:
            problems.append(FieldError("phone_region", f"{region!r} is not an ISO 3166 region code such as CN or US"))
        if not any(record[f] is not None for f in ("timezone", "phone_region", "jurisdiction")):
            problems.append(FieldError("timezone", "a DEBTOR_PROFILE needs at least one of timezone, phone_region, "
                                                   "jurisdiction"))
    if record["valid_to"] is not None and record["valid_from"] is not None \
            and record["valid_to"] <= record["valid_from"]:
        problems.append(FieldError("valid_to", "must be after valid_from"))
    return problems


NOT_UNICODE = "is not valid Unicode: it holds a lone surrogate (a \\udXXX escape without its pair)"


def _valid_unicode(text: str) -> bool:
    """JSON allows lone surrogate escapes; Avro strings (UTF-8) cannot hold them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_uuid(value: Any) -> bool:
    if isinstance(value, uuid.UUID):  # Avro's uuid logical type decodes to one
        return True
    if type(value) is str and CANONICAL_UUID.fullmatch(value):  # decoded as text (AvroCodec)
        return True
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


# Ranges of the ClickHouse column types: a value outside them would fail every insert of its batch
# and block the partition, so it is a contract violation (a dead letter) instead.
_STORABLE_INSTANTS = (datetime(1900, 1, 1, tzinfo=UTC), datetime(2262, 4, 11, tzinfo=UTC))
_STORABLE_DATES = (date(1900, 1, 1), date(2299, 12, 31))
# The same in the values a plain decode (AvroCodec plain_subjects) leaves: microseconds and days since 1970.
_STORABLE_MICROS = (to_micros(_STORABLE_INSTANTS[0]), to_micros(_STORABLE_INSTANTS[1]))
_STORABLE_DAYS = (to_days(_STORABLE_DATES[0]), to_days(_STORABLE_DATES[1]))
_EARLIEST_MICROS = to_micros(EARLIEST)
_STORABLE_INTS = {"duration_seconds": (0, 2**32 - 1), "staff_count": (0, 2**16 - 1),
                  "occurred_at_offset_minutes": (-18 * 60, 18 * 60), "rule_version": (0, 2**16 - 1)}


def _storable_problems(topic: str, record: Mapping[str, Any]) -> list[FieldError]:
    problems = []
    for field in ("occurred_at", "produced_at", "valid_from", "valid_to", "detected_at"):
        value = record.get(field)
        if value is None:
            continue
        bounds: tuple[Any, Any] = _STORABLE_MICROS if type(value) is int else _STORABLE_INSTANTS
        if not bounds[0] <= value < bounds[1]:
            problems.append(FieldError(field, f"{_shown(value, 'microseconds')} is outside 1900-2262"))
    due = record.get("due_date")
    if due is not None:
        bounds = _STORABLE_DAYS if type(due) is int else _STORABLE_DATES
        if not bounds[0] <= due <= bounds[1]:
            problems.append(FieldError("due_date", f"{_shown(due, 'days')} is outside 1900-2299"))
    for field, (low, high) in _STORABLE_INTS.items():
        value = record.get(field)
        if value is not None and not low <= value <= high:
            problems.append(FieldError(field, f"{value} is outside {low}..{high}"))
    return problems


def _shown(value: Any, unit: str) -> str:
    """A decoded instant or date as ISO text; one decoded plain (an integer) as that when it is in range."""
    if type(value) is not int:
        return str(value.isoformat())
    try:
        moment = _EPOCH + timedelta(**{unit: value})
    except OverflowError:
        return f"{value} {unit} since 1970"
    return (moment.date() if unit == "days" else moment).isoformat()


def record_problems(topic: str, record: Mapping[str, Any]) -> list[FieldError]:
    """The contract rules a decoded Avro record can still break (schema-valid is not contract-valid):
    what a consumer checks before it stores an event from a producer that bypassed our SDK. Instants,
    dates and ids may be decoded (datetime, date, UUID) or plain (microseconds, days, text)."""
    problems = _storable_problems(topic, record)
    if topic == TOPIC_ALERTS:
        return problems
    if not _is_uuid(record["event_id"]):
        problems.append(FieldError("event_id", f"{record['event_id']!r} is not a UUID"))
    occurred = record["occurred_at"]
    if occurred < (_EARLIEST_MICROS if type(occurred) is int else EARLIEST):
        problems.append(FieldError("occurred_at", f"before {EARLIEST.date()}"))
    if topic == TOPIC_ACTIONS:
        for field in ("source_system", "agency_id", "debtor_id", "account_id"):
            if _blank(record[field]):
                problems.append(FieldError(field, "must not be empty"))
        return problems + _action_cross_problems(record)
    if topic == TOPIC_REFERENCE:
        required, _ = _REFERENCE_KINDS[record["kind"]]
        for field in required:
            if _blank(record[field]):
                problems.append(FieldError(field, f"required for a {record['kind']}"))
        status = record["status"]
        allowed = LICENSE_STATUSES if record["kind"] == "AGENCY_LICENSE" else PLAN_STATUSES
        if status is not None and status not in allowed:
            problems.append(FieldError("status", f"{status!r} is not one of {', '.join(allowed)}"))
        return problems + _reference_cross_problems(record)
    return problems


def parse_reference(obj: Mapping[str, Any], now: datetime | None = None) -> ValidatedEvent:
    """Validate a reference event (discriminated by `kind`); raises EventRejected."""
    c = _Checker(obj, now or datetime.now(UTC))
    kind = c.choice("kind", REFERENCE_KINDS, required=True)
    if kind is None:
        raise EventRejected(c.errors)
    required, optional = _REFERENCE_KINDS[kind]
    allowed = _REFERENCE_COMMON | set(required) | set(optional)
    c.unknown(allowed)
    c.obj = {k: v for k, v in obj.items() if k in allowed}  # fields of other kinds were reported above
    occurred = c.timestamp("occurred_at", required=True)
    channels = c.obj.get("channels", [])
    if not isinstance(channels, list) or not all(isinstance(ch, str) and ch in ACTION_TYPES for ch in channels):
        c.fail("channels", f"must be a list of action types ({', '.join(ACTION_TYPES)})")
        channels = []
    valid_from = c.timestamp("valid_from", required="valid_from" in required, future_ok=True)
    valid_to = c.timestamp("valid_to", future_ok=True)
    status_choices = LICENSE_STATUSES if kind == "AGENCY_LICENSE" else PLAN_STATUSES
    record: dict[str, Any] = {
        "event_id": c.event_id(),
        "kind": kind,
        "source_system": c.string("source_system"),
        "account_id": c.string("account_id"),
        "attributes": c.attributes(),
        "channels": list(channels),
        "complex": bool(c.boolean("complex")),
        "valid_from": valid_from[0] if valid_from else None,
        "valid_to": valid_to[0] if valid_to else None,
        "phone_region": c.string("phone_region", max_chars=3),
        "jurisdiction": c.choice("jurisdiction", JURISDICTIONS),
        "contact_address": c.string("contact_address", max_chars=512),
        "counterparty": c.choice("counterparty", COUNTERPARTIES),
        "status": c.choice("status", status_choices, required="status" in required),
    }
    for field in ("debtor_id", "agency_id", "collector_id", "complaint_id", "plan_id", "timezone"):
        record[field] = c.string(field, required=field in required)
    c.errors += _reference_cross_problems(record)
    if c.errors:
        raise EventRejected(c.errors)
    assert occurred is not None
    record["occurred_at"], record["occurred_at_offset_minutes"] = occurred
    record["produced_at"] = to_micros(c.now)
    return ValidatedEvent(TOPIC_REFERENCE, record[required[0]], record)


def parse_event(obj: Any, now: datetime | None = None) -> ValidatedEvent:
    """An action, or a reference event when the object has a `kind`."""
    if not isinstance(obj, Mapping):
        raise EventRejected([FieldError("(event)", f"must be a JSON object, got {type(obj).__name__}")])
    return parse_reference(obj, now) if "kind" in obj else parse_action(obj, now)
