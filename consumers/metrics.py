"""Prometheus metrics of the consumers."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry, group: str) -> None:
        self.group = group
        self.consumed = Counter("collection_audit_consumed", "Records consumed", ["group", "topic"],
                                registry=registry)
        self.stored = Counter("collection_audit_stored", "Rows stored in ClickHouse", ["table"], registry=registry)
        self.duplicates = Counter("collection_audit_duplicates_skipped",
                                  "Redelivered or re-sent records found already stored", ["table"], registry=registry)
        self.dead_lettered = Counter("collection_audit_dead_lettered", "Records sent to the dead-letter queue",
                                     ["group", "reason"], registry=registry)
        self.batch_size = Histogram("collection_audit_batch_size", "Records per flushed batch", ["group"],
                                    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000), registry=registry)
        self.insert_seconds = Histogram("collection_audit_insert_seconds", "ClickHouse insert latency per table",
                                        ["table"], registry=registry)
        self.flush_failures = Counter("collection_audit_flush_failures",
                                      "Batches that could not be made durable (retried)", ["group"], registry=registry)
        self.lag = Gauge("collection_audit_consumer_lag", "Records not yet durable (high-water mark - batch start)",
                         ["group", "topic",
                         "partition"], registry=registry)
        self.assigned = Gauge("collection_audit_assigned_partitions",
                              "Partitions this consumer holds (0 while it joins: it stores nothing)", ["group"],
                              registry=registry)
        self.last_poll = Gauge("collection_audit_last_poll_timestamp_seconds",
                               "When the consumer last polled Kafka (unix time): /healthz of the role", ["group"],
                               registry=registry)
        self.end_to_end = Histogram("collection_audit_end_to_end_seconds",
                                    "Producer accepted the event -> stored (seconds)", ["table"],
                                    buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.25, 1.5, 2,
                                             2.5, 3, 4, 5, 10, 30, 60, 300), registry=registry)
        self.disk_free = Gauge("collection_audit_clickhouse_disk_free_ratio",
                               "Free / total space of each ClickHouse disk, as the store's ClickHouse reports it "
                               "(inserts are refused below 0.1)", ["disk"], registry=registry)
