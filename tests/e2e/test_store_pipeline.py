"""Events sent through the SDK end up in ClickHouse exactly once, enriched as computed by hand."""

import hashlib
import hmac
import itertools
import random
import struct
import uuid
from datetime import date
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from kafka import KafkaProducer

from deploy.supervisor import EmbeddedStack
from schemas.catalog import Catalog
from schemas.codec import AvroCodec
from schemas.contract import parse_event
from schemas.registry import CatalogRegistry
from tests.conftest import action, read_topic, unique_token, wait_until

pytestmark = pytest.mark.stack
RUN = unique_token(6)
NY, SH, NOPROFILE = f"D-NY-{RUN}", f"D-SH-{RUN}", f"D-NP-{RUN}"
AGENCY = f"AG-{RUN}"


def count(client: Client, table: str, where: str, final: bool = False) -> int:
    return int(client.query(f"SELECT count() FROM {table} {'FINAL' if final else ''} WHERE {where}").result_rows[0][0])


def reference_events() -> list[dict[str, Any]]:
    return [
        {"kind": "DEBTOR_PROFILE", "occurred_at": "2024-01-01T00:00:00Z", "debtor_id": NY,
         "timezone": "America/New_York", "jurisdiction": "US", "phone_region": "US"},
        {"kind": "DEBTOR_PROFILE", "occurred_at": "2024-01-01T00:00:00Z", "debtor_id": SH,
         "timezone": "Asia/Shanghai", "jurisdiction": "CN", "phone_region": "CN"},
        {"kind": "AGENCY_LICENSE", "occurred_at": "2023-01-01T00:00:00Z", "agency_id": AGENCY, "status": "VALID",
         "valid_from": "2023-01-01T00:00:00Z", "valid_to": "2030-01-01T00:00:00Z"},
        {"kind": "COLLECTOR_CERTIFICATION", "occurred_at": "2023-05-02T02:00:00Z", "collector_id": f"C-old-{RUN}",
         "agency_id": AGENCY, "valid_from": "2023-05-02T02:00:00Z"},  # 365 days later: 2024-05-01T02:00Z
        {"kind": "COLLECTOR_CERTIFICATION", "occurred_at": "2023-05-04T00:00:00Z", "collector_id": f"C-new-{RUN}",
         "agency_id": AGENCY, "valid_from": "2023-05-04T00:00:00Z"},
    ]


def mixed_actions(n: int) -> list[dict[str, Any]]:
    rng = random.Random(5)
    texts = ["您尾号1234的贷款应还1,250.00元，到期日2024-11-01", "您本期應還款1,250.00元，請通過官方App還款",
             "Your balance of $1,250.00 is due 2024-11-01."]
    kinds = ["SMS", "EMAIL", "IM_MESSAGE", "LETTER", "CALL_ATTEMPT", "CALL_CONNECTED", "VOICEMAIL"]
    events = []
    for i in range(n):
        kind = rng.choice(kinds)
        debtor = rng.choice([NY, SH])
        event = action(debtor_id=debtor, agency_id=AGENCY, action_type=kind, message_text=rng.choice(texts),
                       occurred_at=f"2024-06-{1 + i % 28:02d}T{9 + i % 10:02d}:00:{i % 60:02d}+08:00",
                       collector_id=f"C-new-{RUN}")
        if kind == "CALL_ATTEMPT":
            event.update(call_result="NO_ANSWER", amount_due_minor=None, currency=None, due_date=None)
            event = {k: v for k, v in event.items() if v is not None}
        events.append(event)
    return events


@pytest.fixture(scope="module")
def stored_run(stack: EmbeddedStack, clickhouse: Client) -> dict[str, Any]:
    assert stack.producer is not None
    stack.producer.emit_many(reference_events())
    assert wait_until(lambda: count(clickhouse, "audit.reference_events", f"entity_key LIKE '%{RUN}'") == 5)
    special = {
        "ny_before_dst": action(debtor_id=NY, agency_id=AGENCY, occurred_at="2024-03-10T01:59:59-05:00",
                                collector_id=f"C-new-{RUN}"),
        "ny_after_dst": action(debtor_id=NY, agency_id=AGENCY, occurred_at="2024-03-10T07:05:00Z",
                               collector_id=f"C-new-{RUN}"),
        "sh_quiet": action(debtor_id=SH, agency_id=AGENCY, occurred_at="2024-05-01T22:00:00+08:00",
                           collector_id=f"C-old-{RUN}", contact_address="+86 138 0013 8000",
                           message_text="請回電13800138000，您尾號1234的貸款應還款"),
        "sh_cert_valid": action(debtor_id=SH, agency_id=AGENCY, occurred_at="2024-05-01T09:59:59+08:00",
                                collector_id=f"C-old-{RUN}"),
        "no_profile_phone": action(debtor_id=NOPROFILE, agency_id=AGENCY, occurred_at="2024-05-01T12:00:00Z",
                                   contact_address="+1 415 555 0143", collector_id=None, automated=True),
        "unknown_agency": action(debtor_id=NOPROFILE, agency_id=f"AG-unknown-{RUN}",
                                 occurred_at="2024-05-01T13:00:00Z"),
    }
    bulk = mixed_actions(300)
    ids = {name: str(uuid.uuid4()) for name in special}
    for name, event in special.items():
        event["event_id"] = ids[name]
    batch = [*bulk[:150], *special.values(), *bulk[150:]]
    stack.producer.emit_many(batch[:200])
    stack.producer.emit({"kind": "CEASE_REQUEST", "occurred_at": "2024-06-15T09:00:00+08:00", "debtor_id": SH})
    stack.producer.emit_many(batch[200:])
    total = len(batch)
    where = f"debtor_id IN ('{NY}', '{SH}', '{NOPROFILE}')"
    assert wait_until(lambda: count(clickhouse, "audit.actions", where) >= total, timeout_s=60)
    return {"ids": ids, "total": total, "where": where}


