"""`store --processes 2` on embedded chDB: two store consumer processes, one core each, share the group's
partitions and reach the data directory through the relay of the process that started them, which
consumes nothing itself. Every event is stored exactly once, and neither outlives that process."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from deploy.embedded_broker import EmbeddedBroker
from deploy.topics import apply_topics, load_topic_specs
from producers.sdk import AuditProducer
from schemas.catalog import Catalog
from schemas.registry import CatalogRegistry
from tests.conftest import free_port, wait_until
from tests.e2e.processes import StoreProcess, metric_samples, simulated, sql

pytestmark = pytest.mark.stack
N = 3_000


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def gone(pid: int) -> bool:
    try:
        return " Z " in Path(f"/proc/{pid}/stat").read_text()  # a zombie has exited
    except OSError:
        return True


def stored(ports: list[int]) -> float:
    return sum(sum(metric_samples(port, "collection_audit_stored_total") or [0.0]) for port in ports)


def test_two_store_processes_store_every_event_once(tmp_path: Path) -> None:
    broker = EmbeddedBroker(free_port(), tmp_path / "broker.log")
    broker.start()
    apply_topics({"bootstrap_servers": broker.bootstrap_servers}, load_topic_specs(), single_node=True)
    relay_port = free_port()
    store = StoreProcess(broker, f"chdb://{tmp_path / 'clickhouse'}", tmp_path, "--processes", "2",
                         COLLECTION_AUDIT_CLICKHOUSE_RELAY_PORT=str(relay_port))
    try:
        ports = [store.metrics_port + 1, store.metrics_port + 2]
        assert wait_until(lambda: all(metric_samples(p, "collection_audit_consumer_lag") for p in ports), 120), \
            "".join(store.log[-30:])  # both consumers hold partitions
        events = list(simulated(N, seed=23))
        with AuditProducer({"bootstrap_servers": broker.bootstrap_servers}, CatalogRegistry(Catalog.load()),
                           tmp_path / "outbox.sqlite") as producer:
            producer.emit_many(events)
            assert producer.flush() == 0
        assert wait_until(lambda: stored(ports) >= N, 180), "".join(store.log[-30:])
        shares = [sum(metric_samples(p, "collection_audit_stored_total") or [0.0]) for p in ports]
        assert all(shares), shares  # both did part of the work

        relayed = f"http://127.0.0.1:{relay_port}?compress=false"  # an auditor's client, while the store runs
        counts = sql(relayed, "SELECT (SELECT count() FROM audit.actions) + (SELECT count() FROM "
                              "audit.reference_events) AS n, (SELECT count() FROM audit.actions FINAL) + (SELECT "
                              "count() FROM audit.reference_events FINAL) AS final, (SELECT uniqExact(event_id) "
                              "FROM audit.actions) + (SELECT uniqExact(event_id) FROM audit.reference_events) AS ids")
        assert counts == [{"n": N, "final": N, "ids": N}]

        assert metric_samples(store.metrics_port, "collection_audit_stored_total") == []  # it serves, they store
        health = httpx.get(f"http://127.0.0.1:{store.metrics_port}/healthz", timeout=5)
        assert (health.status_code, health.json()["checks"]) == (200, {
            "store_processes_running": True, "store_processes_polling": True})  # what the children report

        helpers = children_of(store.process.pid)
        assert len(helpers) == 2, helpers
        store.kill()  # SIGKILL: no chance to stop its children itself
        assert wait_until(lambda: all(gone(pid) for pid in helpers), 10), "a store process outlived the role"
    finally:
        if store.process.poll() is None:
            store.stop()
        broker.stop()
