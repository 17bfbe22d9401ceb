"""Turning decoded records into rows: pure functions of (record, provenance, reference state).

Every row keeps where it came from (topic, partition, offset, schema id) so it can be traced to its
Kafka record. The chain columns (chain_seq, prev_hash, row_hash) and `out_of_order` are filled by
the trail writer, which knows what is already stored.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any, NamedTuple

from consumers.local_time import calendar_day, local_fields, resolve_zone
from consumers.pii import PiiMasker
from consumers.reference_state import ReferenceState
from consumers.text_normalization import normalize
from consumers.trail_writer import ACTION_COLUMNS, Columns
from schemas.contract import as_micros, to_days, to_micros

DEAD_LETTER_NAMESPACE = uuid.UUID("b5d0f3c2-7a4e-4f1b-9c8d-1e2f3a4b5c6d")


class Provenance(NamedTuple):  # one per record stored
    topic: str
    partition: int
    offset: int
    schema_id: int
    ingested_at: datetime


@dataclass(frozen=True)
class Enricher:
    masker: PiiMasker
    state: ReferenceState
    default_jurisdiction: str = "CN"
    read_text: Callable[[str | None, str | None], tuple[str, int, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.state.in_micros:
            raise ValueError("the store's reference state keeps microseconds, as its actions do: "
                             "ReferenceState(in_micros=True)")
        # Templates and follow-ups repeat texts (about half of a simulated day's are repeats): each
        # distinct (text, region) is masked and normalised once.
        object.__setattr__(self, "read_text", lru_cache(maxsize=20_000)(self._read_text))

    def _read_text(self, text: str | None, region: str | None) -> tuple[str, int, str]:
        """(masked text, PII numbers replaced, the masked text normalised for search)."""
        masked, redactions = self.masker.mask_text(text, region)
        return masked, redactions, normalize(masked)

    def action_columns(self, records: Sequence[dict[str, Any]], topic: str, partitions: Sequence[int],
                       offsets: Sequence[int], schema_ids: Sequence[int], ingested_at: int) -> Columns:
        """The enriched columns of audit.actions for action records decoded plain (AvroCodec
        `plain_subjects`: instants in microseconds, dates in days, ids as text), one value per record;
        the chain columns are placeholders the trail writer fills. Fields stored as they are go to their
        columns in one transposition; what is derived is computed per record and transposed once."""
        n = len(records)
        if not n:
            return {c: [] for c in ACTION_COLUMNS}
        columns: Columns = dict(zip(_KEPT_COLUMNS, map(list, zip(*map(_kept_fields, records), strict=True)),
                                    strict=True))
        profiles, default = self.state.profiles, self.default_jurisdiction
        licence, certification = self.state.licence_status, self.state.certification_status
        read_text, mask_address, mask_values = self.read_text, self.masker.mask_address, self.masker.mask_values
        derived = []
        for record in records:
            profile = profiles.get(record["debtor_id"])
            if profile is None:
                zone_of_profile, region, jurisdiction = None, None, default
            else:
                zone_of_profile, region, jurisdiction = profile.timezone, profile.phone_region, \
                    profile.jurisdiction or default
            address, occurred = record["contact_address"], record["occurred_at"]
            zone, zone_source = resolve_zone(zone_of_profile, address if record["counterparty"] == "DEBTOR" else None,
                                             region, jurisdiction)
            text, redactions, normalized = read_text(record["message_text"], region)
            attributes, due = record["attributes"], record["due_date"]
            derived.append((
                *mask_address(address, region), text, normalized, redactions,
                None if due is None else calendar_day(due)[0], mask_values(attributes, region) if attributes else {},
                jurisdiction, zone, zone_source, *local_fields(occurred, zone),
                licence(record["agency_id"], occurred), certification(record["collector_id"], occurred)))
        columns.update(zip(_DERIVED_COLUMNS, map(list, zip(*derived, strict=True)), strict=True))
        columns.update(out_of_order=[False] * n, chain_seq=[0] * n, prev_hash=[""] * n, row_hash=[""] * n,
                       kafka_topic=[topic] * n, kafka_partition=list(partitions), kafka_offset=list(offsets),
                       schema_id=list(schema_ids), ingested_at=[ingested_at] * n)
        return columns

    def action_row(self, record: dict[str, Any], origin: Provenance) -> dict[str, Any]:
        """One action's row (action_columns for one record, decoded either way)."""
        columns = self.action_columns([plain_action(record)], origin.topic, [origin.partition], [origin.offset],
                                      [origin.schema_id], to_micros(origin.ingested_at))
        return {name: values[0] for name, values in columns.items()}

    def reference_row(self, record: dict[str, Any], key: str, origin: Provenance) -> dict[str, Any]:
        address_hash, address_last4 = self.masker.mask_address(record["contact_address"], record["phone_region"])
        row = {field: record[field] for field in (
            "event_id", "kind", "occurred_at", "produced_at", "source_system", "debtor_id", "account_id",
            "agency_id", "collector_id", "timezone", "phone_region", "jurisdiction", "channels", "counterparty",
            "complaint_id", "complex", "plan_id", "status", "valid_from", "valid_to")}
        row.update(occurred_offset_minutes=record["occurred_at_offset_minutes"], entity_key=key,
                   contact_address_hash=address_hash, contact_address_last4=address_last4,
                   attributes=self.masker.mask_values(record["attributes"]), **_provenance(origin))
        return row

    def alert_row(self, record: dict[str, Any], origin: Provenance) -> dict[str, Any]:
        row = {field: record[field] for field in (
            "alert_id", "rule_id", "rule_version", "severity", "jurisdiction", "debtor_id", "agency_id",
            "collector_id", "event_ids", "citation", "late", "occurred_at", "detected_at")}
        row.update(summary=self.masker.mask_text(record["summary"])[0],
                   evidence=self.masker.mask_values(record["evidence"]), **_provenance(origin))
        return row


