"""Consumers as child processes (`collection-audit store`, `collection-audit rules`) on a test's own
broker, for fault tests that SIGKILL them: log lines readable as they come, metrics readable over HTTP."""

from __future__ import annotations

import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deploy.embedded_broker import EmbeddedBroker
from producers.simulator import SimConfig, Simulation
from tests.conftest import TEST_POLL_INTERVAL_MS, free_port


class RoleProcess:
    """`collection-audit <role>` in a child process."""

    def __init__(self, role: str, broker: EmbeddedBroker, *args: str, **env: str) -> None:
        self.metrics_port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", role, *args, "--metrics-port", str(self.metrics_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                 "COLLECTION_AUDIT_KAFKA_MAX_POLL_INTERVAL_MS": str(TEST_POLL_INTERVAL_MS), **env})
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)
            self.log.append(line)

    def wait_for_line(self, text: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if text in self.lines.get(timeout=0.1):
                    return True
            except queue.Empty:
                if self.process.poll() is not None:
                    return False
        return False

    def samples(self, name: str, having: str = "") -> list[float] | None:
        """The values of a metric's labelled samples (those whose labels contain `having`), or None while
        the metrics endpoint is not up."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as answer:
                text = answer.read().decode()
        except OSError:
            return None
        return [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith(name + "{") and having in line.split("}", 1)[0]]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(60) == 0, "".join(self.log[-30:])


class StoreProcess(RoleProcess):
    def __init__(self, broker: EmbeddedBroker, clickhouse_url: str, data_dir: Path, **env: str) -> None:
        super().__init__("store", broker, "--data-dir", str(data_dir), CLICKHOUSE_URL=clickhouse_url,
                         COLLECTION_AUDIT_PII_KEY="ab" * 32, COLLECTION_AUDIT_STORE_BATCH_ROWS="400",
                         COLLECTION_AUDIT_STORE_BATCH_WAIT_MS="100", **env)

    def caught_up(self, partitions: int = 18) -> bool:
        """Every partition of the three topics was fetched and nothing fetched is still unstored."""
        lags = self.samples("collection_audit_consumer_lag")
        return lags is not None and len(lags) == partitions and not any(lags)


def simulated(n: int, seed: int, debtors: int = 300, violation_rate: float = 0.02) -> Iterator[dict[str, Any]]:
    items = (item.event for item in Simulation(SimConfig(seed=seed, debtors=debtors,
                                                         violation_rate=violation_rate)).events())
    return itertools.islice(items, n)
