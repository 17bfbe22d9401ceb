"""The pipelined loop (the store consumer's): a sealed batch is stored on a worker thread while the loop
polls and adds the next one. One batch is in flight at a time, its offsets are committed only once it
is stored, a store that fails is retried with nothing committed, and a rebalance settles the batch in
flight before the partitions go."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata

from consumers.consumer_loop import ConsumerLoop
from deploy.embedded_broker import EmbeddedBroker
from tests.conftest import TEST_POLL_INTERVAL_MS, unique_token, wait_until
from tests.e2e.test_flush_retry import Listener, Unavailable, assigned_consumer
from tests.e2e.test_group_join import Kept

TOPIC = "collection.actions"
Stored = tuple[int, int]  # (partition, offset)


class Gated:
    """Seals batches of records; each store waits for the gate, fails while failures are left, and counts
    how many stores run at once."""

    def __init__(self) -> None:
        self.records: list[ConsumerRecord] = []
        self.stored: list[list[Stored]] = []  # each batch stored, in the order stored
        self.attempts: list[list[Stored]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.failures_left = 0
        self.running = self.most_running = 0
        self._lock = threading.Lock()

    def add(self, record: ConsumerRecord) -> None:
        self.records.append(record)

    def pending(self) -> int:
        return len(self.records)

    def seal(self) -> list[ConsumerRecord]:
        sealed, self.records = self.records, []
        return sealed

    def store(self, sealed: list[ConsumerRecord]) -> None:
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            batch = [(r.partition, r.offset) for r in sealed]
            self.attempts.append(batch)
            self.entered.set()
            assert self.gate.wait(60), "the test never opened the gate"
            if self.failures_left:
                self.failures_left -= 1
                raise Unavailable("store unreachable")
            self.stored.append(batch)
        finally:
            with self._lock:
                self.running -= 1

    def flush(self) -> None:
        self.store(self.seal())

    def drop(self) -> None:
        self.records.clear()

    def all_stored(self) -> set[Stored]:
        return {record for batch in self.stored for record in batch}


def watch_commits(consumer: KafkaConsumer, processor: Gated) -> list[tuple[dict[Stored, int], set[Stored]]]:
    """Every commit the loop makes, with what was stored when it was made."""
    commits: list[tuple[dict[Stored, int], set[Stored]]] = []
    real_commit = consumer.commit

    def commit(offsets: dict[TopicPartition, Any]) -> None:
        commits.append(({(tp.partition, 0): meta.offset for tp, meta in offsets.items()}, processor.all_stored()))
        real_commit(offsets)

    consumer.commit = commit
    return commits


def assert_committed_only_what_was_stored(commits: list[tuple[dict[Stored, int], set[Stored]]],
                                          first_offsets: dict[int, int]) -> None:
    for offsets, stored in commits:
        for (partition, _), next_offset in offsets.items():
            wanted = {(partition, o) for o in range(first_offsets.get(partition, 0), next_offset)}
            assert wanted <= stored, f"partition {partition} committed to {next_offset} before storing " \
                                     f"{sorted(wanted - stored)[:5]}"


def send(broker: EmbeddedBroker, counts: dict[int, int]) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=5)
    for partition, count in counts.items():
        for i in range(count):
            producer.send(TOPIC, key=b"k", value=str(i).encode(), partition=partition)
    producer.flush()
    producer.close()


class Running:
    """The loop's run() on a thread of its own, stopped (drained) at the end."""

    def __init__(self, loop: ConsumerLoop) -> None:
        self.stop = threading.Event()
        self.error: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(loop,), daemon=True)

    def _run(self, loop: ConsumerLoop) -> None:
        try:
            loop.run(self.stop.is_set)
        except BaseException as exc:
            self.error.append(exc)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)


@pytest.fixture
def partition_zero(broker: EmbeddedBroker) -> Iterator[tuple[KafkaConsumer, int]]:
    """A consumer assigned partition 0 alone, and the offset partition 0 starts at for this test."""
    first = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers)
    tp = TopicPartition(TOPIC, 0)
    first.assign([tp])
    first.seek_to_end(tp)
    start = first.position(tp)
    first.close()
    consumer = assigned_consumer(broker)
    consumer.assign([tp])
    consumer.seek(tp, start)
    yield consumer, start


