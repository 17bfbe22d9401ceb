"""Prometheus metrics of the consumers."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class BatchHistogram(Collector):
    """A histogram with one label, observed a batch of values at a time: prometheus_client's Histogram
    takes a lock and walks its buckets in Python for each value, about 1.5 us, once per stored event here.
    Exposed exactly as a Histogram of the same name (`_bucket`, `_count`, `_sum`)."""

    def __init__(self, name: str, documentation: str, label: str, buckets: Sequence[float],
                 registry: CollectorRegistry) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self.bounds = tuple(sorted(buckets))
        self._counts: dict[str, list[int]] = {}  # label value -> count per bucket, the last one +Inf
        self._sums: dict[str, float] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, label_value: str, values: Iterable[float]) -> None:
        bounds, counts, total = self.bounds, [0] * (len(self.bounds) + 1), 0.0
        for value in values:
            counts[bisect.bisect_left(bounds, value)] += 1  # the first bucket whose bound is >= value
            total += value
        with self._lock:
            kept = self._counts.setdefault(label_value, [0] * len(counts))
            for i, n in enumerate(counts):
                kept[i] += n
            self._sums[label_value] = self._sums.get(label_value, 0.0) + total

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=[self.label])

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        with self._lock:
            kept = [(value, list(counts), self._sums[value]) for value, counts in self._counts.items()]
        for value, counts, total in kept:
            cumulative, buckets = 0, []
            for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
                cumulative += n
                buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
            family.add_metric([value], buckets, total)
        yield family


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
        self.end_to_end = BatchHistogram("collection_audit_end_to_end_seconds",
                                         "Producer accepted the event -> stored (seconds)", "table",
                                         buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.25, 1.5, 2,
                                                  2.5, 3, 4, 5, 10, 30, 60, 300), registry=registry)
        self.disk_free = Gauge("collection_audit_clickhouse_disk_free_ratio",
                               "Free / total space of each ClickHouse disk, as the store's ClickHouse reports it "
                               "(inserts are refused below 0.1)", ["disk"], registry=registry)
