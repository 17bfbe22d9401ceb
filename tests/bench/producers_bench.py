"""Producer throughput: SDK (validate + encode + send, acks=all, batches of 1,000), SDK single-event emit
(one ack per event), HTTP ingest (JSON arrays of 500 over loopback from 2 client threads), and
the raw kafka-python produce ceiling for the same encoded bytes.
"""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaProducer
from rich.console import Console

from deploy.settings import Settings
from deploy.supervisor import EmbeddedStack
from producers.sdk import AuditProducer
from producers.simulator import SimConfig, Simulation
from schemas.catalog import Catalog
from schemas.codec import AvroCodec
from schemas.contract import parse_event
from schemas.registry import CatalogRegistry
from tests.conftest import free_port, wait_until
from tests.e2e.processes import RoleProcess


def simulated_actions(n: int) -> list[dict[str, Any]]:
    events = (item.event for item in Simulation(SimConfig(seed=1, debtors=2000)).events())
    return list(itertools.islice((e for e in events if "action_type" in e), n))


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


def bench_sdk(stack: EmbeddedStack, events: list[dict[str, Any]], data_dir: Path) -> float:
    with AuditProducer.from_settings(stack.settings.replace(data_dir=data_dir), name="bench-sdk") as producer:
        started = time.perf_counter()
        for i in range(0, len(events), 1000):
            producer.emit_many(events[i:i + 1000])
        return rate(len(events), time.perf_counter() - started)


def bench_single_emit(stack: EmbeddedStack, events: list[dict[str, Any]], data_dir: Path) -> float:
    with AuditProducer.from_settings(stack.settings.replace(data_dir=data_dir), name="bench-one") as producer:
        started = time.perf_counter()
        for event in events:
            producer.emit(event)
        return rate(len(events), time.perf_counter() - started)


def bench_http(stack: EmbeddedStack, events: list[dict[str, Any]], data_dir: Path) -> tuple[float, float]:
    """Events/s through the `collection-audit ingest` role (its own process, rate limits off) and that
    process's peak resident memory, MiB."""
    assert stack.broker is not None
    role = RoleProcess("ingest", stack.broker, "--data-dir", str(data_dir), COLLECTION_AUDIT_INGEST_REQUESTS_PER_S="0")
    try:
        base_url = f"http://127.0.0.1:{role.metrics_port}"
        if not wait_until(lambda: role.samples("collection_audit_producer_outbox_pending") is not None
                          or role.process.poll() is not None, timeout_s=60):
            raise RuntimeError("the ingest role did not start:\n" + "".join(role.log[-20:]))
        per_s = post_events(base_url, events)
        rss = role.peak_rss_mib()
        role.stop()
    finally:
        if role.process.poll() is None:
            role.process.kill()
    return per_s, rss


def post_events(base_url: str, events: list[dict[str, Any]]) -> float:
    bodies = [json.dumps(events[i:i + 500]).encode() for i in range(0, len(events), 500)]

    def post(chunk: list[bytes]) -> None:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            for body in chunk:
                answer = client.post("/v1/events", content=body, headers={"content-type": "application/json"})
                answer.raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(post, [bodies[0::2], bodies[1::2]]))
    return rate(len(events), time.perf_counter() - started)


def bench_raw_produce(bootstrap: str, events: list[dict[str, Any]]) -> tuple[float, float]:


    codec = AvroCodec(CatalogRegistry(Catalog.load()))
    started = time.perf_counter()
    validated = [parse_event(e) for e in events]
    encoded = [(v.key.encode(), codec.encode(v.subject, v.record)) for v in validated]
    encode_rate = rate(len(events), time.perf_counter() - started)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                             batch_size=256 * 1024)
    started = time.perf_counter()
    for key, value in encoded:
        producer.send("collection.actions", key=key, value=value)
    producer.flush()
    produce_rate = rate(len(events), time.perf_counter() - started)
    producer.close()
    return encode_rate, produce_rate


def run(console: Console, n_events: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), kafka_port=free_port(), http_port=free_port())
        stack = EmbeddedStack(settings)
        stack.start(with_store=False, with_rules=False)
        try:
            events = simulated_actions(n_events)
            results = {}
            console.print("producers: raw kafka-python produce ceiling...")
            results["validate_and_encode_events_per_s"], results["raw_produce_events_per_s"] = \
                bench_raw_produce(settings.bootstrap_servers, events)
            console.print("producers: SDK emit_many...")
            results["sdk_emit_many_events_per_s"] = bench_sdk(stack, events, Path(tmp) / "sdk")
            console.print("producers: SDK emit, one event at a time...")
            results["sdk_emit_single_events_per_s"] = bench_single_emit(stack, events[:2000], Path(tmp) / "one")
            console.print("producers: HTTP ingest (the ingest role as its own process)...")
            results["http_ingest_events_per_s"], results["rss_ingest_mib"] = bench_http(stack, events,
                                                                                        Path(tmp) / "ingest")
        finally:
            stack.stop()
    return results


LABELS = {
    "validate_and_encode_events_per_s": "contract validation + Avro encode (1 core)",
    "raw_produce_events_per_s": "raw kafka-python produce of encoded events (ceiling)",
    "sdk_emit_many_events_per_s": "SDK emit_many, batches of 1,000, acks=all",
    "sdk_emit_single_events_per_s": "SDK emit, one acked event at a time",
    "http_ingest_events_per_s": "HTTP ingest role, arrays of 500, 2 clients",
}
