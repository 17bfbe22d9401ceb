"""More store consumers beside this one, as child processes in the same consumer group.

The store is CPU-bound in Python (decode, enrichment, hash chain), one core per process; a second
process on the same partitions' group takes half of them and uses a second core. The children are
ordinary store consumers: with a ClickHouse server they connect to it; on the embedded stack, where
chDB lets one process open the data directory, they reach it through the relay this process serves
(deploy/clickhouse_relay.py) -- the same `http://` path as a server. Every writer hashes PII with
the same key (handed over in the child's environment, never on a command line).

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
from urllib.parse import parse_qsl, urlparse

from prometheus_client.parser import text_string_to_metric_families

from deploy.clickhouse_client import CORRUPTED_EXIT_CODE, ClickHouseCorrupted, ClickHouseUnavailable
from deploy.clickhouse_relay import ClickHouseRelay
from deploy.settings import PREFIX, STANDARD_NAMES, Settings

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


class StoreProcessExited(RuntimeError):
    pass


class StoreProcesses:
    """`extra` store consumer processes; each serves /metrics on `metrics_port` + its number, or on a
    free port when `metrics_port` is None (`total()` reads them for a live view)."""

    def __init__(self, settings: Settings, extra: int, metrics_port: int | None = None) -> None:
        self.settings = settings
        self.extra = extra
        self.metrics_ports = [metrics_port + n if metrics_port else _free_port() for n in range(1, extra + 1)]
        self.relay: ClickHouseRelay | None = None
        self.children: list[subprocess.Popen[bytes]] = []
        self._samples: dict[int, list[tuple[str, dict[str, str], float]]] = {}  # port -> its last /metrics
        self._read_at = 0.0

    def start(self) -> StoreProcesses:
        if self.extra <= 0:
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
        log.info("%d more store consumer processes started (pids %s) on %s", self.extra,
                 ", ".join(str(c.pid) for c in self.children), url.split("?")[0])
        return self

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
        """The sum over the other processes of a metric's samples that carry `labels`, as last read
        (read at most twice a second; a process that stopped answering keeps its last values)."""
        if time.monotonic() - self._read_at > 0.5:
            self.read_metrics()
        wanted = (labels or {}).items()
        return sum(value for samples in self._samples.values() for sample_name, sample_labels, value in samples
                   if sample_name == name and wanted <= sample_labels.items())

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