# audit.actions: the fields stored as they are (column <- field), then those derived, in that order.
_KEPT = (
    ("event_id", "event_id"), ("occurred_at", "occurred_at"), ("occurred_offset_minutes", "occurred_at_offset_minutes"),
    ("produced_at", "produced_at"), ("source_system", "source_system"), ("agency_id", "agency_id"),
    ("debtor_id", "debtor_id"), ("account_id", "account_id"), ("collector_id", "collector_id"),
    ("action_type", "action_type"), ("direction", "direction"), ("counterparty", "counterparty"),
    ("recording_id", "recording_id"), ("duration_seconds", "duration_seconds"), ("call_result", "call_result"),
    ("automated", "automated"), ("staff_count", "staff_count"), ("credentials_shown", "credentials_shown"),
    ("amount_due_minor", "amount_due_minor"), ("currency", "currency"))
_KEPT_COLUMNS = tuple(column for column, _ in _KEPT)
_kept_fields = itemgetter(*(field for _, field in _KEPT))
_DERIVED_COLUMNS = (
    "contact_address_hash", "contact_address_last4", "message_text", "message_text_normalized", "pii_redactions",
    "due_date", "attributes", "jurisdiction", "debtor_timezone", "timezone_source", "local_time", "local_date",
    "local_hour", "local_weekday", "agency_license_status", "collector_cert_status")


def plain_action(record: dict[str, Any]) -> dict[str, Any]:
    """An action record as a plain decode gives it (instants in microseconds, the due date in days, the
    id as text), whichever way each of those fields was decoded."""
    occurred, produced, due, event_id = (record["occurred_at"], record["produced_at"], record["due_date"],
                                         record["event_id"])
    return record | {"event_id": event_id if type(event_id) is str else str(event_id),
                     "occurred_at": as_micros(occurred), "produced_at": as_micros(produced),
                     "due_date": due if due is None or type(due) is int else to_days(due)}


def dead_letter_row(reason: str, detail: str, group: str, topic: str, partition: int, offset: int,
                    schema_id: int | None, key: bytes | None, value: bytes | None,
                    failed_at: datetime) -> dict[str, Any]:
    return {
        "dead_letter_id": uuid.uuid5(DEAD_LETTER_NAMESPACE, f"{group}/{topic}/{partition}/{offset}"),
        "reason": reason, "detail": detail[:10_000], "consumer_group": group, "source_topic": topic,
        "source_partition": partition, "source_offset": offset, "schema_id": schema_id,
        "raw_key_base64": base64.b64encode(key or b"").decode(),
        "raw_value_base64": base64.b64encode(value or b"").decode(),
        "failed_at": failed_at,
    }


def _provenance(origin: Provenance) -> dict[str, Any]:
    return {"chain_seq": 0, "prev_hash": "", "row_hash": "", "kafka_topic": origin.topic,
            "kafka_partition": origin.partition, "kafka_offset": origin.offset, "schema_id": origin.schema_id,
            "ingested_at": origin.ingested_at}
