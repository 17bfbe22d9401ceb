"""The rule consumer: actions and reference events in, alerts out to `collection.alerts`.

State across restarts and rebalances (replay, not snapshots): whenever the group assigns the consumer
`collection.actions` partitions it did not hold (at start, or when another instance joins or leaves),
it builds a new judge: it reads `collection.alerts` to learn which alert ids were already emitted (by
itself before a restart, or by the partitions' previous owner), reads `collection.reference` from its
beginning (every instance needs every licence and certification), and replays every assigned
partition from its beginning. Windows therefore count the events from
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

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from consumers.alert_delivery import AlertDelivery
from consumers.consumer_loop import ConsumerLoop, tune_gc
from consumers.rules.engine import RuleEngine
from consumers.rules.ruleset import load_ruleset
from consumers.rules.text_match import Lexicon
from consumers.topic_reader import from_beginning, read_to_end
from deploy.settings import Settings
from schemas import TOPIC_ACTIONS, TOPIC_ALERTS, TOPIC_REFERENCE, value_subject
from schemas.codec import AvroCodec, DecodeError
from schemas.contract import record_problems
from schemas.registry import registry_for

log = logging.getLogger(__name__)
GROUP = "audit-rules"
_FENCE_CLOCK_SKEW_MS = 2_000  # producers' clocks may run this far ahead of ours


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
        self.assigned = Gauge("collection_audit_rules_assigned_partitions",
                              "collection.actions partitions this rule consumer holds (0 while it joins)",
                              registry=registry)
        self.last_poll = Gauge("collection_audit_rules_last_poll_timestamp_seconds",
                               "When the rule consumer last polled Kafka (unix time): /healthz of `rules`",
                               registry=registry)


class InputMarks:
    """The event-time watermark of a consumer of several partitions: the least latest-read moment
    among the inputs still behind (of every input, once all are caught up), so a timer never fires
    on one partition's progress while another still holds the event that satisfies it."""

    def __init__(self) -> None:
        self.latest: dict[tuple[str, int], datetime] = {}  # latest occurred_at read, per (topic, partition)

    def saw(self, source: tuple[str, int], occurred_at: datetime) -> None:
        if source not in self.latest or occurred_at > self.latest[source]:
            self.latest[source] = occurred_at

    def watermark(self, inputs: dict[tuple[str, int], bool]) -> datetime | None:
        """`inputs`: the partitions read now -> caught up. None: nothing can be said yet."""
        if not any(topic == TOPIC_ACTIONS for topic, _ in inputs):
            return None  # no action partition assigned (yet): no debtor owned whose timers could fire
        behind = [source for source, caught_up in inputs.items() if not caught_up]
        if any(source not in self.latest for source in behind):
            return None  # an input not read from yet: nothing is known of its event time
        if behind:
            return min(self.latest[s] for s in behind)
        return max((self.latest[s] for s in inputs if s in self.latest), default=None)


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
        self.marks = InputMarks()

    def add(self, record: ConsumerRecord) -> None:
        """An action from the group's partitions (references come through add_reference)."""
        self.records += 1
        self.last_record_at = time.monotonic()
        decoded = self._decode(record)
        if decoded is not None:
            self.alerts.extend((a, decoded["produced_at"]) for a in self.engine.on_action(decoded))

    def add_reference(self, record: ConsumerRecord) -> None:
        self.last_record_at = time.monotonic()
        decoded = self._decode(record)
        if decoded is not None:
            self.alerts.extend((a, None) for a in self.engine.on_reference(decoded))

    def advance_watermark(self, inputs: dict[tuple[str, int], bool]) -> None:
        moment = self.marks.watermark(inputs)
        if moment is not None:
            self.alerts.extend((a, None) for a in self.engine.advance(moment))

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
        self.marks.saw((record.topic, record.partition), decoded.record["occurred_at"])
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


def engine_factory(settings: Settings, owns: Callable[[str], bool] = lambda d: True) -> Callable[[], RuleEngine]:
    """New, empty judges sharing one loaded catalog and lexicon (read from disk once)."""
    lexicon = Lexicon.from_directory()
    ruleset = load_ruleset(categories=lexicon.categories)
    return lambda: RuleEngine(ruleset, lexicon, default_jurisdiction=settings.default_jurisdiction,
                              allowed_lateness=timedelta(seconds=settings.rules_allowed_lateness_s), owns=owns,
                              watermark_from_events=False)


def build_engine(settings: Settings, owns: Callable[[str], bool] = lambda d: True) -> RuleEngine:
    return engine_factory(settings, owns)()


