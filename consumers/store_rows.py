"""Turning decoded records into rows: pure functions of (record, provenance, reference state).

Every row keeps where it came from (topic, partition, offset, schema id) so it can be traced to its
Kafka record. The chain columns (chain_seq, prev_hash, row_hash) and `out_of_order` are filled by
the trail writer, which knows what is already stored.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

from consumers.local_time import local_view, resolve_zone
from consumers.pii import PiiMasker
from consumers.reference_state import ReferenceState
from consumers.text_normalization import normalize

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
        # Templates and follow-ups repeat texts (about half of a simulated day's are repeats): each
        # distinct (text, region) is masked and normalised once.
        object.__setattr__(self, "read_text", lru_cache(maxsize=20_000)(self._read_text))

    def _read_text(self, text: str | None, region: str | None) -> tuple[str, int, str]:
        """(masked text, PII numbers replaced, the masked text normalised for search)."""
        masked, redactions = self.masker.mask_text(text, region)
        return masked, redactions, normalize(masked)

    def action_row(self, record: dict[str, Any], origin: Provenance) -> dict[str, Any]:
        debtor = record["debtor_id"]
        profile = self.state.profiles.get(debtor)
        jurisdiction = (profile.jurisdiction if profile else None) or self.default_jurisdiction
        region = profile.phone_region if profile else None
        own_phone = record["contact_address"] if record["counterparty"] == "DEBTOR" else None
        zone, zone_source = resolve_zone(profile.timezone if profile else None, own_phone, region, jurisdiction)
        local_text, local = local_view(record["occurred_at"], zone)
        text, redactions, normalized = self.read_text(record["message_text"], region)
        address_hash, address_last4 = self.masker.mask_address(record["contact_address"], region)
        return {
            "event_id": record["event_id"],
            "occurred_at": record["occurred_at"],
            "occurred_offset_minutes": record["occurred_at_offset_minutes"],
            "produced_at": record["produced_at"],
            "source_system": record["source_system"],
            "agency_id": record["agency_id"],
            "debtor_id": debtor,
            "account_id": record["account_id"],
            "collector_id": record["collector_id"],
            "action_type": record["action_type"],
            "direction": record["direction"],
            "counterparty": record["counterparty"],
            "contact_address_hash": address_hash,
            "contact_address_last4": address_last4,
            "message_text": text,
            "message_text_normalized": normalized,
            "pii_redactions": redactions,
            "recording_id": record["recording_id"],
            "duration_seconds": record["duration_seconds"],
            "call_result": record["call_result"],
            "automated": record["automated"],
            "staff_count": record["staff_count"],
            "credentials_shown": record["credentials_shown"],
            "amount_due_minor": record["amount_due_minor"],
            "currency": record["currency"],
            "due_date": record["due_date"],
            "attributes": self.masker.mask_values(record["attributes"], region),
            "jurisdiction": jurisdiction,
            "debtor_timezone": zone,
            "timezone_source": zone_source,
            "local_time": local_text,
            "local_date": local.date(),
            "local_hour": local.hour,
            "local_weekday": local.isoweekday(),
            "agency_license_status": self.state.licence_status(record["agency_id"], record["occurred_at"]),
            "collector_cert_status": self.state.certification_status(record["collector_id"], record["occurred_at"]),
            "out_of_order": False,
            **_provenance(origin),
        }

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
