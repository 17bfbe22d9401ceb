"""The shared loop's retry of a failed flush pauses the partitions while it waits and resumes them after;
it must not resume a partition that was paused before it for another reason (the rule consumer pauses
newly assigned partitions until its judge is rebuilt)."""

from __future__ import annotations

import threading

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from consumers.consumer_loop import ConsumerLoop
from deploy.embedded_broker import EmbeddedBroker
from tests.conftest import TEST_POLL_INTERVAL_MS, unique_token, wait_until


class Unavailable(RuntimeError):
    pass


class FailsFirst:
    """Keeps records; its first flush fails as an unreachable store would, the next ones succeed."""

    def __init__(self) -> None:
        self.records: list[ConsumerRecord] = []
        self.flushed: list[ConsumerRecord] = []
        self.failures_left = 1
        self.paused_during_retry: set[TopicPartition] = set()

    def add(self, record: ConsumerRecord) -> None:
        self.records.append(record)

    def pending(self) -> int:
        return len(self.records)

    def flush(self) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise Unavailable("store unreachable")
        self.flushed += self.records
        self.records.clear()

    def drop(self) -> None:
        self.records.clear()


def send_one_record_to(broker: EmbeddedBroker, topic: str, partitions: range | tuple[int, ...]) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    for partition in partitions:
        producer.send(topic, key=b"k", value=b"v", partition=partition)
    producer.flush()
    producer.close()


def assigned_consumer(broker: EmbeddedBroker) -> KafkaConsumer:
    """A consumer of its own group, for partitions the test assigns by hand."""
    return KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=f"retry-{unique_token()}",
                         enable_auto_commit=False, auto_offset_reset="earliest",
                         max_poll_interval_ms=TEST_POLL_INTERVAL_MS)


def test_a_retried_flush_resumes_what_it_paused_and_leaves_a_partition_paused_by_others_paused(
        broker: EmbeddedBroker) -> None:
    topic = "collection.actions"
    send_one_record_to(broker, topic, (1, 2))
    consumer = assigned_consumer(broker)
    processor = FailsFirst()
    loop = ConsumerLoop(consumer, processor, max_batch=2, max_wait_s=0.0, infrastructure_errors=(Unavailable,))
    loop.on_retry_poll = lambda: processor.paused_during_retry.update(consumer.paused())
    held, others = TopicPartition(topic, 0), [TopicPartition(topic, p) for p in (1, 2)]
    consumer.assign([held, *others])
    consumer.pause(held)  # as the rule consumer holds a partition until its rebuild
    try:
        assert wait_until(lambda: loop.step() or bool(processor.flushed), 30, every_s=0)
        assert sorted(r.partition for r in processor.flushed) == [1, 2]
        assert processor.paused_during_retry == {held, *others}  # the retry paused everything while it waited
        assert consumer.paused() == {held}  # and resumed only what it paused
    finally:
        consumer.close(autocommit=False)


class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: ConsumerLoop) -> None:
        self.loop = loop

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.loop.on_partitions_revoked(list(revoked))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.loop.on_partitions_assigned(list(assigned))


