"""The store consumer under faults, as its own process on its own broker and chDB:
SIGKILL at random points and between insert and commit, ClickHouse out of disk for a while, and a
part ClickHouse cannot read back.
Afterwards every produced event is stored exactly once and every hash chain is intact."""

from __future__ import annotations

import itertools
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.cli import EXIT_CORRUPTED
from deploy.embedded_broker import EmbeddedBroker
from producers.sdk import AuditProducer
from schemas.catalog import Catalog
from schemas.registry import CatalogRegistry
from tests.conftest import wait_until
from tests.e2e.processes import (
    RoleProcess,
    StoreProcess,
    assert_chains_intact,
    corrupt_parts,
    fill,
    simulated,
    sql,
)

pytestmark = pytest.mark.stack


def assert_stored_exactly_once(clickhouse_url: str, produced: set[str]) -> None:
    [totals] = sql(clickhouse_url, """
        SELECT (SELECT count() FROM audit.actions) + (SELECT count() FROM audit.reference_events) AS stored,
               (SELECT count() FROM audit.actions FINAL) + (SELECT count() FROM audit.reference_events FINAL) AS final,
               (SELECT uniqExact(event_id) FROM audit.actions) + (SELECT uniqExact(event_id)
                FROM audit.reference_events) AS distinct_ids""")
    assert totals == {"stored": len(produced), "final": len(produced), "distinct_ids": len(produced)}
    ids = {row["id"] for row in sql(clickhouse_url, "SELECT toString(event_id) AS id FROM audit.actions UNION ALL "
                                                    "SELECT toString(event_id) FROM audit.reference_events")}
    assert ids == produced


def test_sigkill_at_random_points_and_between_insert_and_commit_loses_and_duplicates_nothing(
        broker: EmbeddedBroker, tmp_path: Path, processes: list[RoleProcess]) -> None:
    clickhouse_url = f"chdb://{tmp_path / 'clickhouse'}"
    events = simulated(12_000, seed=21)
    produced: set[str] = set()
    rng = random.Random(4)
    with AuditProducer({"bootstrap_servers": broker.bootstrap_servers}, CatalogRegistry(Catalog.load()),
                       tmp_path / "outbox.sqlite") as producer:
        def produce(n: int) -> None:
            batch = list(itertools.islice(events, n))
            producer.emit_many(batch)
            produced.update(e["event_id"] for e in batch)

        produce(3000)
        in_window = 0
        for trial in range(22):
            between_insert_and_commit = trial % 2 == 0
            store = StoreProcess(broker, clickhouse_url, tmp_path / "store",
                                 COLLECTION_AUDIT_STORE_COMMIT_DELAY_MS="1500" if between_insert_and_commit else "0")
            processes.append(store)
            produce(400)
            if between_insert_and_commit:
                if store.wait_for_line("batch durable, committing", timeout_s=30):
                    in_window += 1
            else:
                time.sleep(rng.uniform(0.5, 5.0))
            store.kill()
        assert in_window >= 10, "SIGKILL must land between insert and commit in at least 10 trials"

        final = StoreProcess(broker, clickhouse_url, tmp_path / "store")
        processes.append(final)
        assert wait_until(final.caught_up, timeout_s=120), "".join(final.log[-30:])
        final.stop()
    assert_stored_exactly_once(clickhouse_url, produced)
    assert_chains_intact(clickhouse_url)


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def committed_offsets(broker: EmbeddedBroker) -> dict[tuple[str, int], int]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    try:
        return {(tp.topic, tp.partition): meta.offset
                for tp, meta in admin.list_group_offsets("audit-store")["audit-store"].items()}
    finally:
        admin.close()


def test_clickhouse_out_of_disk_backs_off_commits_nothing_and_catches_up(
        broker: EmbeddedBroker, tmp_path: Path, small_disk: Path, processes: list[RoleProcess]) -> None:
    clickhouse_url = f"chdb://{small_disk / 'clickhouse'}"
    events = simulated(6_000, seed=22)
    produced: set[str] = set()

    with AuditProducer({"bootstrap_servers": broker.bootstrap_servers}, CatalogRegistry(Catalog.load()),
                       tmp_path / "outbox.sqlite") as producer:
        def produce(n: int) -> None:
            batch = list(itertools.islice(events, n))
            producer.emit_many(batch)
            produced.update(e["event_id"] for e in batch)

        store = StoreProcess(broker, clickhouse_url, tmp_path / "store")
        processes.append(store)
        produce(3000)
        assert wait_until(store.caught_up, timeout_s=60), "".join(store.log[-30:])
        before = committed_offsets(broker)
        def disk_free() -> float:
            return min(store.samples("collection_audit_clickhouse_disk_free_ratio") or [1.0])

        assert 0.15 < disk_free() <= 1.0
        ballast = fill(small_disk)
        produce(3000)
        assert store.wait_for_line("flush failed", timeout_s=30), "inserts must fail while the disk is full"
        time.sleep(8)  # an outage of several back-off rounds
        assert wait_until(lambda: disk_free() < 0.01, timeout_s=30), "the store's /metrics shows the disk full"
        assert store.wait_for_line("inserts are refused below 10%", timeout_s=5)
        assert store.process.poll() is None, "the consumer must survive the outage"
        assert committed_offsets(broker) == before, "nothing may be committed while ClickHouse cannot store"
        ballast.unlink()
        assert wait_until(store.caught_up, timeout_s=90), "".join(store.log[-30:])
        store.stop()
    assert_stored_exactly_once(clickhouse_url, produced)
    assert_chains_intact(clickhouse_url)


def test_a_part_clickhouse_cannot_read_back_stops_the_store_with_exit_3_and_commits_nothing(
        broker: EmbeddedBroker, tmp_path: Path, processes: list[RoleProcess]) -> None:
    chdb_dir = tmp_path / "clickhouse"
    events = list(simulated(1_000, seed=23))
    with AuditProducer({"bootstrap_servers": broker.bootstrap_servers}, CatalogRegistry(Catalog.load()),
                       tmp_path / "outbox.sqlite") as producer:
        store = StoreProcess(broker, f"chdb://{chdb_dir}", tmp_path / "store")
        processes.append(store)
        producer.emit_many(events)
        assert wait_until(store.caught_up, timeout_s=60), "".join(store.log[-30:])
        before = committed_offsets(broker)
        assert corrupt_parts(chdb_dir) > 0
        producer.emit_many(events)  # redelivered: the store's "already stored?" read meets the rotten parts
        assert store.process.wait(60) == EXIT_CORRUPTED, "".join(store.log[-30:])
    log = "".join(store.log)
    assert "store stopped, ClickHouse returned corrupted data" in log and "CHECKSUM_DOESNT_MATCH" in log, log[-3000:]
    # the SDK sends the reference events first and waits for them, so they may come in a batch of their own,
    # stored (their table is intact) and committed before the actions meet the broken part
    after = committed_offsets(broker)
    assert {tp: o for tp, o in after.items() if tp[0] == "collection.actions"} == \
        {tp: o for tp, o in before.items() if tp[0] == "collection.actions"}, \
        "the batch that met the broken part must stay uncommitted"
