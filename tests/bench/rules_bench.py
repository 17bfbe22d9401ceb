"""Rule figures: the engine alone on one core and the rule consumer through Kafka (alert latency under
steady load is measured with the store in tests/bench/steady_bench.py)."""

from __future__ import annotations

import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

from kafka import KafkaProducer
from prometheus_client import CollectorRegistry
from rich.console import Console

from consumers.consumer_loop import tune_gc
from consumers.rule_consumer import build_engine, run_rules
from consumers.rules.simulator_check import decoded_simulation
from deploy.embedded_broker import EmbeddedBroker
from deploy.settings import Settings
from deploy.topics import apply_topics, load_topic_specs
from schemas.catalog import Catalog
from schemas.codec import AvroCodec
from schemas.registry import CatalogRegistry
from tests.bench.store_bench import encoded_events
from tests.conftest import free_port, wait_until
from tests.e2e.processes import RoleProcess


def engine_alone(n_events: int) -> float:
    engine = build_engine(Settings())
    engine.watermark_from_events = True  # one ordered stream
    tune_gc()  # as run_rules does once it has loaded the catalog (the input below is not frozen)
    stream = decoded_simulation(n_events, seed=7, violation_rate=0.02)
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


def through_kafka(settings: Settings, codec: AvroCodec, n_events: int) -> tuple[float, int]:
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
    return (actions - first) / elapsed, actions


def replay_started(role: RoleProcess) -> datetime:
    line = [line for line in role.log if "replaying the partitions" in line][-1]
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


def replay_rate(broker: EmbeddedBroker, actions: int, instances: int) -> float:
    """Actions/s of `instances` `collection-audit rules` processes sharing the group: from the moment the
    last of them, after the last assignment, has rebuilt its judge and starts replaying its partitions
    from their beginning, until every partition's lag is 0."""
    roles = [RoleProcess("rules", broker, COLLECTION_AUDIT_RULES_IDLE_TICK_S="1000000") for _ in range(instances)]
    steady = 0
    try:
        def replayed() -> bool:
            nonlocal steady
            held = [found[1] if (found := role.assignment()) else frozenset() for role in roles]
            lags = [role.samples("collection_audit_rules_lag") or [1.0] for role in roles]
            done = all(held) and sum(map(len, held)) == 6 and sum(map(len, lags)) == 6 and not any(map(any, lags))
            steady = steady + 1 if done else 0
            return steady >= 2
        if not wait_until(replayed, timeout_s=600, every_s=0.05):
            raise RuntimeError("the rule instances did not replay the topic:\n" + "".join(roles[0].log[-20:]))
        finished = datetime.now() - timedelta(seconds=0.05)  # the first of the two steady checks
        started = max(replay_started(role) for role in roles)
        return actions / (finished - started).total_seconds()
    finally:
        for role in roles:
            role.stop()


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
            results["through_kafka_per_s"], actions = through_kafka(settings, codec, n_events)
            for instances in (1, 2):
                console.print(f"rules: {instances} rule process(es) replaying the {actions:,} actions...")
                results[f"replay_{instances}_instances_per_s"] = replay_rate(broker, actions, instances)
        finally:
            broker.stop()
    return results


LABELS = {
    "engine_alone_per_s": "rule engine alone, 1 core, events/s",
    "through_kafka_per_s": "rule consumer through Kafka (decode, judge, emit alerts), actions/s",
    "replay_1_instances_per_s": "rule consumer replay, 1 process, actions/s",
    "replay_2_instances_per_s": "rule consumer replay, 2 processes sharing the group, actions/s",
}
