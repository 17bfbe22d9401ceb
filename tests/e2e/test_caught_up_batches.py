"""The shared loop stores a batch of at least `caught_up_batch` records as soon as a poll comes back empty
(the consumer has caught up: nothing will fill the batch sooner), and a smaller one only after the batch
wait, so a trickle of records still lands in batches."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaProducer, TopicPartition

from consumers.consumer_loop import ConsumerLoop
from deploy.embedded_broker import EmbeddedBroker
from tests.conftest import wait_until
from tests.e2e.test_flush_retry import assigned_consumer
from tests.e2e.test_group_join import Kept

pytestmark = pytest.mark.stack
TOPIC = "collection.actions"


class Batches(Kept):
    """Keeps records; each flush records the size of the batch it stored."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def flush(self) -> None:
        self.sizes.append(len(self.records))
        super().flush()


def loop_over(broker: EmbeddedBroker, records: int, max_wait_s: float) -> tuple[ConsumerLoop, Batches]:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=5)
    for i in range(records):
        producer.send(TOPIC, key=b"k", value=str(i).encode(), partition=0)
    producer.flush()
    producer.close()
    consumer = assigned_consumer(broker)
    consumer.assign([TopicPartition(TOPIC, 0)])
    processor = Batches()
    return ConsumerLoop(consumer, processor, max_batch=10_000, max_wait_s=max_wait_s, infrastructure_errors=(),
                        caught_up_batch=1_000), processor


def test_a_caught_up_batch_is_stored_at_once_not_after_the_batch_wait(broker: EmbeddedBroker) -> None:
    loop, processor = loop_over(broker, 1_500, max_wait_s=120)
    try:
        assert wait_until(lambda: loop.step() or bool(processor.sizes), 30, every_s=0)  # long before 120 s
        assert processor.sizes == [1_500]
    finally:
        loop.consumer.close(autocommit=False)


def test_a_trickle_below_the_caught_up_size_waits_for_the_batch_wait(broker: EmbeddedBroker) -> None:
    loop, processor = loop_over(broker, 10, max_wait_s=3)
    try:
        assert wait_until(lambda: loop.step() or processor.pending() == 10, 30, every_s=0)
        read_at = time.monotonic()
        while time.monotonic() - read_at < 1.5:  # polls come back empty: caught up, but only 10 records
            loop.step()
        assert processor.sizes == []
        assert wait_until(lambda: loop.step() or bool(processor.sizes), 10, every_s=0)
        assert processor.sizes == [10]
    finally:
        loop.consumer.close(autocommit=False)