def test_the_next_batch_is_read_while_one_is_stored_and_each_is_committed_only_once_stored(
        broker: EmbeddedBroker, partition_zero: tuple[KafkaConsumer, int]) -> None:
    consumer, start = partition_zero
    send(broker, {0: 30})
    processor = Gated()
    loop = ConsumerLoop(consumer, processor, max_batch=10, max_wait_s=0.0, infrastructure_errors=(Unavailable,),
                        pipelined=True)
    commits = watch_commits(consumer, processor)
    with Running(loop) as running:
        assert processor.entered.wait(30), "no batch was handed to the worker"
        assert wait_until(lambda: processor.pending() == 10, 30), "the next batch was not read meanwhile"
        time.sleep(0.5)
        assert commits == [], "committed while the batch was still being stored"
        assert processor.most_running == 1
        processor.gate.set()
        assert wait_until(lambda: len(processor.all_stored()) == 30, 30)
        assert wait_until(lambda: bool(commits) and commits[-1][0] == {(0, 0): start + 30}, 30), commits[-3:]
    assert not running.error, running.error
    assert processor.stored == [[(0, start + i) for i in range(b, b + 10)] for b in (0, 10, 20)]
    assert processor.most_running == 1, "two batches were stored at once"
    assert_committed_only_what_was_stored(commits, {0: start})


def test_a_batch_whose_store_failed_is_stored_again_before_the_next_and_committed_after(
        broker: EmbeddedBroker, partition_zero: tuple[KafkaConsumer, int]) -> None:
    consumer, start = partition_zero
    send(broker, {0: 30})
    processor = Gated()
    processor.failures_left = 2
    processor.gate.set()
    loop = ConsumerLoop(consumer, processor, max_batch=10, max_wait_s=0.0, infrastructure_errors=(Unavailable,),
                        pipelined=True)
    commits = watch_commits(consumer, processor)
    with Running(loop) as running:
        assert wait_until(lambda: len(processor.all_stored()) == 30, 60), processor.attempts
        assert wait_until(lambda: bool(commits) and commits[-1][0] == {(0, 0): start + 30}, 30), commits[-3:]
    assert not running.error, running.error
    first = [(0, start + i) for i in range(10)]
    assert processor.attempts[:3] == [first, first, first], "the failed batch was not the next one stored"
    assert loop.failures == 2
    assert processor.stored == [[(0, start + i) for i in range(b, b + 10)] for b in (0, 10, 20)]
    assert_committed_only_what_was_stored(commits, {0: start})


def test_an_error_that_is_not_an_outage_stops_the_loop_with_nothing_of_the_batch_committed(
        broker: EmbeddedBroker, partition_zero: tuple[KafkaConsumer, int]) -> None:
    consumer, _ = partition_zero
    send(broker, {0: 10})

    class Broken(Gated):
        def store(self, sealed: list[ConsumerRecord]) -> None:
            raise ValueError("a bug in the processor")

    processor = Broken()
    loop = ConsumerLoop(consumer, processor, max_batch=10, max_wait_s=0.0, infrastructure_errors=(Unavailable,),
                        pipelined=True)
    commits = watch_commits(consumer, processor)
    with Running(loop) as running:
        assert wait_until(lambda: not running.thread.is_alive(), 30), "the loop went on after the error"
    assert [type(e) for e in running.error] == [ValueError]
    assert commits == []


def test_a_rebalance_waits_for_the_batch_in_flight_and_commits_it_before_the_partitions_go(
        broker: EmbeddedBroker) -> None:
    group = f"pipelined-{unique_token()}"
    probe = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=group, enable_auto_commit=False)
    everything = [TopicPartition(TOPIC, p) for p in range(6)]
    probe.assign(everything)
    probe.seek_to_end()
    starts = {tp.partition: probe.position(tp) for tp in everything}
    probe.commit({tp: OffsetAndMetadata(starts[tp.partition], "", -1) for tp in everything})  # read new records only
    probe.close(autocommit=False)

    def member() -> KafkaConsumer:
        return KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=group, enable_auto_commit=False,
                             max_poll_interval_ms=TEST_POLL_INTERVAL_MS, session_timeout_ms=TEST_POLL_INTERVAL_MS,
                             heartbeat_interval_ms=1000)

    first = member()
    processor = Gated()
    loop = ConsumerLoop(first, processor, max_batch=6, max_wait_s=0.0, infrastructure_errors=(Unavailable,),
                        pipelined=True)
    commits = watch_commits(first, processor)
    commits_when_revoked: list[int] = []  # how many commits were made when partitions were taken away
    loop.on_revoked = lambda revoked: commits_when_revoked.append(len(commits)) if revoked else None
    first.subscribe([TOPIC], listener=Listener(loop))
    second = member()
    stop_second = threading.Event()
    with Running(loop) as running:
        assert wait_until(lambda: len(first.assignment()) == 6, 60), "the first member never joined"
        send(broker, {p: 1 for p in range(6)})
        assert processor.entered.wait(30), "no batch was handed to the worker"
        in_flight = list(processor.attempts[0])
        second.subscribe([TOPIC])
        second_thread = threading.Thread(target=lambda: [second.poll(timeout_ms=100)
                                                         for _ in iter(stop_second.is_set, True)], daemon=True)
        second_thread.start()
        time.sleep(2)  # the join is under way, and the first member's revoke waits for the batch in flight
        assert commits == []
        processor.gate.set()
        assert wait_until(lambda: 0 < len(first.assignment()) < 6, 60), "the first member was not rebalanced"
    stop_second.set()
    second_thread.join(30)
    try:
        assert not running.error, running.error
        assert processor.stored[0] == in_flight, "the batch in flight was not stored whole"
        committed: dict[int, int] = {}  # by the time the partitions were revoked
        for offsets, _ in commits[:commits_when_revoked[0]]:
            committed.update({partition: offset for (partition, _), offset in offsets.items()})
        assert {(p, o) for p, o in in_flight} <= {(p, o) for p, end in committed.items()
                                                  for o in range(starts[p], end)}, \
            "the batch in flight was not committed before its partitions were revoked"
        assert_committed_only_what_was_stored(commits, starts)
    finally:
        second.close(autocommit=False)


