"""Live traffic at a steady 2,000 events/s through the roles as a deployment runs them: the broker,
`collection-audit store` and `collection-audit rules` as processes of their own. Figures: occurred ->
stored (from the store role's end-to-end histogram, interpolated within its buckets as Prometheus'
histogram_quantile does), occurred -> alert readable in Kafka (every alert timed exactly), and the
peak resident memory of each process (VmHWM)."""

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

from kafka import KafkaConsumer
from rich.console import Console

from consumers.topic_reader import from_beginning
from deploy.embedded_broker import EmbeddedBroker
from deploy.topics import apply_topics, load_topic_specs
from producers.sdk import AuditProducer
from producers.simulator import SimConfig, Simulation
from schemas import TOPIC_ALERTS, value_subject
from schemas.catalog import Catalog
from schemas.codec import AvroCodec
from schemas.contract import format_rfc3339, to_micros
from schemas.registry import CatalogRegistry
from tests.conftest import free_port, wait_until
from tests.e2e.processes import RoleProcess, peak_rss_mib, scrape

STEADY_RATE = 2_000  # events/s
STEADY_SECONDS = 20
TIMER_RULES = {"COMPLAINT_SLA", "DEBT_INFO_MISSING"}  # absence rules: their alerts occur at a deadline


def now_events(seed: int) -> Iterator[dict[str, Any]]:
    """Simulated events re-stamped to occur now, as live traffic does."""
    for item in Simulation(SimConfig(seed=seed, debtors=1000, violation_rate=0.05)).events():
        event = dict(item.event)
        event["occurred_at"] = format_rfc3339(to_micros(datetime.now(UTC)), 0)
        yield event


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile over cumulative (upper bound, count) buckets, +Inf last."""
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = upper, count
    return lower


def stored_latency_buckets(metrics_port: int) -> list[tuple[float, float]]:
    buckets = scrape(metrics_port, "collection_audit_end_to_end_seconds_bucket") or []
    return sorted((float(labels["le"]), value) for labels, value in buckets if labels["table"] == "audit.actions")


def _read_alerts(bootstrap: str, codec: AvroCodec, latencies: list[float], done: Callable[[], bool]) -> None:
    consumer = from_beginning(KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False), TOPIC_ALERTS)
    while not done():
        for records in consumer.poll(timeout_ms=50).values():
            read_at = datetime.now(UTC)
            for record in records:
                alert = codec.decode(value_subject(TOPIC_ALERTS), record.value).record
                if alert["rule_id"] not in TIMER_RULES and not alert["late"]:
                    latencies.append((read_at - alert["occurred_at"]).total_seconds())
    consumer.close()


def run(console: Console) -> dict[str, float]:
    codec = AvroCodec(CatalogRegistry(Catalog.load()))
    with tempfile.TemporaryDirectory() as tmp:
        broker = EmbeddedBroker(free_port(), Path(tmp) / "broker.log")
        broker.start()
        roles: list[RoleProcess] = []
        try:
            apply_topics({"bootstrap_servers": broker.bootstrap_servers}, load_topic_specs(), single_node=True)
            store = RoleProcess("store", broker, "--data-dir", str(Path(tmp) / "store"),
                                CLICKHOUSE_URL=f"chdb://{Path(tmp) / 'clickhouse'}", COLLECTION_AUDIT_PII_KEY="ab" * 32)
            rules = RoleProcess("rules", broker)
            roles += [store, rules]
            latencies: list[float] = []
            reading = threading.Event()
            reader = threading.Thread(target=_read_alerts, daemon=True,
                                      args=(broker.bootstrap_servers, codec, latencies, reading.is_set))
            reader.start()
            events = now_events(seed=11)
            with AuditProducer({"bootstrap_servers": broker.bootstrap_servers}, CatalogRegistry(Catalog.load()),
                               Path(tmp) / "outbox.sqlite") as producer:
                producer.emit_many(list(itertools.islice(events, 2_000)))  # profiles, licences, first contacts
                joined = wait_until(lambda: len(store.samples("collection_audit_consumer_lag") or []) == 18
                                    and len(rules.samples("collection_audit_rules_lag") or []) == 6, timeout_s=120)
                if not joined:
                    raise RuntimeError("the roles did not join their groups:\n"
                                       + "".join(store.log[-20:] + rules.log[-20:]))
                time.sleep(3)  # the first events stored and judged before timing starts
                before = stored_latency_buckets(store.metrics_port)
                latencies.clear()
                console.print(f"steady: {STEADY_RATE:,} events/s for {STEADY_SECONDS} s through store and rules...")
                sent, started, batch = 0, time.monotonic(), STEADY_RATE // 20
                while time.monotonic() - started < STEADY_SECONDS:
                    producer.emit_many(list(itertools.islice(events, batch)))
                    sent += batch
                    ahead = sent / STEADY_RATE - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
                achieved = sent / (time.monotonic() - started)
            wait_until(lambda: not any(store.samples("collection_audit_consumer_lag") or [1]), timeout_s=60)
            time.sleep(1)
            reading.set()
            reader.join(10)
            after = stored_latency_buckets(store.metrics_port)
            window = [(bound, count - dict(before).get(bound, 0.0)) for bound, count in after]
            results = {"steady_rate_per_s": achieved,
                       "rss_store_mib": store.peak_rss_mib(), "rss_rules_mib": rules.peak_rss_mib(),
                       "rss_broker_mib": peak_rss_mib(broker.pid),
                       "stored_latency_p50_ms": histogram_quantile(0.5, window) * 1000,
                       "stored_latency_p99_ms": histogram_quantile(0.99, window) * 1000,
                       "events_stored_timed": window[-1][1]}
            for role in roles:
                role.stop()
        finally:
            for role in roles:
                if role.process.poll() is None:
                    role.process.kill()
            broker.stop()
    if len(latencies) < 20:
        raise RuntimeError(f"only {len(latencies)} alerts arrived during the steady run")
    cuts = statistics.quantiles(latencies, n=100)
    return {**results, "alert_latency_p50_ms": cuts[49] * 1000, "alert_latency_p99_ms": cuts[98] * 1000,
            "alerts_timed": float(len(latencies))}
