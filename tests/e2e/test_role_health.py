"""Each role of a cluster deployment as its own process, as Compose and Kubernetes run them: /healthz
(what liveness and readiness probes ask) and /metrics (what Prometheus scrapes) answer truthfully,
and on a cluster a role refuses to start on a schema that `migrate --cluster` has not brought up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.embedded_broker import EmbeddedBroker
from tests.conftest import TEST_POLL_INTERVAL_MS, action, free_port, read_topic, wait_until
from tests.e2e.processes import RoleProcess, StoreProcess, scrape


def health(port: int) -> tuple[int, dict[str, Any]] | None:
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    except httpx.HTTPError:
        return None
    return answer.status_code, answer.json()


def test_store_and_rules_roles_answer_healthz_once_their_consumers_poll(
        broker: EmbeddedBroker, tmp_path: Path, processes: list[RoleProcess]) -> None:
    store = StoreProcess(broker, f"chdb://{tmp_path / 'ch'}", tmp_path / "store")
    rules = RoleProcess("rules", broker)
    processes += [store, rules]
    for role in (store, rules):
        assert wait_until(lambda role=role: health(role.metrics_port) is not None, 60), "".join(role.log)
        assert wait_until(lambda role=role: health(role.metrics_port) == (200, {
            "status": "ok", "checks": {"consumer_polling": True}}), 60), health(role.metrics_port)
    # healthy from the start (a grace period, so that a probe does not kill a starting role), then
    # because the consumer polls
    assert wait_until(lambda: bool(store.samples("collection_audit_last_poll_timestamp_seconds",
                                                 'group="audit-store"')), 60), "".join(store.log)
    polled = store.samples("collection_audit_last_poll_timestamp_seconds", 'group="audit-store"') or []
    assert time.time() - polled[0] < 60
    metrics = httpx.get(f"http://127.0.0.1:{rules.metrics_port}/metrics", timeout=2).text
    assert "collection_audit_rules_last_poll_timestamp_seconds" in metrics
    # the partitions each holds, what CollectionAuditGroupHoldsNoPartition watches: 3 topics x 6 and 6 actions
    assert wait_until(lambda: store.samples("collection_audit_assigned_partitions", 'group="audit-store"') == [18],
                      60), store.samples("collection_audit_assigned_partitions")
    assert wait_until(lambda: scrape(rules.metrics_port, "collection_audit_rules_assigned_partitions") == [({}, 6)],
                      60), scrape(rules.metrics_port, "collection_audit_rules_assigned_partitions")
    store.stop()
    rules.stop()


def test_ingest_role_accepts_events_and_its_health_follows_kafka(tmp_path: Path, broker: EmbeddedBroker) -> None:
    port = free_port()
    ingest = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", "ingest", "--http-port", str(port), "--data-dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
             "COLLECTION_AUDIT_KAFKA_MAX_POLL_INTERVAL_MS": str(TEST_POLL_INTERVAL_MS)})
    try:
        assert wait_until(lambda: health(port) is not None, 60)
        assert health(port) == (200, {"status": "ok", "checks": {"kafka": True}})
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/events", json=action(debtor_id="D-ingest-role"), timeout=10)
        assert answer.status_code == 202, answer.text
        found = read_topic(broker.bootstrap_servers, "collection.actions", {"D-ingest-role"}, 1)
        assert [str(r["event_id"]) for _, r in found] == answer.json()["event_ids"]
        assert "collection_audit_producer_delivered_total" in httpx.get(f"http://127.0.0.1:{port}/metrics").text
        broker.stop()
        assert wait_until(lambda: health(port) == (503, {"status": "unhealthy", "checks": {"kafka": False}}), 10)
    finally:
        ingest.terminate()
        ingest.wait(30)


def test_on_a_cluster_a_role_refuses_a_schema_that_migrate_cluster_has_not_applied(
        broker: EmbeddedBroker, tmp_path: Path, processes: list[RoleProcess]) -> None:
    store = StoreProcess(broker, f"chdb://{tmp_path / 'ch'}", tmp_path / "store",
                         COLLECTION_AUDIT_CLICKHOUSE_CLUSTER="audit")
    processes.append(store)
    assert store.process.wait(60) == 1
    assert "run `collection-audit migrate --cluster audit` first" in "".join(store.log)


@pytest.mark.parametrize("role", ["store", "rules"])
def test_a_role_started_before_its_topics_exist_says_so_and_exits_1(role: str, tmp_path: Path) -> None:
    bare = EmbeddedBroker(free_port(), tmp_path / "broker.log")  # no `topics apply`
    bare.start()
    try:
        done = subprocess.run([sys.executable, "-m", "deploy.cli", role], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bare.bootstrap_servers,
                                   "COLLECTION_AUDIT_DATA_DIR": str(tmp_path / "data"),
                                   "COLLECTION_AUDIT_KAFKA_MAX_POLL_INTERVAL_MS": str(TEST_POLL_INTERVAL_MS)})
    finally:
        bare.stop()
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"{role} cannot start" in done.stderr and "collection-audit topics apply" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
