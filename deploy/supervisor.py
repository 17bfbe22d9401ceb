"""`collection-audit up`: the embedded one-machine stack in one supervisor process.

Start order: broker child (unless KAFKA_BOOTSTRAP_SERVERS names an external one) -> topics ->
ClickHouse migrations -> store consumer thread (or, with STORE_PROCESSES above 1, that many store
processes, see deploy/store_processes.py) -> rule consumer thread -> ingest producer -> HTTP server (ingest, schema
registry, auditor API and console, /healthz, /metrics). chDB allows one process per data directory,
so the store writer and the auditor API share this process (each with its own client handle).

Stop order: producers flush -> the rule consumer stops (its alerts are produced and committed) -> the
store consumer drains what the broker holds (bounded wait) and
commits -> HTTP -> broker last. The embedded broker keeps data in memory: whatever it still held is
gone after it stops (README).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from deploy.auditor.tokens import TokenStore
from deploy.clickhouse_client import ClientPool, trail_client
from deploy.embedded_broker import EmbeddedBroker
from deploy.http_server import HttpServer, create_app, kafka_reachable
from deploy.migrations import ensure_schema
from deploy.settings import Settings
from deploy.store_processes import StoreProcesses
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
    store_thread: threading.Thread | None = None
    store_processes: StoreProcesses | None = None  # STORE_PROCESSES store consumers, one process each, when above 1
    with_store: bool = False
    rules_thread: threading.Thread | None = None
    _store_stop: threading.Event = field(default_factory=threading.Event)
    _rules_stop: threading.Event = field(default_factory=threading.Event)
    failures: dict[str, BaseException] = field(default_factory=dict)  # role -> what stopped it

    def start(self, with_store: bool = True, with_rules: bool = True) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            if s.embedded_broker:
                self.broker = EmbeddedBroker(s.kafka_port, s.data_dir / "logs" / "broker.log")
                self.broker.start()
            topics = apply_topics(s.kafka_client_config(), load_topic_specs(), single_node=s.embedded_broker)
            for problem in topics.problems:
                log.warning("topic drift: %s", problem)
            self.with_store = with_store
            if with_store:
                # before the API can be asked anything
                ensure_schema(trail_client(s), s.clickhouse_cluster)
                self._start_store()
            if with_rules:
                self._start_rules()
            self.producer = AuditProducer.from_settings(s, name="ingest")
            register_producer(self.metrics, self.producer, "ingest")
            trail = ClientPool.for_trail(s) if with_store else None
            app = create_app(Catalog.load(), self.metrics, producer=self.producer,
                             max_body_bytes=s.ingest_max_body_bytes, max_events=s.ingest_max_events,
                             health=self.health, trail=trail, ingest_per_s=s.ingest_requests_per_s,
                             api_per_s=s.api_requests_per_s,
                             tokens=TokenStore(s.tokens_path))
            self.http = HttpServer(app, s.http_host, s.http_port)
            self.http.start()
        except BaseException:
            self.stop()
            raise

    def _start_store(self) -> None:
        client = trail_client(self.settings)
        others = self.store_processes = StoreProcesses(self.settings, self.settings.store_processes).start()

        def should_stop() -> bool:
            failure = others.failure()
            if failure is not None:  # up stops, as when its own store thread dies
                self.failures.setdefault("store process", failure)
            return self._store_stop.is_set() or failure is not None

        self.store_thread = _role_thread(  # with store processes, it stands for them (health, drain)
            "store", lambda: others.run_role(self.metrics, should_stop, client), self.failures)

    def _others(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A store metric summed over the other store processes."""
        return self.store_processes.total(name, labels) if self.store_processes is not None else 0.0

    def _start_rules(self) -> None:
        from consumers.rule_consumer import run_rules

        self.rules_thread = _role_thread(
            "rules", lambda: run_rules(self.settings, self.metrics, self._rules_stop.is_set), self.failures)

    def alerts_raised(self) -> float:
        return sum(sample.value for metric in self.metrics.collect()
                   if metric.name == "collection_audit_alerts_raised" for sample in metric.samples
                   if sample.name.endswith("_total"))

    def store_lag(self) -> float:
        """Records the store consumer has yet to read, from the last fetch high-water marks."""
        return sum(sample.value for metric in self.metrics.collect() if metric.name == "collection_audit_consumer_lag"
                   for sample in metric.samples) + self._others("collection_audit_consumer_lag")

    def partitions_held(self) -> str | None:
        """Partitions the running store and rule consumer hold, as `store / rules` (`-`: not running), or None
        when neither runs. A consumer holding none is joining its group: it stores or judges nothing yet."""
        labels = {"group": "audit-store"}
        store = (self.metrics.get_sample_value("collection_audit_assigned_partitions", labels) or 0.0) \
            + self._others("collection_audit_assigned_partitions", labels)
        rules = self.metrics.get_sample_value("collection_audit_rules_assigned_partitions")
        held = ["-" if thread is None or not thread.is_alive() else str(int(value or 0))
                for thread, value in ((self.store_thread, store), (self.rules_thread, rules))]
        if held == ["-", "-"]:
            return None
        return " / ".join(held) + (" (joining)" if "0" in held else "")

    def disk_free(self) -> float | None:
        """The fullest ClickHouse disk's free share, as the store last sampled it."""
        ratios = [sample.value for metric in self.metrics.collect()
                  if metric.name == "collection_audit_clickhouse_disk_free_ratio" for sample in metric.samples]
        return min(ratios) if ratios else None

    def stored(self, table: str = "audit.actions") -> float:
        return (self.metrics.get_sample_value("collection_audit_stored_total", {"table": table}) or 0.0) \
            + self._others("collection_audit_stored_total", {"table": table})

    def health(self) -> dict[str, bool]:
        checks = {"kafka": kafka_reachable(self.settings.bootstrap_servers)}
        if self.broker is not None:
            checks["embedded_broker"] = self.broker.running()
        if self.store_thread is not None:
            checks["store_consumer"] = self.store_thread.is_alive() and not (
                self.store_processes is not None and self.store_processes.failed())
        if self.rules_thread is not None:
            checks["rule_consumer"] = self.rules_thread.is_alive()
        return checks

    def stop(self, drain_s: float = 30.0) -> None:
        if self.http is not None:
            self.http.stop()
            self.http = None
        if self.producer is not None:
            left = self.producer.close(timeout_s=5)
            if left:
                log.warning("%d events stay in the outbox %s until the next start", left,
                            self.settings.outbox_dir)
            self.producer = None
        if self.rules_thread is not None:
            self._rules_stop.set()
            self.rules_thread.join(drain_s + 10)
            self.rules_thread = None
        if self.store_thread is not None:
            deadline = time.monotonic() + drain_s
            time.sleep(0.5)  # let the last fetch report its high-water marks
            while self.store_thread.is_alive() and self.store_lag() > 0 and time.monotonic() < deadline:
                time.sleep(0.2)
            self._store_stop.set()
            self.store_thread.join(drain_s + 10)
            self.store_thread = None
        if self.store_processes is not None:
            if self.store_processes.children:  # their last batches flushed: the summary keeps their counts
                time.sleep(self.settings.store_batch_wait_ms / 1000 + 0.5)
                self.store_processes.read_metrics()
            self.store_processes.stop(drain_s + 10)
        if self.broker is not None:
            self.broker.stop()
            self.broker = None


def _role_thread(name: str, role: Callable[[], object], failures: dict[str, BaseException]) -> threading.Thread:
    """Run a consumer role on a daemon thread; if it dies, the log says why, health() shows it and
    `failures` keeps the exception (`up` then stops the stack and exits, for a restart policy to act)."""
    def run() -> None:
        try:
            role()
        except BaseException as exc:
            log.exception("the %s consumer stopped", name)
            failures[name] = exc

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
