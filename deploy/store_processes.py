"""Store consumers as child processes in the same consumer group, for the cores of one machine.

The store is CPU-bound in Python (decode, enrichment, hash chain), one core per process. With
`--processes N` above 1 the role starts N store consumers as children and only supervises them: the
children are alike and share the partitions evenly. The role itself does not consume then. On the
embedded stack it holds chDB's data directory (one process may open it) and serves it through the
relay (deploy/clickhouse_relay.py), the same `http://` path as a server, so every process's lookups
and inserts run there: a consumer of its own in that process finished its half of the partitions
last (about 12 s against the other's 8 s for 100,000 events), and two children with the holder serving
them store more events/s than that pair (docs/operations.md). Against a ClickHouse server the children
connect to it, and the role's process is idle but for /metrics and /healthz. Every writer hashes PII
with the same key (handed over in the child's environment, never on a command line).

A child dies with this process (PR_SET_PDEATHSIG), so none is left consuming after a SIGKILL;
on `stop()` each drains, commits and exits like a store that was sent SIGTERM. The signal follows
the thread that started the child, so `start()` runs on one that lives as long as the role (the
main thread, in `store` and `up`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from urllib.parse import parse_qsl, urlparse

from clickhouse_connect.driver.client import Client
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from consumers.store_consumer import StoreProcessor, run_store
from deploy.clickhouse_client import CORRUPTED_EXIT_CODE, ClickHouseCorrupted, ClickHouseUnavailable
from deploy.clickhouse_relay import ClickHouseRelay
from deploy.settings import PREFIX, STANDARD_NAMES, Settings

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


class StoreProcessExited(RuntimeError):
    pass


class StoreProcesses:
    """The store consumers of a role: for `consumers` 1 the role's own (`run_role` consumes in its
    process), otherwise `consumers` child processes. Each child serves /metrics on `metrics_port` + its
    number, or on a free port when `metrics_port` is None (`total()` reads them for a live view)."""

    def __init__(self, settings: Settings, consumers: int, metrics_port: int | None = None) -> None:
        self.settings = settings
        self.count = consumers if consumers > 1 else 0  # child processes
        self.metrics_ports = [metrics_port + n if metrics_port else _free_port() for n in range(1, self.count + 1)]
        self.relay: ClickHouseRelay | None = None
        self.children: list[subprocess.Popen[bytes]] = []
        self._samples: dict[int, list[tuple[str, dict[str, str], float]]] = {}  # port -> its last /metrics
        self._read_at = 0.0
        self._started_at = time.time()

    def start(self) -> StoreProcesses:
        if not self.count:
            return self
        s = self.settings
        url = s.clickhouse
        if url.startswith("chdb:"):
            parsed = urlparse(url)
            try:
                self.relay = ClickHouseRelay(parsed.path, dict(parse_qsl(parsed.query)) or None,
                                             s.clickhouse_relay_port).start()
            except OSError as exc:  # the port is taken
                raise ClickHouseUnavailable(f"cannot serve the embedded ClickHouse to the other store processes on "
                                            f"127.0.0.1:{s.clickhouse_relay_port}: {exc}") from exc
            url = self.relay.url
        own = s.replace(clickhouse_url=url, clickhouse_relay_port=0, kafka_bootstrap_servers=s.bootstrap_servers,
                        pii_key=s.pii_key_bytes().hex(), store_processes=1)
        env = {k: v for k, v in os.environ.items() if k not in STANDARD_NAMES and not k.startswith(PREFIX)}
        env.update(own.environment())
        for port in self.metrics_ports:
            command = [sys.executable, "-m", "deploy.cli", "store", "--metrics-port", str(port)]
            self.children.append(subprocess.Popen(command, env=env, preexec_fn=_die_with_parent))
        log.info("%d store consumer processes started (pids %s) on %s; this process supervises them", self.count,
                 ", ".join(str(c.pid) for c in self.children), url.split("?")[0])
        return self

    def run_role(self, registry: CollectorRegistry, should_stop: Callable[[], bool],
                 client: Client) -> StoreProcessor | None:
        """The role's part until `should_stop()`: its own store consumer when it has no children (returns
        its processor), otherwise waiting while they consume."""
        if not self.count:
            return run_store(self.settings, registry, should_stop, client)
        while not should_stop():
            time.sleep(0.2)
        return None

    def health(self, max_age_s: float = 120.0, startup_grace_s: float = 300.0) -> dict[str, bool]:
        """/healthz of a role whose children consume: every child running, and polling Kafka (its last
        poll, from its /metrics, under `max_age_s` old; before its first, within `startup_grace_s`)."""
        self._read_recent()
        now = time.time()

        def polling(port: int) -> bool:
            last = [value for name, _, value in self._samples.get(port, [])
                    if name == "collection_audit_last_poll_timestamp_seconds"]
            return now - max(last) < max_age_s if last else now - self._started_at < startup_grace_s
        return {"store_processes_running": not self.failed(),
                "store_processes_polling": all(polling(port) for port in self.metrics_ports)}

    def failed(self) -> list[int]:
        """Exit codes of children that stopped on their own."""
        return [code for code in (c.poll() for c in self.children) if code is not None]

    def failure(self) -> BaseException | None:
        """Why the role must stop, if a child did: ClickHouseCorrupted for its exit 3 (the role exits 3
        too, for a restart policy), otherwise StoreProcessExited with the exit code."""
        exited = self.failed()
        if not exited:
            return None
        if CORRUPTED_EXIT_CODE in exited:
            return ClickHouseCorrupted("another store process found a part ClickHouse cannot read back")
        return StoreProcessExited(f"another store process exited with {exited[0]}")

    def total(self, name: str, labels: dict[str, str] | None = None) -> float:
        """The sum over the store processes of a metric's samples that carry `labels`, as last read
        (read at most twice a second; a process that stopped answering keeps its last values)."""
        self._read_recent()
        return sum(self._per_process(name, labels))

    def each(self, name: str, labels: dict[str, str] | None = None) -> list[float]:
        """Per store process, the sum of a metric's samples that carry `labels`, read now (0 for a process
        that does not answer yet)."""
        self.read_metrics()
        return self._per_process(name, labels)

    def _per_process(self, name: str, labels: dict[str, str] | None) -> list[float]:
        wanted = (labels or {}).items()
        return [sum(value for sample_name, sample_labels, value in self._samples.get(port, [])
                    if sample_name == name and wanted <= sample_labels.items()) for port in self.metrics_ports]

    def _read_recent(self) -> None:
        if time.monotonic() - self._read_at > 0.5:
            self.read_metrics()

    def read_metrics(self) -> None:
        self._read_at = time.monotonic()
        for port in self.metrics_ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as response:
                    text = response.read().decode()
            except OSError:
                continue  # starting, or gone: failed() reports the latter
            self._samples[port] = [(sample.name, sample.labels, sample.value)
                                   for family in text_string_to_metric_families(text) for sample in family.samples]

    def stop(self, timeout_s: float = 90.0) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("store process %d did not drain in %.0f s: killed (its batch is replayed)",
                            child.pid, timeout_s)
                child.kill()
                child.wait()
        self.children = []
        if self.relay is not None:
            self.relay.stop()
            self.relay = None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the parent dies (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
