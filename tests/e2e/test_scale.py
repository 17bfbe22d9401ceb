"""Horizontal scale on one machine: two store and two rule consumer instances in their groups share the
partitions; one of each then leaves and the survivor takes its partitions over. Every event is stored
once and every alert emitted once, exactly the alerts of one judge seeing every event of every debtor:
nothing counted twice across instances, nothing missed after the hand-over.

The two rule instances are `collection-audit rules` processes. The two store instances share one child
process (tests/e2e/store_pair.py): embedded chDB opens a data directory in one process only; against a
ClickHouse server they are separate processes, as deploy/k8s runs them (three replicas)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from deploy.embedded_broker import EmbeddedBroker
from producers.sdk import AuditProducer
from schemas.catalog import Catalog
from schemas.codec import AvroCodec
from schemas.registry import CatalogRegistry
from tests.conftest import TEST_POLL_INTERVAL_MS, free_port, wait_until
from tests.e2e.processes import RoleProcess, assert_chains_intact, judged_stream, metric_samples, scrape, sql
from tests.e2e.test_rule_restarts import NO_IDLE_TICKS, emitted_alerts

pytestmark = pytest.mark.stack
Assignment = frozenset[tuple[str, int]]


def held(role: RoleProcess) -> Assignment | None:
    found = role.assignment()
    return found[1] if found else None


def shared(parts: list[Assignment | None], total: int) -> bool:
    """Every instance holds partitions, none held twice, all held."""
    return all(parts) and sum(map(len, parts)) == total == len(frozenset().union(*parts))  # type: ignore[arg-type]


class StorePair:
    """Two store instances (tests/e2e/store_pair.py) in a child process of their own."""

    def __init__(self, broker: EmbeddedBroker, clickhouse_url: str, data_dir: Path) -> None:
        self.ports = [free_port(), free_port()]
        env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers, "CLICKHOUSE_URL": clickhouse_url,
               "COLLECTION_AUDIT_DATA_DIR": str(data_dir), "COLLECTION_AUDIT_PII_KEY": "ab" * 32,
               "COLLECTION_AUDIT_KAFKA_MAX_POLL_INTERVAL_MS": str(TEST_POLL_INTERVAL_MS),
               "COLLECTION_AUDIT_STORE_BATCH_ROWS": "400", "COLLECTION_AUDIT_STORE_BATCH_WAIT_MS": "100"}
        self.process = subprocess.Popen([sys.executable, "-m", "tests.e2e.store_pair", *map(str, self.ports)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env})

    def assignment(self, instance: int) -> Assignment | None:
        """The partitions an instance holds: those it reports a lag for (a revoked one's gauge goes)."""
        lags = scrape(self.ports[instance], "collection_audit_consumer_lag")
        return frozenset((labels["topic"], int(labels["partition"])) for labels, _ in lags or []) or None

    def caught_up(self) -> bool:
        lags = metric_samples(self.ports[0], "collection_audit_consumer_lag")
        return lags is not None and len(lags) == 18 and not any(lags)

    def second_leaves(self) -> None:
        self.process.send_signal(signal.SIGUSR1)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(60) == 0


def test_two_instances_of_each_consumer_share_partitions_and_hand_them_over_counting_nothing_twice(
        broker: EmbeddedBroker, tmp_path: Path, processes: list[RoleProcess], request: pytest.FixtureRequest) -> None:
    codec = AvroCodec(CatalogRegistry(Catalog.load()))
    events, expected = judged_stream(9_000, seed=41, debtors=200)
    clickhouse_url = f"chdb://{tmp_path / 'clickhouse'}"
    stream = iter(events)
    with AuditProducer({"bootstrap_servers": broker.bootstrap_servers}, CatalogRegistry(Catalog.load()),
                       tmp_path / "outbox.sqlite") as producer:
        def produce(n: int) -> None:
            producer.emit_many(list(itertools.islice(stream, n)))

        produce(2_500)  # licences and certifications on file before anything is judged
        stores = StorePair(broker, clickhouse_url, tmp_path / "store")
        request.addfinalizer(stores.process.kill)  # if the test fails midway
        rules = [RoleProcess("rules", broker, **NO_IDLE_TICKS) for _ in range(2)]
        processes.extend(rules)

        def both_share() -> bool:
            return (shared([held(r) for r in rules], 6)
                    and shared([stores.assignment(0), stores.assignment(1)], 18))

        assert wait_until(both_share, timeout_s=90), ([stores.assignment(0), stores.assignment(1)],
                                                      [held(r) for r in rules])
        produce(3_000)
        # one instance of each leaves: the survivors take all partitions over
        rules[1].stop()
        stores.second_leaves()
        assert wait_until(lambda: held(rules[0]) == frozenset(("collection.actions", p) for p in range(6))
                          and len(stores.assignment(0) or ()) == 18, timeout_s=90), stores.assignment(0)
        produce(len(events))

        def caught_up() -> bool:
            lags = rules[0].samples("collection_audit_rules_lag")
            return lags is not None and len(lags) == 6 and not any(lags) and stores.caught_up()

        assert wait_until(caught_up, timeout_s=120), "".join(rules[0].log[-30:])
        wait_until(lambda: {a["alert_id"] for a in emitted_alerts(broker, codec)} >= set(expected), timeout_s=20)
        rules[0].stop()
        assert wait_until(stores.caught_up, timeout_s=30)
        stores.stop()

    alerts = emitted_alerts(broker, codec)
    twice = [alert_id for alert_id, n in Counter(a["alert_id"] for a in alerts).items() if n > 1]
    assert twice == [], f"{len(twice)} alerts emitted twice across instances"
    got = {a["alert_id"]: a["rule_id"] for a in alerts}
    missing = Counter(r for i, r in expected.items() if i not in got)
    extra = Counter(r for i, r in got.items() if i not in expected)
    assert (missing, extra) == (Counter(), Counter()), f"missing {missing}, extra {extra}"

    produced = {e["event_id"] for e in events}
    stored = sql(clickhouse_url, "SELECT toString(event_id) AS id FROM audit.actions UNION ALL "
                                 "SELECT toString(event_id) FROM audit.reference_events")
    assert len(stored) == len(produced) and {row["id"] for row in stored} == produced
    stored_alerts = sql(clickhouse_url, "SELECT alert_id FROM audit.alerts FINAL")
    assert {row["alert_id"] for row in stored_alerts} == set(expected)
    assert_chains_intact(clickhouse_url)
