"""A small, hand-checkable trail for the auditor tests, sent through the stack's producer: two debtors
(Shanghai, CN; New York, US, across the March 2024 DST change), one agency, one collector, a day over
the conversation cap, a quiet-hours message, a Traditional-Chinese threat, a complaint and its
resolution, and one undecodable record (a dead letter)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.client import Client
from kafka import KafkaProducer

from deploy.supervisor import EmbeddedStack
from tests.conftest import action, references_read, unique_token, wait_until

RANGE = {"from": "2024-03-01T00:00:00Z", "to": "2024-06-01T00:00:00Z"}


@dataclass
class Trail:
    run: str
    debtor: str  # Asia/Shanghai, CN
    us_debtor: str  # America/New_York, US
    agency: str
    collector: str
    action_ids: list[str] = field(default_factory=list)
    threat_id: str = ""
    quiet_id: str = ""
    complaint: str = ""


def seed(stack: EmbeddedStack, clickhouse: Client) -> Trail:
    run = unique_token(8)
    t = Trail(run, f"D-AU-{run}", f"D-AU-US-{run}", f"AG-AU-{run}", f"C-AU-{run}")
    producer = stack.producer
    assert producer is not None
    references_before = references_read(stack)
    producer.emit({"kind": "AGENCY_LICENSE", "occurred_at": "2023-01-01T00:00:00Z", "agency_id": t.agency,
                   "status": "VALID", "valid_from": "2023-01-01T00:00:00Z"})
    producer.emit({"kind": "COLLECTOR_CERTIFICATION", "occurred_at": "2024-01-01T00:00:00Z",
                   "collector_id": t.collector, "agency_id": t.agency, "valid_from": "2024-01-01T00:00:00Z",
                   "valid_to": "2025-01-01T00:00:00Z"})
    producer.emit({"kind": "DEBTOR_PROFILE", "occurred_at": "2024-01-01T00:00:00Z", "debtor_id": t.debtor,
                   "timezone": "Asia/Shanghai", "jurisdiction": "CN"})
    producer.emit({"kind": "DEBTOR_PROFILE", "occurred_at": "2024-01-01T00:00:00Z", "debtor_id": t.us_debtor,
                   "timezone": "America/New_York", "jurisdiction": "US"})

    # the licence, certification and profiles on file before the actions are judged (Kafka orders nothing
    # across topics)
    assert wait_until(lambda: references_read(stack) >= references_before + 4, timeout_s=30)

    def send(**fields: Any) -> str:
        event = action(agency_id=t.agency, collector_id=t.collector, **fields)
        event_id = producer.emit(event)
        t.action_ids.append(event_id)
        return event_id

    for hour in (10, 11, 14, 16):  # four conversations in one local day: one over the cap of 3
        send(debtor_id=t.debtor, action_type="CALL_CONNECTED", occurred_at=f"2024-05-02T{hour}:00:00+08:00",
             recording_id=f"REC-{run}-{hour}", duration_seconds=120, message_text="")
    t.quiet_id = send(debtor_id=t.debtor, action_type="IM_MESSAGE", occurred_at="2024-05-02T23:30:00+08:00")
    t.threat_id = send(debtor_id=t.debtor, action_type="IM_MESSAGE", occurred_at="2024-05-03T11:00:00+08:00",
                       message_text="不還錢小心你全家出事")
    t.complaint = f"CMP-{run}"
    producer.emit({"kind": "COMPLAINT_FILED", "occurred_at": "2024-05-04T09:00:00+08:00", "debtor_id": t.debtor,
                   "agency_id": t.agency, "complaint_id": t.complaint})
    producer.emit({"kind": "COMPLAINT_RESOLVED", "occurred_at": "2024-05-08T09:00:00+08:00", "debtor_id": t.debtor,
                   "agency_id": t.agency, "complaint_id": t.complaint})
    for day in ("2024-03-08", "2024-03-11"):  # EST, then EDT
        send(debtor_id=t.us_debtor, action_type="SMS", occurred_at=f"{day}T15:00:00Z", amount_due_minor=50000,
             currency="USD", message_text="You owe $500.00 on your account; you may dispute this debt.")
    producer.flush(10)
    garbage = KafkaProducer(bootstrap_servers=stack.settings.bootstrap_servers)
    garbage.send("collection.actions", key=t.debtor.encode(), value=b"not avro at all")
    garbage.close(10)

    def stored() -> bool:
        actions = clickhouse.query("SELECT count() FROM audit.actions FINAL WHERE agency_id = {a:String}",
                                   parameters={"a": t.agency}).result_rows[0][0]
        rules = {r[0] for r in clickhouse.query("SELECT rule_id FROM audit.alerts FINAL WHERE debtor_id = {d:String}",
                                                parameters={"d": t.debtor}).result_rows}
        dead = clickhouse.query("SELECT count() FROM audit.dead_letters WHERE raw_key_base64 = "
                                "base64Encode({k:String})", parameters={"k": t.debtor}).result_rows[0][0]
        return bool(actions == len(t.action_ids) and {"THREAT", "QUIET_HOURS", "DAILY_CONTACT_CAP"} <= rules
                    and dead == 1)

    assert wait_until(stored, timeout_s=60), "the seeded trail was not stored with its alerts"
    return t
