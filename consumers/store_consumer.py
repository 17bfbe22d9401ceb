"""The store consumer: every event of the three topics enriched and stored in ClickHouse once.

decode (writer schema -> reader schema) -> validate -> dead letter, or enrich -> rows -> insert
(trail writer: dedup, hash chain) -> dead letters to collection.dlq -> commit (ConsumerLoop). A batch is
stored on a worker thread while the next one is polled and decoded (the loop, pipelined).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client import CollectorRegistry

from consumers.consumer_loop import ConsumerLoop, tune_gc
from consumers.metrics import ConsumerMetrics
from consumers.pii import PiiMasker
from consumers.reference_state import ReferenceState
from consumers.reference_tail import ReferenceTail, load_from_clickhouse
from consumers.store_rows import Enricher, Provenance, dead_letter_row
from consumers.trail_writer import ACTIONS, ALERTS, DEAD_LETTERS, REFERENCE_EVENTS, Columns, TrailWriter, columns_of
from deploy.clickhouse_client import ClickHouseCorrupted, is_corruption, trail_client
from deploy.migrations import ensure_schema
from deploy.settings import Settings
from schemas import TOPIC_ACTIONS, TOPIC_ALERTS, TOPIC_DLQ, TOPIC_REFERENCE, value_subject
from schemas.codec import AvroCodec, DecodeError
from schemas.contract import record_problems, to_micros
from schemas.registry import SchemaRegistry, registry_for

log = logging.getLogger(__name__)
GROUP = "audit-store"
TOPICS = (TOPIC_ACTIONS, TOPIC_REFERENCE, TOPIC_ALERTS)
_SUBJECTS = {topic: value_subject(topic) for topic in TOPICS}
# Once a poll comes back empty, a batch of at least this many records is stored at once rather than after
# the batch wait: the end of a backlog lands half a second sooner, while a trickle of records still waits and
# is stored in batches (every insert is a part for ClickHouse to merge).
CAUGHT_UP_BATCH = 1_000


class DeadLetterDeliveryFailed(RuntimeError):
    pass


@dataclass
class _Batch:
    actions: list[tuple[dict[str, Any], ConsumerRecord, int]] = field(default_factory=list)
    references: list[tuple[dict[str, Any], ConsumerRecord, int]] = field(default_factory=list)
    alerts: list[tuple[dict[str, Any], ConsumerRecord, int]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    consumed: Counter[str] = field(default_factory=Counter)  # records per topic; published once stored

    def __len__(self) -> int:
        return len(self.actions) + len(self.references) + len(self.alerts) + len(self.dead)


class StoreProcessor:
    def __init__(self, client: Client, codec: AvroCodec, enricher: Enricher, dlq: KafkaProducer,
                 metrics: ConsumerMetrics, tail: ReferenceTail | None, group: str = GROUP) -> None:
        self.client = client
        self.codec = codec
        self.enricher = enricher
        self.dlq = dlq
        self.metrics = metrics
        self.tail = tail
        self.group = group
        self.writers = {t.name: TrailWriter(client, t) for t in (ACTIONS, REFERENCE_EVENTS, ALERTS, DEAD_LETTERS)}
        self.batch = _Batch()

    def add(self, record: ConsumerRecord) -> None:
        topic = record.topic
        self.batch.consumed[topic] += 1
        try:
            decoded = self.codec.decode(_SUBJECTS[topic], record.value)
        except DecodeError as exc:
            self._dead(record, exc.reason, exc.detail, exc.schema_id)
            return
        if topic == TOPIC_REFERENCE and not _utf8(record.key):  # the key is stored as the entity key
            self._dead(record, "BAD_KEY", "the Kafka key is not UTF-8 text", decoded.schema_id)
            return
        problems = record_problems(topic, decoded.record)
        if problems:
            self._dead(record, "CONTRACT_INVALID", "; ".join(str(p) for p in problems), decoded.schema_id)
            return
        batch = self.batch
        target = batch.actions if topic == TOPIC_ACTIONS else batch.references if topic == TOPIC_REFERENCE \
            else batch.alerts
        target.append((decoded.record, record, decoded.schema_id))

    def _dead(self, record: ConsumerRecord, reason: str, detail: str, schema_id: int | None) -> None:
        self.batch.dead.append(dead_letter_row(reason, detail, self.group, record.topic, record.partition,
                                               record.offset, schema_id, record.key, record.value, datetime.now(UTC)))

    def pending(self) -> int:
        return len(self.batch)

    def close(self) -> None:
        if self.tail is not None:
            self.tail.close()
        self.dlq.close(timeout=5)

    def drop(self) -> None:
        self.batch = _Batch()
        for writer in self.writers.values():
            writer.forget()

    def flush(self) -> None:
        self.store(self.batch)
        self.batch = _Batch()

    def seal(self) -> _Batch:
        """The pending batch, for `store`; records added from now on make the next one."""
        batch, self.batch = self.batch, _Batch()
        return batch

    def store(self, batch: _Batch) -> None:
        """Make `batch` durable; on failure it can be stored again (what part of it was stored is found)."""
        try:
            self._store(batch)
        except BaseException as exc:
            for writer in self.writers.values():
                writer.forget()  # a failed insert may have stored part of the batch: re-read the heads
            if isinstance(exc, ClickHouseError) and is_corruption(exc):
                raise ClickHouseCorrupted(str(exc)) from exc  # not retried: see ClickHouseCorrupted
            raise
        self.metrics.batch_size.labels(self.group).observe(len(batch))
        for topic, n in batch.consumed.items():
            self.metrics.consumed.labels(self.group, topic).inc(n)

    def _store(self, batch: _Batch) -> None:
        now = datetime.now(UTC)
        if self.tail is not None:
            self.tail.catch_up()
        for record, _, _ in batch.references:
            self.enricher.state.apply(record)

        def origin(message: ConsumerRecord, schema_id: int) -> Provenance:
            return Provenance(message.topic, message.partition, message.offset, schema_id, now)

        e = self.enricher
        # a batch's refusals first: whoever sees one of its rows stored also finds its dead letters
        self._write(DEAD_LETTERS.name, batch.dead)
        self._write(REFERENCE_EVENTS.name, [e.reference_row(r, m.key.decode() if m.key else "", origin(m, s))
                                            for r, m, s in batch.references])
        if batch.actions:
            records, messages, schema_ids = zip(*batch.actions, strict=True)
            self._write(ACTIONS.name, e.action_columns(records, TOPIC_ACTIONS, [m.partition for m in messages],
                                                       [m.offset for m in messages], schema_ids, to_micros(now)))
        self._write(ALERTS.name, [e.alert_row(r, origin(m, s)) for r, m, s in batch.alerts])
        self._send_dead_letters(batch.dead)
        stored_at = time.time()
        self.metrics.end_to_end.observe_many(ACTIONS.name, [stored_at - r["produced_at"] / 1e6
                                                            for r, _, _ in batch.actions])
        self.metrics.end_to_end.observe_many(REFERENCE_EVENTS.name, [stored_at - r["produced_at"] / 1e6
                                                                     for r, _, _ in batch.references])

    def _write(self, table: str, rows: list[dict[str, Any]] | Columns) -> None:
        """Store rows (dicts, or the table's columns) through the table's trail writer."""
        writer = self.writers[table]
        if isinstance(rows, list):
            rows = columns_of(rows, writer.table.columns)
        count = len(rows[writer.table.id_column])
        if not count:
            return
        started = time.perf_counter()
        inserted = writer.write_columns(rows)
        self.metrics.insert_seconds.labels(table).observe(time.perf_counter() - started)
        self.metrics.stored.labels(table).inc(inserted)
        if inserted < count:
            self.metrics.duplicates.labels(table).inc(count - inserted)

    def _send_dead_letters(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        futures = []
        for row in rows:
            value = self.codec.encode(value_subject(TOPIC_DLQ), {
                "reason": row["reason"], "detail": row["detail"], "consumer_group": row["consumer_group"],
                "source_topic": row["source_topic"], "source_partition": row["source_partition"],
                "source_offset": row["source_offset"], "schema_id": row["schema_id"],
                "raw_key": _b64(row["raw_key_base64"]), "raw_value": _b64(row["raw_value_base64"]),
                "failed_at": to_micros(row["failed_at"])})
            futures.append(self.dlq.send(TOPIC_DLQ, key=f"{row['source_topic']}/{row['source_partition']}".encode(),
                                         value=value))
        self.dlq.flush(timeout=30)
        if not all(f.is_done and f.succeeded() for f in futures):
            raise DeadLetterDeliveryFailed("dead letters were not acknowledged by Kafka")
        for row in rows:
            self.metrics.dead_lettered.labels(self.group, row["reason"]).inc()


def _b64(text: str) -> bytes | None:
    return base64.b64decode(text) if text else None


def build_store_loop(settings: Settings, client: Client, codec: AvroCodec, enricher: Enricher,
                     metrics: ConsumerMetrics) -> tuple[ConsumerLoop, StoreProcessor]:
    """Wire the store consumer: the group consumer, the DLQ producer, the reference tail."""
    kafka = settings.kafka_client_config()
    loaded = load_from_clickhouse(client, enricher.state)
    log.info("reference state: %d records loaded from ClickHouse", loaded)
    tail = ReferenceTail(kafka, codec, enricher.state)
    dlq = KafkaProducer(**kafka, acks="all", enable_idempotence=True, client_id="collection-audit-dlq")
    processor = StoreProcessor(client, codec, enricher, dlq, metrics, tail)
    # kafka-python's default fetch, 1 MiB per partition: with 8 MiB the same records took twice as long to
    # consume (docs/operations.md); a larger record still comes whole
    consumer = KafkaConsumer(**kafka, group_id=GROUP, client_id="collection-audit-store", enable_auto_commit=False,
                             auto_offset_reset="earliest", max_poll_interval_ms=settings.kafka_max_poll_interval_ms,
                             session_timeout_ms=min(10_000, settings.kafka_max_poll_interval_ms),
                             heartbeat_interval_ms=min(3_000, settings.kafka_max_poll_interval_ms // 3))
    loop = ConsumerLoop(consumer, processor, max_batch=settings.store_batch_rows,
                        max_wait_s=settings.store_batch_wait_ms / 1000,
                        infrastructure_errors=(ClickHouseError, DeadLetterDeliveryFailed, OSError),
                        commit_delay_s=settings.store_commit_delay_ms / 1000,
                        caught_up_batch=min(CAUGHT_UP_BATCH, settings.store_batch_rows), pipelined=True)
    disks = DiskWatch(client, metrics)
    disks.sample()

    def on_poll() -> None:
        _publish_lag(loop, metrics)
        if not loop.storing:  # the client is the worker's while it stores a batch
            disks.sample()

    loop.on_poll = loop.on_retry_poll = on_poll  # lag, health and disk stay current through an outage
    loop.on_revoked = lambda revoked: _forget_lag(revoked, metrics)
    consumer.subscribe(list(TOPICS), listener=_Listener(loop, processor))
    return loop, processor


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: ConsumerLoop, processor: StoreProcessor) -> None:
        self.loop, self.processor = loop, processor

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.loop.on_partitions_revoked(list(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.loop.on_partitions_assigned(list(assigned))  # first: no batch is being stored after it
        # another instance may have extended the chains of these debtors meanwhile: read the heads again
        for writer in self.processor.writers.values():
            writer.forget()


class DiskWatch:
    """Free space of ClickHouse's disks on the store's /metrics (the embedded stack has no ClickHouse
    metrics endpoint of its own), sampled every `every_s`; a warning in the log below 15%."""

    WARN_BELOW = 0.15

    def __init__(self, client: Client, metrics: ConsumerMetrics, every_s: float = 15.0) -> None:
        self.client, self.metrics, self.every_s = client, metrics, every_s
        self._next = 0.0
        self._warned: set[str] = set()

    def sample(self) -> None:
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.every_s
        try:
            disks = self.client.query("SELECT name, free_space, total_space FROM system.disks").result_rows
        except (ClickHouseError, OSError):
            return  # ClickHouse unreachable: the flush path reports that
        for name, free, total in disks:
            if not total:
                continue
            ratio = free / total
            self.metrics.disk_free.labels(name).set(ratio)
            if ratio >= self.WARN_BELOW:
                self._warned.discard(name)
            elif name not in self._warned:  # once per dip, not every sample
                self._warned.add(name)
                log.warning("ClickHouse disk %s has %.1f%% free: inserts are refused below 10%% "
                            "(deploy/clickhouse/0004_disk_safety.sql)", name, 100 * ratio)


def _utf8(key: bytes | None) -> bool:
    try:
        (key or b"").decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _publish_lag(loop: ConsumerLoop, metrics: ConsumerMetrics) -> None:
    metrics.last_poll.labels(metrics.group).set_to_current_time()
    metrics.assigned.labels(metrics.group).set(len(loop.consumer.assignment()))
    for tp, lag in loop.lag().items():
        metrics.lag.labels(metrics.group, tp.topic, str(tp.partition)).set(lag)


def _forget_lag(revoked: list[TopicPartition], metrics: ConsumerMetrics) -> None:
    """A partition handed to another instance is that instance's to report: no frozen lag left here."""
    for tp in revoked:
        with contextlib.suppress(KeyError):
            metrics.lag.remove(metrics.group, tp.topic, str(tp.partition))


def store_codec(registry: SchemaRegistry) -> AvroCodec:
    """The store decodes actions and reference events plain (instants in microseconds, dates in days, ids
    as text), as it enriches and inserts them and as its reference state keeps them: that is also what the
    decoder compiled from a schema reads (schemas/compiled_reader.py). Alerts, a few per thousand
    actions, keep their logical types."""
    return AvroCodec(registry, plain_subjects=[value_subject(TOPIC_ACTIONS), value_subject(TOPIC_REFERENCE)])


def _import_insert_dependencies() -> None:
    """clickhouse-connect imports pandas (when installed: chDB requires it) on the first insert, to
    check whether the data is a DataFrame: about 0.7 s of CPU, paid at start-up instead of in the first
    batch."""
    from clickhouse_connect.driver import options

    _ = options.pd


def run_store(settings: Settings, registry: CollectorRegistry, should_stop: Callable[[], bool],
              client: Client | None = None) -> StoreProcessor:
    """The store role until `should_stop()`: ensure the schema, then consume, store, commit; drains on stop."""
    client = client or trail_client(settings)
    ensure_schema(client, settings.clickhouse_cluster)
    codec = store_codec(registry_for(settings.schema_registry_url))
    enricher = Enricher(PiiMasker(settings.pii_key_bytes(), default_region=settings.default_jurisdiction),
                        ReferenceState(in_micros=True), settings.default_jurisdiction)
    loop, processor = build_store_loop(settings, client, codec, enricher, ConsumerMetrics(registry, GROUP))
    _import_insert_dependencies()
    tune_gc()  # schema, codec, PII and OpenCC tables are loaded
    try:
        loop.run(should_stop)
    finally:
        processor.close()
    return processor