def row(client: Client, event_id: str) -> dict[str, Any]:
    result = client.query("SELECT * FROM audit.actions WHERE event_id = {e:UUID}", parameters={"e": event_id})
    assert len(result.result_rows) == 1
    return dict(zip(result.column_names, result.result_rows[0], strict=True))


def test_every_event_is_stored_exactly_once_with_and_without_final(stored_run: dict[str, Any],
                                                                   clickhouse: Client) -> None:
    where = stored_run["where"]
    assert count(clickhouse, "audit.actions", where) == stored_run["total"]
    assert count(clickhouse, "audit.actions", where, final=True) == stored_run["total"]
    assert count(clickhouse, "audit.reference_events", f"entity_key LIKE '%{RUN}'") == 6


@pytest.mark.parametrize(("name", "local_time", "local_date", "hour", "weekday"), [
    ("ny_before_dst", "2024-03-10T01:59:59-05:00", date(2024, 3, 10), 1, 7),
    ("ny_after_dst", "2024-03-10T03:05:00-04:00", date(2024, 3, 10), 3, 7),
    ("sh_quiet", "2024-05-01T22:00:00+08:00", date(2024, 5, 1), 22, 3),
])
def test_local_time_is_the_debtors_dst_correct_wall_clock(stored_run: dict[str, Any], clickhouse: Client, name: str,
                                                          local_time: str, local_date: date, hour: int,
                                                          weekday: int) -> None:
    stored = row(clickhouse, stored_run["ids"][name])
    assert (stored["local_time"], stored["local_date"], stored["local_hour"], stored["local_weekday"]) == \
        (local_time, local_date, hour, weekday)
    assert stored["timezone_source"] == "PROFILE"


def test_zone_falls_back_to_the_phone_then_the_jurisdiction(stored_run: dict[str, Any], clickhouse: Client) -> None:
    by_phone = row(clickhouse, stored_run["ids"]["no_profile_phone"])
    assert (by_phone["debtor_timezone"], by_phone["timezone_source"]) == ("America/Los_Angeles", "PHONE")
    assert by_phone["local_time"] == "2024-05-01T05:00:00-07:00"
    by_default = row(clickhouse, stored_run["ids"]["unknown_agency"])
    assert (by_default["debtor_timezone"], by_default["timezone_source"], by_default["jurisdiction"]) == \
        ("Asia/Shanghai", "DEFAULT", "CN")


def test_licence_and_certification_status_at_occurred_at(stored_run: dict[str, Any], clickhouse: Client) -> None:
    ids = stored_run["ids"]
    expired = row(clickhouse, ids["sh_quiet"])  # 2024-05-01T14:00Z: training 365 days + 12 h ago
    valid = row(clickhouse, ids["sh_cert_valid"])  # 2024-05-01T01:59:59Z: 1 s before it lapses
    assert (expired["agency_license_status"], expired["collector_cert_status"]) == ("VALID", "EXPIRED")
    assert valid["collector_cert_status"] == "VALID"
    assert row(clickhouse, ids["no_profile_phone"])["collector_cert_status"] == "NOT_APPLICABLE"
    assert row(clickhouse, ids["unknown_agency"])["agency_license_status"] == "UNKNOWN"


def test_pii_is_hashed_with_the_configured_key(stack: EmbeddedStack, stored_run: dict[str, Any],
                                               clickhouse: Client) -> None:
    stored = row(clickhouse, stored_run["ids"]["sh_quiet"])
    key = stack.settings.pii_key_bytes()
    expected = hmac.new(key, b"PHONE:+8613800138000", hashlib.sha256).hexdigest()
    assert stored["contact_address_hash"] == expected and stored["contact_address_last4"] == "8000"
    assert "13800138000" not in stored["message_text"]
    assert f"[PHONE#{expected[:12]}:8000]" in stored["message_text"]
    assert stored["pii_redactions"] == 1
    assert "请回电" in stored["message_text_normalized"] and "贷款应还款" in stored["message_text_normalized"]


