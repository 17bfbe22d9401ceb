"""The rule consumer under SIGKILL, as its own process on its own broker: killed again and again while
it replays and judges, and restarted each time, it ends with exactly the alerts an uninterrupted judge
of the same events raises: none missing, none emitted twice. Windows that span a restart (daily caps,
7-in-7, calls after a conversation) count the events from before it, or alerts would go missing."""

from __future__ import annotations

import itertools
import random
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from consumers.topic_reader import from_beginning, read_to_end
from deploy.embedded_broker import EmbeddedBroker
from producers.sdk import AuditProducer
from schemas import TOPIC_ALERTS, value_subject
from schemas.catalog import Catalog
from schemas.codec import AvroCodec
from schemas.contract import parse_event
from schemas.registry import CatalogRegistry
from tests.conftest import action, wait_until
from tests.e2e.processes import RoleProcess, judged_stream

pytestmark = pytest.mark.stack
NO_IDLE_TICKS = {"COLLECTION_AUDIT_RULES_IDLE_TICK_S": "1000000"}  # event time only, as in the reference run


def emitted_alerts(broker: EmbeddedBroker, codec: AvroCodec) -> list[dict[str, Any]]:
    consumer = from_beginning(KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, enable_auto_commit=False),
                              TOPIC_ALERTS)
    alerts: list[dict[str, Any]] = []
    read_to_end(consumer, lambda r: alerts.append(codec.decode(value_subject(TOPIC_ALERTS), r.value).record))
    consumer.close()
    return alerts


def judged(rules: RoleProcess) -> float:
    """Action records the process has judged (references are read in full before any action)."""
    return sum(rules.samples("collection_audit_rules_consumed_total", 'topic="collection.actions"') or [0.0])


def test_sigkill_mid_stream_ends_with_the_alerts_of_an_uninterrupted_run_each_once(
        broker: EmbeddedBroker, tmp_path: Path, processes: list[RoleProcess]) -> None:
    codec = AvroCodec(CatalogRegistry(Catalog.load()))
    events, expected = judged_stream(9_000, seed=31, debtors=150)
    rng = random.Random(8)
    stream = iter(events)
    produced = actions = 0
    mid_stream = 0
    with AuditProducer({"bootstrap_servers": broker.bootstrap_servers}, CatalogRegistry(Catalog.load()),
                       tmp_path / "outbox.sqlite") as producer:
        def produce(n: int) -> None:
            nonlocal produced, actions
            batch = list(itertools.islice(stream, n))
            producer.emit_many(batch)
            produced += len(batch)
            actions += sum("kind" not in e for e in batch)

        produce(3_000)
        for _ in range(8):
            rules = RoleProcess("rules", broker, **NO_IDLE_TICKS)
            processes.append(rules)
            assert rules.wait_for_line("rule consumer running", timeout_s=60), "".join(rules.log[-30:])
            produce(600)
            # SIGKILL once it has judged a random part of what it must replay and judge
            point = rng.randrange(200, actions)
            assert wait_until(lambda r=rules, p=point: judged(r) >= p, timeout_s=60, every_s=0.01), \
                "".join(rules.log[-30:])
            judged_before_kill = judged(rules)
            rules.kill()
            mid_stream += judged_before_kill < actions
        produce(len(events))
        assert produced == len(events)

        final = RoleProcess("rules", broker, **NO_IDLE_TICKS)
        processes.append(final)

        def caught_up() -> bool:
            lags = final.samples("collection_audit_rules_lag")
            return lags is not None and len(lags) == 6 and not any(lags) and judged(final) >= actions

        assert wait_until(caught_up, timeout_s=120), "".join(final.log[-30:])
        wait_until(lambda: {a["alert_id"] for a in emitted_alerts(broker, codec)} >= set(expected), timeout_s=20)
        final.stop()

    alerts = emitted_alerts(broker, codec)
    twice = [alert_id for alert_id, n in Counter(a["alert_id"] for a in alerts).items() if n > 1]
    assert twice == [], f"{len(twice)} alerts emitted more than once"
    got = {a["alert_id"]: a["rule_id"] for a in alerts}
    missing = {i: r for i, r in expected.items() if i not in got}
    extra = {i: r for i, r in got.items() if i not in expected}
    assert (missing, extra) == ({}, {}), f"missing by rule {Counter(missing.values())}, " \
                                         f"extra by rule {Counter(extra.values())}"
    assert mid_stream >= 4, "SIGKILL must land with records still to judge in at least half the trials"


def test_a_rebuild_longer_than_the_session_timeout_keeps_the_consumer_in_its_group(
        broker: EmbeddedBroker, processes: list[RoleProcess]) -> None:
    # Enough reference events that reading them all (the rebuild at assignment) takes several session
    # timeouts (3 s here); the member must keep polling and heartbeating through it, or the group would
    # evict it and the next assignment would start the next rebuild.
    codec = AvroCodec(CatalogRegistry(Catalog.load()))
    profile = parse_event({"kind": "DEBTOR_PROFILE", "occurred_at": "2024-01-01T00:00:00Z", "debtor_id": "D",
                           "timezone": "Asia/Shanghai", "jurisdiction": "CN", "phone_region": "CN"})
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=20, batch_size=1 << 20)
    references = 300_000  # read in ~10 s here; 120,000 took 4.7 s once the engine got faster, under two timeouts
    for i in range(references):
        record = dict(profile.record, event_id=uuid.UUID(int=i + 1), debtor_id=f"RB-{i}")
        producer.send(profile.topic, key=f"RB-{i}".encode(), value=codec.encode(profile.subject, record))
    producer.flush()

    rules = RoleProcess("rules", broker, **NO_IDLE_TICKS)
    processes.append(rules)
    assert rules.wait_for_line("replaying the partitions", timeout_s=120), "".join(rules.log[-30:])
    assignment = rules.assignment()
    assert assignment is not None
    rebuilt_line = next(line for line in rules.log if "replaying the partitions" in line)
    rebuild_s = (datetime.strptime(rebuilt_line[:23], "%Y-%m-%d %H:%M:%S,%f") - assignment[0]).total_seconds()
    assert f"{references} reference events loaded" in rebuilt_line
    assert rebuild_s > 6, f"a rebuild of {rebuild_s:.1f}s does not outlast two session timeouts"

    after = parse_event(action())  # judged once the rebuild is over and the partitions are resumed
    producer.send(after.topic, key=after.key.encode(), value=codec.encode(after.subject, after.record))
    producer.flush()
    producer.close()
    assert wait_until(lambda: judged(rules) >= 1, timeout_s=60), "".join(rules.log[-30:])
    log = "".join(rules.log)
    for symptom in ("Heartbeat session expired", "poll timeout has expired", "Leaving consumer group"):
        assert symptom not in log, f"{symptom!r} in the rule consumer's log:\n" + "".join(rules.log[-30:])
    assert log.count("replaying the partitions") == 1, "the group rebalanced and the judge was rebuilt again"
