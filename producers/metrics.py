"""Prometheus metrics of a producer: events delivered, sent to the outbox, waiting in it."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from producers.sdk import AuditProducer


class ProducerCollector(Collector):
    def __init__(self, producer: AuditProducer, name: str) -> None:
        self.producer = producer
        self.name = name

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        sent = CounterMetricFamily("collection_audit_producer_delivered", "Events acknowledged by Kafka",
                                   labels=["producer"])
        sent.add_metric([self.name], self.producer.sent)
        outboxed = CounterMetricFamily("collection_audit_producer_outboxed",
                                       "Events written to the outbox because Kafka could not take them",
                                       labels=["producer"])
        outboxed.add_metric([self.name], self.producer.outboxed)
        pending = GaugeMetricFamily("collection_audit_producer_outbox_pending", "Events waiting in the outbox",
                                    labels=["producer"])
        pending.add_metric([self.name], self.producer.pending())
        yield from (sent, outboxed, pending)


def register_producer(registry: CollectorRegistry, producer: AuditProducer, name: str) -> None:
    registry.register(ProducerCollector(producer, name))