def test_a_loop_is_pipelined_only_with_a_processor_that_seals_its_batches(broker: EmbeddedBroker) -> None:
    consumer = assigned_consumer(broker)
    try:
        with pytest.raises(TypeError, match="seal"):
            ConsumerLoop(consumer, Kept(), max_batch=10, max_wait_s=0.0, infrastructure_errors=(), pipelined=True)
    finally:
        consumer.close(autocommit=False)


def test_a_rebalance_while_a_failed_batch_waits_drops_it_and_the_kept_partitions_read_it_again(
        broker: EmbeddedBroker) -> None:
    """The batch in flight failed and waits for its retry when a second member joins: the rebalance tries it
    once more, fails, drops it (and the batch being filled) and rewinds. The partitions this member keeps
    must be read again from the dropped batch's first records once the store is back."""
    group = f"pipelined-{unique_token()}"
    everything = [TopicPartition(TOPIC, p) for p in range(6)]
    probe = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=group, enable_auto_commit=False)
    probe.assign(everything)
    probe.seek_to_end()
    starts = {tp.partition: probe.position(tp) for tp in everything}
    probe.commit({tp: OffsetAndMetadata(starts[tp.partition], "", -1) for tp in everything})
    probe.close(autocommit=False)

    def member() -> KafkaConsumer:
        return KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=group, enable_auto_commit=False,
                             max_poll_interval_ms=TEST_POLL_INTERVAL_MS, session_timeout_ms=TEST_POLL_INTERVAL_MS,
                             heartbeat_interval_ms=1000)

    first, second = member(), member()
    processor = Gated()
    processor.gate.set()
    processor.failures_left = 10**6  # ClickHouse down until the test says otherwise
    loop = ConsumerLoop(first, processor, max_batch=6, max_wait_s=0.0, infrastructure_errors=(Unavailable,),
                        pipelined=True)
    commits = watch_commits(first, processor)
    first.subscribe([TOPIC], listener=Listener(loop))
    stop_second = threading.Event()
    second_thread = threading.Thread(target=lambda: [second.poll(timeout_ms=100)
                                                     for _ in iter(stop_second.is_set, True)], daemon=True)
    try:
        with Running(loop) as running:
            assert wait_until(lambda: len(first.assignment()) == 6, 60), "the first member never joined"
            send(broker, {p: 1 for p in range(6)})
            assert wait_until(lambda: loop.failures > 0, 60), "the store never failed"
            second.subscribe([TOPIC])
            second_thread.start()
            assert wait_until(lambda: 0 < len(first.assignment()) < 6, 60), "the first member was not rebalanced"
            kept = {tp.partition for tp in first.assignment()}
            processor.failures_left = 0  # ClickHouse is back
            send(broker, {p: 1 for p in range(6)})
            assert wait_until(lambda: {p for p, o in processor.all_stored() if o == starts[p] + 1} >= kept, 60), \
                f"kept {sorted(kept)}, stored {sorted(processor.all_stored())}"
        assert not running.error, running.error
        stored = processor.all_stored()
        assert {(p, starts[p]) for p in kept} <= stored, f"the dropped batch was not read again: {sorted(stored)}"
        assert_committed_only_what_was_stored(commits, starts)
    finally:
        stop_second.set()
        if second_thread.is_alive():
            second_thread.join(30)
        second.close(autocommit=False)
