"""Rule figures: the engine alone on one core, the rule consumer through Kafka, and alert latency
(event occurred -> alert readable in collection.alerts) at a steady 2,000 events/s."""

from __future__ import annotations

import itertools
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from prometheus_client import CollectorRegistry
from rich.console import Console

from consumers.rule_consumer import build_engine, run_rules
from consumers.rules.simulator_check import decoded_simulation
from consumers.topic_reader import from_beginning
from deploy.embedded_broker import EmbeddedBroker
from deploy.settings import Settings
from deploy.topics import apply_topics, load_topic_specs
from producers.sdk import AuditProducer
from producers.simulator import SimConfig, Simulation
from schemas import TOPIC_ALERTS, value_subject
from schemas.catalog import Catalog
from schemas.codec import AvroCodec
from schemas.contract import format_rfc3339, to_micros
from schemas.registry import CatalogRegistry
from tests.bench.store_bench import encoded_events
from tests.conftest import free_port

STEADY_RATE = 2_000  # events/s
STEADY_SECONDS = 20
TIMER_RULES = {"COMPLAINT_SLA", "DEBT_INFO_MISSING"}  # absence rules: their alerts occur at a deadline


def engine_alone(n_events: int) -> float:
    stream = decoded_simulation(n_events, seed=7, violation_rate=0.02)
    engine = build_engine(Settings())
    engine.watermark_from_events = True  # one ordered stream
    started = time.perf_counter()
    for is_action, record, _ in stream:
        engine.on_action(record) if is_action else engine.on_reference(record)
    return len(stream) / (time.perf_counter() - started)


def judged(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("collection_audit_rules_consumed_total",
                                     {"topic": "collection.actions", "outcome": "judged"}) or 0.0


def start_rules(settings: Settings) -> tuple[CollectorRegistry, threading.Event, threading.Thread]:
    registry, stop = CollectorRegistry(), threading.Event()
    thread = threading.Thread(target=run_rules, args=(settings, registry, stop.is_set), daemon=True)
    thread.start()
    return registry, stop, thread


def through_kafka(settings: Settings, codec: AvroCodec, n_events: int) -> float:
    """Actions judged per second by the rule consumer, from its first judged action to its last (the
    start-up read of references and the group join, slow on Tansu, are left out)."""
    values = encoded_events(n_events, codec)
    producer = KafkaProducer(**settings.kafka_client_config(), linger_ms=5, batch_size=1 << 18)
    for topic, key, value in values:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()
    actions = sum(1 for topic, _, _ in values if topic == "collection.actions")
    registry, stop, thread = start_rules(settings)
    while (first := judged(registry)) == 0:
        time.sleep(0.002)
    started = time.perf_counter()
    while judged(registry) < actions:
        time.sleep(0.01)
        if not thread.is_alive():
            raise RuntimeError("the rule consumer died")
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join(60)
    return (actions - first) / elapsed


def now_events(seed: int) -> Iterator[dict[str, Any]]:
    """Simulated events re-stamped to occur now, as live traffic does."""
    for item in Simulation(SimConfig(seed=seed, debtors=1000, violation_rate=0.05)).events():
        event = dict(item.event)
        event["occurred_at"] = format_rfc3339(to_micros(datetime.now(UTC)), 0)
        yield event


def steady_latency(settings: Settings, codec: AvroCodec, tmp: Path, console: Console) -> dict[str, float]:
    """Send at STEADY_RATE for STEADY_SECONDS; every alert raised on arrival (timer alerts occur at
    their deadline) is timed from its event's occurred_at to the moment a consumer reads it."""
    registry, stop, thread = start_rules(settings)
    latencies: list[float] = []
    reading = threading.Event()
    reader = threading.Thread(target=_read_alerts, args=(settings, codec, latencies, reading.is_set), daemon=True)
    reader.start()
    events = now_events(seed=11)
    with AuditProducer(settings.kafka_client_config(), CatalogRegistry(Catalog.load()),
                       tmp / "outbox.sqlite") as producer:
        producer.emit_many(list(itertools.islice(events, 2_000)))  # profiles, licences, first contacts
        while any(registry.get_sample_value("collection_audit_rules_lag", {"partition": str(p)}) is None
                  for p in range(6)):  # the group join
            time.sleep(0.05)
        latencies.clear()
        console.print(f"rules: steady {STEADY_RATE:,} events/s for {STEADY_SECONDS} s...")
        sent, started, batch = 0, time.monotonic(), STEADY_RATE // 20
        while time.monotonic() - started < STEADY_SECONDS:
            producer.emit_many(list(itertools.islice(events, batch)))
            sent += batch
            ahead = sent / STEADY_RATE - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        achieved = sent / (time.monotonic() - started)
    time.sleep(2)
    reading.set()
    stop.set()
    reader.join(10)
    thread.join(60)
    if len(latencies) < 20:
        raise RuntimeError(f"only {len(latencies)} alerts arrived during the steady run")
    cuts = statistics.quantiles(latencies, n=100)
    return {"steady_rate_per_s": achieved, "alert_latency_p50_ms": cuts[49] * 1000,
            "alert_latency_p99_ms": cuts[98] * 1000, "alerts_timed": float(len(latencies))}


def _read_alerts(settings: Settings, codec: AvroCodec, latencies: list[float], done: Callable[[], bool]) -> None:
    consumer = from_beginning(KafkaConsumer(**settings.kafka_client_config(), enable_auto_commit=False),
                              TOPIC_ALERTS)
    while not done():
        for records in consumer.poll(timeout_ms=50).values():
            read_at = datetime.now(UTC)
            for record in records:
                alert = codec.decode(value_subject(TOPIC_ALERTS), record.value).record
                if alert["rule_id"] not in TIMER_RULES and not alert["late"]:
                    latencies.append((read_at - alert["occurred_at"]).total_seconds())
    consumer.close()


def run(console: Console, n_events: int) -> dict[str, float]:
    codec = AvroCodec(CatalogRegistry(Catalog.load()))
    results: dict[str, float] = {}
    console.print(f"rules: engine alone on {n_events:,} simulated events...")
    results["engine_alone_per_s"] = engine_alone(n_events)
    for phase in ("kafka", "steady"):
        with tempfile.TemporaryDirectory() as tmp:
            broker = EmbeddedBroker(free_port(), Path(tmp) / "broker.log")
            broker.start()
            try:
                apply_topics({"bootstrap_servers": broker.bootstrap_servers}, load_topic_specs(), single_node=True)
                settings = Settings(data_dir=Path(tmp), kafka_bootstrap_servers=broker.bootstrap_servers,
                                    kafka_max_poll_interval_ms=3000)
                if phase == "kafka":
                    console.print(f"rules: through Kafka, {n_events:,} events...")
                    results["through_kafka_per_s"] = through_kafka(settings, codec, n_events)
                else:
                    results.update(steady_latency(settings, codec, Path(tmp), console))
            finally:
                broker.stop()
    return results


LABELS = {
    "engine_alone_per_s": "rule engine alone, 1 core, events/s",
    "through_kafka_per_s": "rule consumer through Kafka (decode, judge, emit alerts), actions/s",
    "steady_rate_per_s": "steady load for the latency figures, events/s",
}
