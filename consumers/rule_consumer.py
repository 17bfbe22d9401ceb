"""The rule consumer: actions and reference events in, alerts out to `collection.alerts`.

State across restarts (replay, not snapshots): at start the consumer reads `collection.alerts` to
learn which alert ids were already emitted, reads `collection.reference` from its beginning (every
instance needs every licence and certification), and, for each `collection.actions` partition the
group assigns it, replays the partition from its beginning. Windows therefore count the events from
before a restart, and an alert re-derived by the replay has the same id as before and is not emitted
again. The price is a start-up replay of the retained log, bounded by the topics' retention; a
snapshot would only shorten that, at the cost of a second source of truth.

Commit order (ConsumerLoop): alerts of the batch produced and acknowledged (acks=all) -> offsets
committed. The offsets serve lag monitoring; correctness rests on the replay and the alert ids.
A record the codec or the contract rejects is skipped here and dead-lettered by the store consumer.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.partitioner.default import murmur2
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from consumers.alert_delivery import AlertDelivery
from consumers.consumer_loop import ConsumerLoop
from consumers.rules.engine import RuleEngine
from consumers.rules.ruleset import load_ruleset
from consumers.rules.text_match import Lexicon
from deploy.settings import Settings
from schemas import TOPIC_ACTIONS, TOPIC_ALERTS, TOPIC_REFERENCE, value_subject
from schemas.codec import AvroCodec, DecodeError
from schemas.contract import record_problems
from schemas.registry import registry_for

log = logging.getLogger(__name__)
GROUP = "audit-rules"


class AlertsNotAcknowledged(RuntimeError):
    pass


class RuleMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumed = Counter("collection_audit_rules_consumed", "Records the rule consumer judged",
                                ["topic", "outcome"], registry=registry)
        self.raised = Counter("collection_audit_alerts_raised", "Alerts emitted to collection.alerts",
                              ["rule", "severity"], registry=registry)
        self.latency = Histogram("collection_audit_alert_latency_seconds",
                                 "Triggering event occurred (or was produced) -> alert emitted", ["since"],
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 60, 3600, 86400), registry=registry)
        self.lag = Gauge("collection_audit_rules_lag", "Action records not yet judged, per partition",
                         ["partition"], registry=registry)


def read_to_end(consumer: KafkaConsumer, handle: Callable[[ConsumerRecord], None], quiet_polls: int = 3) -> int:
    """Read an assigned consumer until several polls in a row return nothing; returns records read."""
    read, quiet = 0, 0
    while quiet < quiet_polls:
        batches = consumer.poll(timeout_ms=200, max_records=10_000)
        if not batches:
            quiet += 1
            continue
        quiet = 0
        for records in batches.values():
            for record in records:
                handle(record)
                read += 1
    return read


class RuleProcessor:
    def __init__(self, engine: RuleEngine, codec: AvroCodec, producer: KafkaProducer, delivery: AlertDelivery,
                 metrics: RuleMetrics) -> None:
        self.engine = engine
        self.codec = codec
        self.producer = producer
        self.delivery = delivery
        self.metrics = metrics
        self.alerts: list[tuple[dict[str, Any], datetime | None]] = []
        self.records = 0
        self.last_record_at = time.monotonic()

    def add(self, record: ConsumerRecord) -> None:
        self.records += 1
        self.last_record_at = time.monotonic()
        decoded = self._decode(record)
        if decoded is None:
            return
        if record.topic == TOPIC_ACTIONS:
            produced = decoded.get("produced_at")
            self.alerts.extend((a, produced) for a in self.engine.on_action(decoded))
        else:
            self.alerts.extend((a, None) for a in self.engine.on_reference(decoded))

    def add_reference(self, record: ConsumerRecord) -> None:
        self.last_record_at = time.monotonic()
        decoded = self._decode(record)
        if decoded is not None:
            self.alerts.extend((a, None) for a in self.engine.on_reference(decoded))

    def _decode(self, record: ConsumerRecord) -> dict[str, Any] | None:
        try:
            decoded = self.codec.decode(value_subject(record.topic), record.value)
        except DecodeError:
            self.metrics.consumed.labels(record.topic, "undecodable").inc()
            return None
        if record_problems(record.topic, decoded.record):
            self.metrics.consumed.labels(record.topic, "invalid").inc()
            return None
        self.metrics.consumed.labels(record.topic, "judged").inc()
        return decoded.record

    def tick_if_idle(self, idle_s: float) -> None:
        if time.monotonic() - self.last_record_at >= idle_s:
            self.last_record_at = time.monotonic()
            self.alerts.extend((a, None) for a in self.engine.tick(datetime.now(UTC)))

    def pending(self) -> int:
        return self.records + len(self.alerts)

    def flush(self) -> None:
        futures = []
        for alert, _ in self.alerts:
            value = self.codec.encode(value_subject(TOPIC_ALERTS), alert)
            futures.append(self.producer.send(TOPIC_ALERTS, key=alert["debtor_id"].encode(), value=value))
        if futures:
            self.producer.flush(timeout=30)
            if not all(f.is_done and f.succeeded() for f in futures):
                raise AlertsNotAcknowledged("alerts were not acknowledged by Kafka")
        now = datetime.now(UTC)
        for alert, produced_at in self.alerts:
            self.metrics.raised.labels(alert["rule_id"], alert["severity"]).inc()
            self.metrics.latency.labels("occurred").observe(max(0.0, (now - alert["occurred_at"]).total_seconds()))
            if produced_at is not None:
                self.metrics.latency.labels("produced").observe(max(0.0, (now - produced_at).total_seconds()))
            self.delivery.submit(alert)
        self.alerts = []
        self.records = 0

    def drop(self) -> None:
        for alert, _ in self.alerts:  # not emitted: a later replay must be free to emit them
            self.engine.raised.discard(alert["alert_id"])
        self.alerts = []
        self.records = 0


def build_engine(settings: Settings, owns: Callable[[str], bool] = lambda d: True) -> RuleEngine:
    lexicon = Lexicon.from_directory()
    ruleset = load_ruleset(categories=lexicon.categories)
    return RuleEngine(ruleset, lexicon, default_jurisdiction=settings.default_jurisdiction,
                      allowed_lateness=timedelta(seconds=settings.rules_allowed_lateness_s), owns=owns)


def run_rules(settings: Settings, registry: CollectorRegistry, should_stop: Callable[[], bool],
              on_ready: Callable[[], None] = lambda: None) -> RuleProcessor:
    """The rule role until `should_stop()`: learn emitted alerts, load references, replay, judge."""
    kafka = settings.kafka_client_config()
    codec = AvroCodec(registry_for(settings.schema_registry_url))
    assigned: set[int] = set()
    partitions_total = [0]

    def owns(debtor_id: str) -> bool:
        if not partitions_total[0]:
            return True
        return (murmur2(debtor_id.encode()) & 0x7FFFFFFF) % partitions_total[0] in assigned

    engine = build_engine(settings, owns)
    metrics = RuleMetrics(registry)
    emitted = _emitted_alert_ids(kafka, codec)
    engine.raised.update(emitted)
    producer = KafkaProducer(**kafka, acks="all", enable_idempotence=True, linger_ms=5,
                             client_id="collection-audit-rules")
    delivery = AlertDelivery(settings.alertmanager_url, [u for u in settings.alert_webhook_urls.split(",") if u],
                             registry, resend_s=settings.alert_resend_s)
    processor = RuleProcessor(engine, codec, producer, delivery, metrics)
    references = KafkaConsumer(**kafka, enable_auto_commit=False, client_id="collection-audit-rules-reference",
                               max_partition_fetch_bytes=8 << 20)
    reference_partitions = [TopicPartition(TOPIC_REFERENCE, p)
                            for p in sorted(references.partitions_for_topic(TOPIC_REFERENCE) or [])]
    references.assign(reference_partitions)
    references.seek_to_beginning(*reference_partitions)
    loaded = read_to_end(references, processor.add_reference)
    log.info("rules: %d alert ids already emitted, %d reference events loaded", len(emitted), loaded)
    consumer = KafkaConsumer(**kafka, group_id=GROUP, client_id="collection-audit-rules", enable_auto_commit=False,
                             auto_offset_reset="earliest", max_poll_interval_ms=settings.kafka_max_poll_interval_ms,
                             session_timeout_ms=min(10_000, settings.kafka_max_poll_interval_ms),
                             heartbeat_interval_ms=min(3_000, settings.kafka_max_poll_interval_ms // 3),
                             max_partition_fetch_bytes=8 << 20)
    partitions_total[0] = len(consumer.partitions_for_topic(TOPIC_ACTIONS) or [])
    loop = ConsumerLoop(consumer, processor, max_batch=2_000, max_wait_s=0.05,
                        infrastructure_errors=(AlertsNotAcknowledged, OSError))

    def on_poll() -> None:
        for records in references.poll(timeout_ms=0, max_records=5_000).values():
            for record in records:
                processor.add_reference(record)
        processor.tick_if_idle(settings.rules_idle_tick_s)
        for tp, lag in loop.lag().items():
            metrics.lag.labels(str(tp.partition)).set(lag)

    loop.on_poll = on_poll
    consumer.subscribe([TOPIC_ACTIONS], listener=_Replay(loop, consumer, assigned))
    on_ready()
    try:
        loop.run(should_stop)
    finally:
        references.close()
        delivery.close()
        producer.close(timeout=5)
    return processor


class _Replay(ConsumerRebalanceListener):  # type: ignore[misc]
    """Newly assigned partitions are replayed from their beginning to rebuild per-debtor state."""

    def __init__(self, loop: ConsumerLoop, consumer: KafkaConsumer, assigned: set[int]) -> None:
        self.loop, self.consumer, self.assigned = loop, consumer, assigned

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.loop.on_partitions_revoked(list(revoked))
        self.assigned.difference_update(tp.partition for tp in revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        fresh = [tp for tp in assigned if tp.partition not in self.assigned]
        self.assigned.update(tp.partition for tp in assigned)
        self.loop.on_partitions_assigned(list(assigned))
        if fresh:
            self.consumer.seek_to_beginning(*fresh)


def _emitted_alert_ids(kafka: dict[str, Any], codec: AvroCodec) -> set[str]:
    consumer = KafkaConsumer(**kafka, enable_auto_commit=False, client_id="collection-audit-rules-emitted",
                             max_partition_fetch_bytes=8 << 20)
    partitions = [TopicPartition(TOPIC_ALERTS, p) for p in sorted(consumer.partitions_for_topic(TOPIC_ALERTS) or [])]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    ids: set[str] = set()

    def remember(record: ConsumerRecord) -> None:
        with contextlib.suppress(DecodeError):
            ids.add(codec.decode(value_subject(TOPIC_ALERTS), record.value).record["alert_id"])

    read_to_end(consumer, remember)
    consumer.close()
    return ids
