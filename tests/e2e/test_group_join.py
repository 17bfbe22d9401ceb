"""A consumer that holds no partition stores and judges nothing, and reports no lag that could show it:
the shared loop says so in the log for as long as the group join lasts (on the embedded broker a join
takes about the rebalance timeout, so every join is long enough to see)."""

from __future__ import annotations

import logging

import pytest
from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord

from consumers.consumer_loop import ConsumerLoop
from deploy.embedded_broker import EmbeddedBroker
from deploy.supervisor import EmbeddedStack
from tests.conftest import TEST_POLL_INTERVAL_MS, unique_token, wait_until


class Kept:
    def __init__(self) -> None:
        self.records: list[ConsumerRecord] = []

    def add(self, record: ConsumerRecord) -> None:
        self.records.append(record)

    def pending(self) -> int:
        return len(self.records)

    def flush(self) -> None:
        self.records.clear()

    def drop(self) -> None:
        self.records.clear()


def test_a_consumer_warns_while_it_holds_no_partition_and_stops_once_assigned(
        broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture) -> None:
    group = f"join-{unique_token()}"
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=group, enable_auto_commit=False,
                             max_poll_interval_ms=TEST_POLL_INTERVAL_MS, session_timeout_ms=TEST_POLL_INTERVAL_MS,
                             heartbeat_interval_ms=1000)
    loop = ConsumerLoop(consumer, Kept(), max_batch=100, max_wait_s=0.1, infrastructure_errors=())
    loop.join_warning_s = 0.5
    consumer.subscribe(["collection.actions"])
    try:
        with caplog.at_level(logging.WARNING, logger="consumers.consumer_loop"):
            assert wait_until(lambda: loop.step() or bool(consumer.assignment()), 60, every_s=0)
            joining = [r.getMessage() for r in caplog.records if "no partition assigned" in r.getMessage()]
            assert joining, "the join completed before a warning was due: nothing shown"
            assert f"group {group} for " in joining[0]
            caplog.clear()
            for _ in range(15):  # well past the warning interval, now holding partitions
                loop.step()
            assert [r.getMessage() for r in caplog.records if "no partition assigned" in r.getMessage()] == []
    finally:
        consumer.close(autocommit=False)


@pytest.mark.stack
def test_up_shows_the_partitions_its_consumers_hold(stack: EmbeddedStack) -> None:
    # its live view's row: 3 topics x 6 partitions for the store, 6 action partitions for the rules
    assert wait_until(lambda: stack.partitions_held() == "18 / 6", 60), stack.partitions_held()
    assert EmbeddedStack(stack.settings).partitions_held() is None  # nothing running, no row