def test_partitions_kept_through_a_rebalance_during_a_retry_are_read_again_from_the_dropped_batch(
        broker: EmbeddedBroker) -> None:
    """A consumer waiting out a failed flush (every partition paused) is rebalanced when a second member
    joins: its batch is dropped, and it keeps some of its partitions, whose state (paused, and the fetch
    position past the batch) kafka-python carries over. Once the store is back it must consume them
    again, from the dropped batch's first record: skipped, the batch would never be stored."""
    topic, group = "collection.actions", f"retry-{unique_token()}"
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)

    def send_one_to_each_partition() -> None:
        for partition in range(6):
            producer.send(topic, key=b"k", value=b"v", partition=partition)
        producer.flush()

    def member() -> KafkaConsumer:
        return KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=group, enable_auto_commit=False,
                             auto_offset_reset="earliest", max_poll_interval_ms=TEST_POLL_INTERVAL_MS,
                             session_timeout_ms=TEST_POLL_INTERVAL_MS, heartbeat_interval_ms=1000)

    send_one_to_each_partition()
    processor = FailsFirst()
    processor.failures_left = 10**6  # ClickHouse down until the test says otherwise
    first = member()
    loop = ConsumerLoop(first, processor, max_batch=6, max_wait_s=0.0, infrastructure_errors=(Unavailable,))
    first.subscribe([topic], listener=Listener(loop))
    stop = threading.Event()
    runner = threading.Thread(target=lambda: [loop.step() for _ in iter(stop.is_set, True)], daemon=True)
    second = member()
    second_runner = threading.Thread(target=lambda: [second.poll(timeout_ms=100) for _ in iter(stop.is_set, True)],
                                     daemon=True)
    try:
        runner.start()
        assert wait_until(lambda: loop.failures > 0 and len(first.assignment()) == 6, 60), "never retrying"
        second.subscribe([topic])
        second_runner.start()  # polls until the end, so the group stays as the join made it
        assert wait_until(lambda: 0 < len(first.assignment()) < 6, 60), "the first member was not rebalanced"
        kept = first.assignment()
        processor.failures_left = 0  # ClickHouse is back
        send_one_to_each_partition()
        assert wait_until(lambda: {TopicPartition(r.topic, r.partition) for r in processor.flushed
                                   if r.offset == 1} >= kept, 60), \
            f"kept {sorted(tp.partition for tp in kept)}, still paused: {sorted(tp.partition for tp in first.paused())}"
        flushed = {(r.partition, r.offset) for r in processor.flushed}
        assert {(tp.partition, 0) for tp in kept} <= flushed, f"the dropped batch was not read again: {flushed}"
    finally:
        stop.set()
        runner.join(30)
        second_runner.join(30)
        first.close(autocommit=False)
        second.close(autocommit=False)
        producer.close()


def test_records_a_poll_returns_while_a_failed_flush_waits_are_read_again_later(broker: EmbeddedBroker) -> None:
    """A partition assigned while a failed flush waits is not paused yet, so the waiting polls may return
    its records (an assignment that adds partitions without revoking the others does so). They must not be
    lost: once the store is back they are read and stored like the rest."""
    topic = "collection.actions"
    send_one_record_to(broker, topic, range(3))
    consumer = assigned_consumer(broker)
    processor = FailsFirst()
    processor.failures_left = 10**6
    loop = ConsumerLoop(consumer, processor, max_batch=1, max_wait_s=0.0, infrastructure_errors=(Unavailable,))
    everything = [TopicPartition(topic, p) for p in range(3)]
    consumer.assign(everything[:1])
    returned_while_waiting: list[tuple[int, int]] = []
    real_poll = consumer.poll

    def poll(**kwargs: object) -> dict[TopicPartition, list[ConsumerRecord]]:
        records: dict[TopicPartition, list[ConsumerRecord]] = real_poll(**kwargs)
        if loop.failures:
            returned_while_waiting.extend((r.partition, r.offset) for batch in records.values() for r in batch)
        return records

    def assign_more_then_recover() -> None:
        if consumer.assignment() != set(everything):
            consumer.assign(everything)  # partitions 1 and 2 arrive unpaused during the wait
        elif returned_while_waiting:
            processor.failures_left = 0  # the store is back once the waiting polls returned records

    consumer.poll = poll  # type: ignore[method-assign]
    loop.on_retry_poll = assign_more_then_recover
    try:
        assert wait_until(lambda: loop.step() or len(processor.flushed) == 3, 60, every_s=0), \
            f"stored {sorted((r.partition, r.offset) for r in processor.flushed)}"
        assert returned_while_waiting, "the waiting polls returned nothing: the test proves nothing"
        assert sorted((r.partition, r.offset) for r in processor.flushed) == [(0, 0), (1, 0), (2, 0)]
    finally:
        consumer.close(autocommit=False)
