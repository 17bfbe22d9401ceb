"""`collection-audit up`: the embedded one-machine stack in one supervisor process.

Start order: broker child (unless KAFKA_BOOTSTRAP_SERVERS names an external one) -> topics ->
ingest producer -> HTTP server (ingest, schema registry, /healthz, /metrics) -> optional simulator.
Stop order is the reverse; the broker goes last so producers can hand it what they hold first.
The embedded broker keeps data in memory: whatever it held is gone after it stops (README).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from deploy.embedded_broker import EmbeddedBroker, port_open
from deploy.http_server import HttpServer, create_app
from deploy.settings import Settings
from deploy.topics import apply_topics, load_topic_specs
from producers.metrics import register_producer
from producers.sdk import AuditProducer
from schemas.catalog import Catalog

log = logging.getLogger(__name__)


@dataclass
class EmbeddedStack:
    settings: Settings
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    broker: EmbeddedBroker | None = None
    producer: AuditProducer | None = None
    http: HttpServer | None = None

    def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            if s.embedded_broker:
                self.broker = EmbeddedBroker(s.kafka_port, s.data_dir / "logs" / "broker.log")
                self.broker.start()
            apply_topics(s.kafka_client_config(), load_topic_specs(), single_node=s.embedded_broker)
            self.producer = AuditProducer.from_settings(s, name="ingest")
            register_producer(self.metrics, self.producer, "ingest")
            app = create_app(Catalog.load(), self.metrics, producer=self.producer,
                             max_body_bytes=s.ingest_max_body_bytes, max_events=s.ingest_max_events,
                             health=self.health)
            self.http = HttpServer(app, s.http_host, s.http_port)
            self.http.start()
        except BaseException:
            self.stop()
            raise

    def health(self) -> dict[str, bool]:
        host, _, port = self.settings.bootstrap_servers.split(",")[0].rpartition(":")
        checks = {"kafka": port_open(host or "127.0.0.1", int(port))}
        if self.broker is not None:
            checks["embedded_broker"] = self.broker.running()
        return checks

    def stop(self) -> None:
        if self.http is not None:
            self.http.stop()
            self.http = None
        if self.producer is not None:
            left = self.producer.close(timeout_s=5)
            if left:
                log.warning("%d events stay in the outbox %s until the next start", left,
                            self.settings.outbox_dir)
            self.producer = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
