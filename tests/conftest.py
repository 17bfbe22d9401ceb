"""Shared fixtures. Unit tests need no infrastructure; tests marked `stack` use the real embedded
stack (Tansu broker child process, topics, HTTP server with ingest and registry), started once."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from deploy.clickhouse_client import connect
from deploy.settings import Settings
from deploy.supervisor import EmbeddedStack


def unique_token(length: int = 8) -> str:
    """A fragment that makes an id unique to this run. It starts with a letter, so no id built from it
    reads as a phone, id-card or card number to the PII scan (an all-digit uuid prefix once did)."""
    return "t" + uuid.uuid4().hex[:length - 1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Tansu delays a group join until about the rebalance timeout: keep it short in tests.
TEST_POLL_INTERVAL_MS = 3000


ALERTMANAGER = "/usr/bin/prometheus-alertmanager"  # Debian's, installed by `make test`


@contextlib.contextmanager
def running_alertmanager(config: str, workdir: Path) -> Iterator[str]:
    """Debian's Alertmanager with `config` (YAML text) on loopback, no gossip; yields its URL."""
    import subprocess
    import time
    import urllib.request

    (workdir / "alertmanager.yml").write_text(config)
    port = free_port()
    process = subprocess.Popen([ALERTMANAGER, f"--config.file={workdir / 'alertmanager.yml'}",
                                f"--storage.path={workdir}", f"--web.listen-address=127.0.0.1:{port}",
                                "--cluster.listen-address="],
                               stdout=subprocess.DEVNULL, stderr=(workdir / "alertmanager.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                log = (workdir / "alertmanager.log").read_text()
                raise RuntimeError(f"Alertmanager did not start: {log}") from None
            time.sleep(0.2)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="session")
def alertmanager_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Alertmanager routing everything to a receiver that drops it."""
    config = "route:\n  receiver: drop\n  group_by: [rule, agency]\nreceivers:\n  - name: drop\n"
    with running_alertmanager(config, tmp_path_factory.mktemp("alertmanager")) as url:
        yield url


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, alertmanager_url: str) -> Iterator[EmbeddedStack]:
    """`up` in-process: broker, topics, store consumer, HTTP. The store writes to embedded chDB in the
    stack's data directory, or to the ClickHouse server CLICKHOUSE_URL names (a dedicated, empty one)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("stack"), kafka_port=free_port(),
                        clickhouse_url=os.environ.get("CLICKHOUSE_URL", ""),
                        pii_key=os.environ.get("COLLECTION_AUDIT_PII_KEY", ""),
                        http_port=free_port(), producer_delivery_timeout_s=10,
                        kafka_max_poll_interval_ms=TEST_POLL_INTERVAL_MS, store_batch_wait_ms=200,
                        alertmanager_url=alertmanager_url, alert_resend_s=0,
                        # the suite calls faster than any one client should: limits have their own test
                        ingest_requests_per_s=0, api_requests_per_s=0)
    running = EmbeddedStack(settings)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def clickhouse(stack: EmbeddedStack) -> Client:
    """A client on the stack's chDB (one data directory per process: the same one)."""
    return connect(stack.settings.clickhouse)


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0, every_s: float = 0.2) -> bool:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every_s)
    return condition()


def references_read(stack: EmbeddedStack) -> float:
    """Reference events the stack's rule consumer has read (to put reference facts on file first)."""
    return stack.metrics.get_sample_value("collection_audit_rules_consumed_total",
                                          {"topic": "collection.reference", "outcome": "judged"}) or 0.0


@pytest.fixture()
def base_url(stack: EmbeddedStack) -> str:
    return f"http://{stack.settings.http_host}:{stack.settings.http_port}"


def action(**overrides: Any) -> dict[str, Any]:
    """A valid collection action; each call gets a fresh debtor unless one is given."""
    event: dict[str, Any] = {
        "occurred_at": "2024-05-01T10:00:00+08:00", "source_system": "crm", "agency_id": "AG1",
        "debtor_id": f"D-{unique_token(12)}", "account_id": "ACC-1", "collector_id": "C1",
        "action_type": "SMS", "direction": "OUTBOUND", "counterparty": "DEBTOR",
        "message_text": "您尾号1234的贷款应还1,250.00元，到期日2024-11-01",
        "amount_due_minor": 125000, "currency": "CNY", "due_date": "2024-11-01",
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


NOW = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture()
def outbox_path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.sqlite"


def read_topic(bootstrap: str, topic: str, keys: set[str], expected: int,
               timeout_s: float = 30.0) -> list[tuple[str, dict[str, Any]]]:
    """(key, decoded record) of the records of `topic` whose key is in `keys`, in offset order per
    partition, once `expected` of them arrived (or the timeout passed). Reads without a consumer
    group, from the beginning, so it never waits for a group join."""
    import time

    from kafka import KafkaConsumer, TopicPartition

    from schemas import value_subject
    from schemas.catalog import Catalog
    from schemas.codec import AvroCodec
    from schemas.registry import CatalogRegistry

    codec = AvroCodec(CatalogRegistry(Catalog.load()))
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=500)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        found: list[tuple[str, dict[str, Any]]] = []
        deadline = time.monotonic() + timeout_s
        while len(found) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=300).values():
                for message in records:
                    key = message.key.decode(errors="replace") if message.key else ""  # others' tests send bad keys
                    if key in keys:
                        found.append((key, codec.decode(value_subject(topic), message.value).record))
        return found
    finally:
        consumer.close()
