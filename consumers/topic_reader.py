"""Reading a whole topic without a consumer group: every partition, from its beginning.

Used where every instance needs all of a topic (reference state, alert ids already emitted) or a
tool reads it (`alerts`). Tansu's end offsets are unreliable, so "the end" is several empty polls
in a row and every position at the high-water mark of a fetch answer, rather than a comparison with
end_offsets().
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError


class TopicMissing(RuntimeError):
    pass


def from_beginning(consumer: KafkaConsumer, topic: str) -> KafkaConsumer:
    """Assign every partition of `topic` to a group-less consumer and rewind it."""
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    if not partitions:
        consumer.close()
        raise TopicMissing(f"Kafka has no topic {topic}: create the topics first (`collection-audit topics apply`)")
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    return consumer


def read_to_end(consumer: KafkaConsumer, handle: Callable[[ConsumerRecord], None], quiet_polls: int = 3,
                timeout_s: float = 120.0, between_polls: Callable[[], None] = lambda: None) -> int:
    """Read an assigned consumer to the end: several polls in a row return nothing and every partition's
    position has reached the high-water mark of a fetch answer. Returns the records read; TimeoutError
    if Kafka did not let it get there within `timeout_s` (a partial read must not pass for the whole).
    `between_polls` runs before each poll (a group member reading on the side keeps up its own polls)."""
    read, quiet = 0, 0
    deadline = time.monotonic() + timeout_s
    while quiet < quiet_polls or not _at_end(consumer):
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not read {sorted({tp.topic for tp in consumer.assignment()})} to its end "
                               f"within {timeout_s:.0f}s ({read} records read): is Kafka reachable?")
        between_polls()
        batches = consumer.poll(timeout_ms=200, max_records=10_000)
        if not batches:
            quiet += 1
            continue
        quiet = 0
        for records in batches.values():
            for record in records:
                handle(record)
                read += 1
    return read


def _at_end(consumer: KafkaConsumer) -> bool:
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        try:
            position = consumer.position(tp, timeout_ms=0)
        except KafkaError:
            return False
        if highwater is None or position is None or position < highwater:
            return False
    return True
