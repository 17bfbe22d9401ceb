"""The shared loop's retry of a failed flush pauses the partitions while it waits and resumes them after;
it must not resume a partition that was paused before it for another reason (the rule consumer pauses
newly assigned partitions until its judge is rebuilt)."""

from __future__ import annotations

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
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


def test_a_retried_flush_resumes_what_it_paused_and_leaves_a_partition_paused_by_others_paused(
        broker: EmbeddedBroker) -> None:
    topic = "collection.actions"
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    for partition in (1, 2):
        producer.send(topic, key=b"k", value=b"v", partition=partition)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=f"retry-{unique_token()}",
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             max_poll_interval_ms=TEST_POLL_INTERVAL_MS)
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
