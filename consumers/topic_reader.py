"""Reading a whole topic without a consumer group: every partition, from its beginning.

Used where every instance needs all of a topic (reference state, alert ids already emitted) or a
tool reads it (`alerts`). Tansu's end offsets are unreliable, so "the end" is several empty polls
in a row rather than a comparison with end_offsets().
"""

from __future__ import annotations

from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord


def from_beginning(consumer: KafkaConsumer, topic: str) -> KafkaConsumer:
    """Assign every partition of `topic` to a group-less consumer and rewind it."""
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    return consumer


def read_to_end(consumer: KafkaConsumer, handle: Callable[[ConsumerRecord], None], quiet_polls: int = 3) -> int:
    """Read an assigned consumer until several polls in a row return nothing; returns records read."""
    read, quiet = 0, 0
    while quiet < quiet_polls:
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