def run_rules(settings: Settings, registry: CollectorRegistry, should_stop: Callable[[], bool],
              on_ready: Callable[[], None] = lambda: None) -> RuleProcessor:
    """The rule role until `should_stop()`: learn emitted alerts, load references, replay, judge."""
    kafka = settings.kafka_client_config()
    codec = AvroCodec(registry_for(settings.schema_registry_url), uuids_as_text=True)
    consumer = KafkaConsumer(**kafka, group_id=GROUP, client_id="collection-audit-rules", enable_auto_commit=False,
                             auto_offset_reset="earliest", max_poll_interval_ms=settings.kafka_max_poll_interval_ms,
                             session_timeout_ms=min(10_000, settings.kafka_max_poll_interval_ms),
                             heartbeat_interval_ms=min(3_000, settings.kafka_max_poll_interval_ms // 3),
                             max_partition_fetch_bytes=8 << 20)
    replay = _Replay(consumer, len(consumer.partitions_for_topic(TOPIC_ACTIONS) or []))
    metrics = RuleMetrics(registry)
    producer = KafkaProducer(**kafka, acks="all", enable_idempotence=True, linger_ms=5,
                             client_id="collection-audit-rules")
    delivery = AlertDelivery(settings.alertmanager_url, [u for u in settings.alert_webhook_urls.split(",") if u],
                             registry, resend_s=settings.alert_resend_s)
    new_engine = engine_factory(settings, replay.owns)
    processor = RuleProcessor(new_engine(), codec, producer, delivery, metrics)
    references = from_beginning(KafkaConsumer(**kafka, enable_auto_commit=False, max_partition_fetch_bytes=8 << 20,
                                              fetch_max_wait_ms=5,  # fences answer fast, even on idle topics
                                              client_id="collection-audit-rules-reference"), TOPIC_REFERENCE)

    def rebuild() -> None:
        """A new judge for a new set of partitions, built exactly as a restarted instance builds it."""
        while True:  # judging without every emitted id and reference would repeat or misjudge alerts
            processor.engine = new_engine()
            processor.marks = InputMarks()
            processor.alerts, processor.records = [], 0  # re-derived by the replay
            try:
                emitted = _emitted_alert_ids(kafka, codec, replay.keep_in_group)
                references.seek_to_beginning()
                loaded = read_to_end(references, processor.add_reference, between_polls=replay.keep_in_group)
                break
            except (TimeoutError, KafkaError) as exc:
                log.warning("rules: cannot rebuild the judge yet (%s); retrying", exc)
                time.sleep(1.0)
        processor.engine.raised.update(emitted)
        log.info("rules: partitions assigned: %d alert ids already emitted, %d reference events loaded; "
                 "replaying the partitions", len(emitted), loaded)

    replay.rebuild = rebuild
    loop = ConsumerLoop(consumer, processor, max_batch=2_000, max_wait_s=0.05,
                        infrastructure_errors=(AlertsNotAcknowledged, OSError))

    def apply_references(batches: dict[Any, list[ConsumerRecord]]) -> None:
        for records in batches.values():
            for record in records:
                processor.add_reference(record)

    def read_references() -> None:
        apply_references(references.poll(timeout_ms=0, max_records=5_000))

    fenced_at_ms = 0.0  # the reference topic has been read up to what the broker held at this moment

    def fence_references(actions: dict[Any, list[ConsumerRecord]]) -> None:
        """Before actions are judged: every reference event sent before them read. Producers send an
        action's references first and wait for their acks (AuditProducer._deliver), so a reference fetch
        answered after the actions were sent holds them; two empty polls in a row mean such a fetch
        came back with nothing more. Replayed actions, older than the last fence, need none."""
        nonlocal fenced_at_ms
        newest_ms = max(record.timestamp for records in actions.values() for record in records)
        if newest_ms < fenced_at_ms - _FENCE_CLOCK_SKEW_MS:
            return
        started_ms, empty, deadline = time.time() * 1000, 0, time.monotonic() + 5.0
        while empty < 2 and time.monotonic() < deadline:
            batches = references.poll(timeout_ms=10, max_records=5_000)
            empty = 0 if batches else empty + 1
            apply_references(batches)
        fenced_at_ms = started_ms

    def on_poll() -> None:
        replay.rebuild_if_stale()  # before anything else is judged with the old judge's state
        read_references()
        processor.advance_watermark({**_caught_up(consumer), **_caught_up(references)})
        processor.tick_if_idle(settings.rules_idle_tick_s)
        metrics.last_poll.set_to_current_time()
        metrics.assigned.set(len(consumer.assignment()))
        for tp, lag in loop.lag().items():
            metrics.lag.labels(str(tp.partition)).set(lag)

    loop.before_records = fence_references
    loop.on_poll = on_poll
    loop.on_revoked = lambda revoked: _forget_lag(revoked, metrics)
    replay.loop = loop
    consumer.subscribe([TOPIC_ACTIONS], listener=replay)
    on_ready()
    tune_gc()  # catalog, lexicon and clients are loaded
    try:
        loop.run(should_stop)
    finally:
        references.close()
        delivery.close()
        producer.close(timeout=5)
    return processor


class _Replay(ConsumerRebalanceListener):  # type: ignore[misc]
    """An assignment that brings partitions this instance did not hold is handled as a restart: a new
    judge (every alert id already in collection.alerts learned, including those the partitions' previous
    owner emitted up to its hand-over; every reference event read) and every assigned partition replayed
    from its beginning. Keeping the old judge would replay the new partitions' history behind its
    event-time watermark: their timers would fire before the events that satisfy them. The debtors of
    the assigned partitions are the ones whose timers and late re-judging this instance owns.

    The rebuild does not run in the listener: kafka-python calls it from inside poll(), where reading
    two whole topics would hold up the member's heartbeats and its next poll (a group evicts a member
    silent for session.timeout.ms, or not polling for max.poll.interval.ms, and the eviction would start
    the next rebuild). The listener pauses the partitions; the loop rebuilds after the poll, polling the
    group (paused: no records) about once a second while it reads; then it rewinds and resumes them."""

    KEEP_ALIVE_S = 1.0

    def __init__(self, consumer: KafkaConsumer, partitions: int) -> None:
        self.consumer, self.partitions = consumer, partitions
        self.assigned: set[int] = set()
        self.loop: ConsumerLoop | None = None
        self.rebuild: Callable[[], None] = lambda: None
        self.stale = False  # partitions were assigned that the current judge was not built for
        self._next_keep_alive = 0.0

    def owns(self, debtor_id: str) -> bool:
        if not self.partitions:
            return True
        return (murmur2(debtor_id.encode()) & 0x7FFFFFFF) % self.partitions in self.assigned

    def on_partitions_revoked(self, revoked: Any) -> None:
        if self.loop is not None:
            self.loop.on_partitions_revoked(list(revoked))
        self.assigned.difference_update(tp.partition for tp in revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        fresh = [tp for tp in assigned if tp.partition not in self.assigned]
        self.assigned.update(tp.partition for tp in assigned)
        if self.loop is not None:
            self.loop.on_partitions_assigned(list(assigned))
        if fresh:
            self.stale = True
            self.consumer.pause(*assigned)  # nothing of them judged before the rebuild

    def rebuild_if_stale(self) -> None:
        while self.stale:  # an assignment during the rebuild's own polls asks for another
            self.stale = False
            self.rebuild()
            assigned = self.consumer.assignment()
            if not self.stale and assigned:
                self.consumer.seek_to_beginning(*assigned)
                self.consumer.resume(*assigned)

    def keep_in_group(self) -> None:
        """Between the rebuild's reads: a poll of the group consumer, every partition paused, so it
        returns no records but counts as the member's poll (and takes part in a rebalance)."""
        if time.monotonic() < self._next_keep_alive:
            return
        self._next_keep_alive = time.monotonic() + self.KEEP_ALIVE_S
        self.consumer.pause(*self.consumer.assignment())
        self.consumer.poll(timeout_ms=0)


def _forget_lag(revoked: list[Any], metrics: RuleMetrics) -> None:
    """A partition handed to another instance is that instance's to report: no frozen lag left here."""
    for tp in revoked:
        with contextlib.suppress(KeyError):
            metrics.lag.remove(str(tp.partition))


def _caught_up(consumer: KafkaConsumer) -> dict[tuple[str, int], bool]:
    """Assigned partition -> everything up to the high-water mark of the last fetch has been read."""
    found = {}
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        try:
            position = consumer.position(tp, timeout_ms=0)
        except KafkaError:
            position = None
        found[(tp.topic, tp.partition)] = highwater is not None and position is not None and position >= highwater
    return found


def _emitted_alert_ids(kafka: dict[str, Any], codec: AvroCodec, between_polls: Callable[[], None]) -> set[str]:
    consumer = from_beginning(KafkaConsumer(**kafka, enable_auto_commit=False, max_partition_fetch_bytes=8 << 20,
                                            client_id="collection-audit-rules-emitted"), TOPIC_ALERTS)
    ids: set[str] = set()

    def remember(record: ConsumerRecord) -> None:
        with contextlib.suppress(DecodeError):
            ids.add(codec.decode(value_subject(TOPIC_ALERTS), record.value).record["alert_id"])

    try:
        read_to_end(consumer, remember, between_polls=between_polls)
    finally:
        consumer.close()
    return ids
