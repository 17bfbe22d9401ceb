"""`collection-audit up` as a user runs it: a separate process, then Ctrl-C."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from deploy.cli import EXIT_CORRUPTED
from deploy.embedded_broker import port_open
from producers.sdk import AuditProducer
from schemas.catalog import Catalog
from schemas.registry import CatalogRegistry
from tests.conftest import free_port, read_topic, wait_until
from tests.e2e.processes import RoleProcess, corrupt_parts, simulated, sql

pytestmark = pytest.mark.stack


def test_up_with_the_simulator_produces_events_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    kafka_port, http_port = free_port(), free_port()
    labels = tmp_path / "labels.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", "up", "--data-dir", str(tmp_path), "--kafka-port", str(kafka_port),
         "--http-port", str(http_port), "--simulate", "--rate", "2000", "--violation-rate", "0.05",
         "--labels", str(labels)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("up did not become healthy within 30 s")
        time.sleep(3)
        bootstrap = f"127.0.0.1:{kafka_port}"
        profiles = read_topic(bootstrap, "collection.reference", {f"D{i:06d}" for i in range(1, 51)}, 50)
        assert {r["kind"] for _, r in profiles} == {"DEBTOR_PROFILE"}
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr.decode()
    assert "simulated events sent" in stderr.decode()
    assert not port_open("127.0.0.1", kafka_port), "the broker child must stop with the supervisor"
    assert not port_open("127.0.0.1", http_port)
    assert labels.read_text().count("\n") > 0


def test_up_stops_with_exit_3_when_its_store_meets_a_part_clickhouse_cannot_read(tmp_path: Path) -> None:
    """A stack without its store is no stack: `up` stops everything and exits 3, for a restart policy."""
    kafka_port = free_port()
    up = RoleProcess("up", None, "--data-dir", str(tmp_path / "up"), "--kafka-port", str(kafka_port))
    try:
        def stored() -> float:
            return sum(up.samples("collection_audit_stored_total", 'table="audit.actions"') or [0])

        events = list(simulated(600, seed=24))
        actions = sum("kind" not in e for e in events)
        assert up.wait_for_line("auditor console", timeout_s=60), "".join(up.log[-30:])
        with AuditProducer({"bootstrap_servers": f"127.0.0.1:{kafka_port}"}, CatalogRegistry(Catalog.load()),
                           tmp_path / "outbox.sqlite") as producer:
            producer.emit_many(events)
            assert wait_until(lambda: stored() == actions, 60), "".join(up.log[-30:])
            assert corrupt_parts(tmp_path / "up" / "clickhouse") > 0
            producer.emit_many(events)  # redelivered: the "already stored?" read meets the rotten parts
            assert up.process.wait(60) == EXIT_CORRUPTED, "".join(up.log[-30:])
    finally:
        if up.process.poll() is None:
            up.process.kill()
    log = "".join(up.log)
    assert "up stopped: the store consumer found corrupted data" in log and "CHECKSUM_DOESNT_MATCH" in log, log[-3000:]
    assert not port_open("127.0.0.1", kafka_port), "the broker child must stop with the supervisor"
    assert not port_open("127.0.0.1", up.metrics_port)


def test_up_with_two_store_processes_stores_every_event_once_and_counts_both(tmp_path: Path) -> None:
    """`up --store-processes 2`: two store processes (through up's relay) share the partitions; the
    summary counts what they stored, which is what ClickHouse holds, each event once."""
    done = subprocess.run(
        [sys.executable, "-m", "deploy.cli", "up", "--data-dir", str(tmp_path), "--kafka-port", str(free_port()),
         "--http-port", str(free_port()), "--simulate", "--rate", "1000", "--duration", "12",
         "--store-processes", "2"],
        capture_output=True, text=True, timeout=180, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 store consumer processes started" in done.stderr
    summary = re.search(r"actions stored\s*│\s*([\d,]+)", done.stderr)
    assert summary is not None, done.stderr[-3000:]
    stored = int(summary.group(1).replace(",", ""))
    assert stored > 0
    [counts] = sql(f"chdb://{tmp_path / 'clickhouse'}",
                   "SELECT (SELECT count() FROM audit.actions) AS n, (SELECT count() FROM audit.actions FINAL) AS "
                   "final, (SELECT uniqExact(event_id) FROM audit.actions) AS ids")
    assert counts == {"n": stored, "final": stored, "ids": stored}
