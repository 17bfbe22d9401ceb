"""Rule figures: the engine alone on one core and the rule consumer through Kafka (alert latency under
steady load is measured with the store in tests/bench/steady_bench.py)."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from kafka import KafkaProducer
from prometheus_client import CollectorRegistry
from rich.console import Console

from consumers.rule_consumer import build_engine, run_rules
from consumers.rules.simulator_check import decoded_simulation
from deploy.embedded_broker import EmbeddedBroker
from deploy.settings import Settings
from deploy.topics import apply_topics, load_topic_specs
from schemas.catalog import Catalog
from schemas.codec import AvroCodec
from schemas.registry import CatalogRegistry
from tests.bench.store_bench import encoded_events
from tests.conftest import free_port


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


def run(console: Console, n_events: int) -> dict[str, float]:
    codec = AvroCodec(CatalogRegistry(Catalog.load()))
    results: dict[str, float] = {}
    console.print(f"rules: engine alone on {n_events:,} simulated events...")
    results["engine_alone_per_s"] = engine_alone(n_events)
    with tempfile.TemporaryDirectory() as tmp:
        broker = EmbeddedBroker(free_port(), Path(tmp) / "broker.log")
        broker.start()
        try:
            apply_topics({"bootstrap_servers": broker.bootstrap_servers}, load_topic_specs(), single_node=True)
            settings = Settings(data_dir=Path(tmp), kafka_bootstrap_servers=broker.bootstrap_servers,
                                kafka_max_poll_interval_ms=3000)
            console.print(f"rules: through Kafka, {n_events:,} events...")
            results["through_kafka_per_s"] = through_kafka(settings, codec, n_events)
        finally:
            broker.stop()
    return results


LABELS = {
    "engine_alone_per_s": "rule engine alone, 1 core, events/s",
    "through_kafka_per_s": "rule consumer through Kafka (decode, judge, emit alerts), actions/s",
}