def test_provenance_and_hash_chain(stack: EmbeddedStack, stored_run: dict[str, Any], clickhouse: Client) -> None:
    stored = row(clickhouse, stored_run["ids"]["ny_after_dst"])
    assert stored["kafka_topic"] == "collection.actions" and stored["schema_id"] == 1
    message = read_topic_for(stored, stack.settings.bootstrap_servers)
    assert str(message["event_id"]) == stored_run["ids"]["ny_after_dst"]
    chain = clickhouse.query(
        "SELECT chain_seq, prev_hash, row_hash FROM audit.actions WHERE debtor_id = {d:String} "
        "AND toYYYYMM(occurred_at) = 202406 ORDER BY chain_seq", parameters={"d": SH}).result_rows
    assert [seq for seq, _, _ in chain] == list(range(1, len(chain) + 1))
    assert all(b[1] == a[2] for a, b in itertools.pairwise(chain))


def read_topic_for(stored: dict[str, Any], bootstrap: str) -> dict[str, Any]:
    """The Kafka record a stored row names by (topic, partition, offset), decoded."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(stored["kafka_topic"], stored["kafka_partition"])
        consumer.assign([tp])
        consumer.seek(tp, stored["kafka_offset"])
        for _ in range(50):
            for message in consumer.poll(timeout_ms=200, max_records=1).get(tp, []):
                return AvroCodec(CatalogRegistry(Catalog.load())).decode("collection.actions-value",
                                                                        message.value).record
        raise AssertionError("no record at the stored offset")
    finally:
        consumer.close()


def test_bad_records_land_in_the_dead_letter_queue_with_distinct_reasons(stack: EmbeddedStack,
                                                                        clickhouse: Client) -> None:
    codec = AvroCodec(CatalogRegistry(Catalog.load()))
    debtor = f"D-DLQ-{RUN}"
    invalid = parse_event(action(debtor_id=debtor)).record | {"debtor_id": " "}  # schema-valid, contract-invalid
    good = parse_event(action(debtor_id=debtor))
    values = {
        "CORRUPT_BODY": b"\x00" + struct.pack(">I", 1) + b"\xff\xfe garbage bytes",
        "BAD_MAGIC": b"\x07" + codec.encode("collection.actions-value", good.record)[1:],
        "UNKNOWN_SCHEMA_ID": b"\x00" + struct.pack(">I", 9999) + b"\x02",
        "CONTRACT_INVALID": codec.encode("collection.actions-value", invalid),
    }
    producer = KafkaProducer(bootstrap_servers=stack.settings.bootstrap_servers)
    for value in values.values():
        producer.send("collection.actions", key=debtor.encode(), value=value)
    producer.send("collection.actions", key=debtor.encode(), value=codec.encode("collection.actions-value",
                                                                                good.record))
    producer.flush()
    producer.close()
    assert wait_until(lambda: count(clickhouse, "audit.actions", f"debtor_id = '{debtor}'") == 1, timeout_s=30), \
        "the partition must keep flowing past bad records"
    reasons = clickhouse.query(
        "SELECT reason, detail, raw_value_base64 FROM audit.dead_letters WHERE source_topic = 'collection.actions' "
        "AND raw_key_base64 = base64Encode({k:String})", parameters={"k": debtor}).result_rows
    assert sorted(r[0] for r in reasons) == sorted(values)
    assert all(r[1] for r in reasons)
    dlq = read_topic(stack.settings.bootstrap_servers, "collection.dlq", {"collection.actions/" + str(p)
                     for p in range(6)}, 4, timeout_s=10)
    assert {r["reason"] for _, r in dlq} >= set(values)


def test_a_reference_event_with_a_key_that_is_not_text_is_dead_lettered_and_the_partition_flows(
        stack: EmbeddedStack, clickhouse: Client) -> None:
    codec = AvroCodec(CatalogRegistry(Catalog.load()))
    debtor = f"D-KEY-{RUN}"
    profile = parse_event({"kind": "DEBTOR_PROFILE", "occurred_at": "2024-05-01T09:00:00+08:00",
                           "source_system": "crm", "debtor_id": debtor, "timezone": "Asia/Shanghai"})
    value = codec.encode("collection.reference-value", profile.record)
    producer = KafkaProducer(bootstrap_servers=stack.settings.bootstrap_servers)
    producer.send("collection.reference", key=b"\xff\xfe" + debtor.encode(), value=value, partition=0)
    producer.send("collection.reference", key=debtor.encode(), value=value, partition=0)  # behind it
    producer.flush()
    producer.close()
    assert wait_until(lambda: count(clickhouse, "audit.reference_events", f"entity_key = '{debtor}'") == 1,
                      timeout_s=30), "the partition must keep flowing past the bad key"

    def dead() -> list[tuple[str]]:  # the batch's dead letters are inserted after its rows
        return clickhouse.query("SELECT reason FROM audit.dead_letters WHERE source_topic = 'collection.reference' "
                                "AND raw_key_base64 = base64Encode({k:String})",
                                parameters={"k": b"\xff\xfe" + debtor.encode()}).result_rows
    assert wait_until(lambda: dead() == [("BAD_KEY",)], timeout_s=10), dead()
