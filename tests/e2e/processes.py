"""Roles as child processes (`collection-audit store`, `rules`, `up`) on a test's own broker, for fault
tests that SIGKILL them: log lines readable as they come, metrics readable over HTTP; and the helpers
that judge the outcome (SQL through the CLI, the alerts of an uninterrupted judge)."""

from __future__ import annotations

import ast
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from consumers.rules.engine import RuleEngine
from consumers.rules.ruleset import load_ruleset
from consumers.rules.text_match import Lexicon
from deploy.embedded_broker import EmbeddedBroker
from deploy.settings import Settings
from producers.simulator import SimConfig, Simulation
from schemas.catalog import Catalog
from schemas.codec import AvroCodec
from schemas.contract import parse_event
from schemas.registry import CatalogRegistry
from tests.conftest import TEST_POLL_INTERVAL_MS, free_port


def scrape(port: int, name: str) -> list[tuple[dict[str, str], float]] | None:
    """(labels, value) of every sample called `name` on a local /metrics (the prometheus_client
    parser), or None while the endpoint does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    return [(sample.labels, sample.value) for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name]


def metric_samples(port: int, name: str, having: str = "") -> list[float] | None:
    """The values of a metric's labelled samples (those whose labels, as `k="v"`, contain `having`),
    or None while the endpoint does not answer."""
    found = scrape(port, name)
    if found is None:
        return None
    return [value for labels, value in found
            if labels and having in ",".join(f'{k}="{v}"' for k, v in labels.items())]


def peak_rss_mib(pid: int | None) -> float:
    """The peak resident set size of a live process (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


class RoleProcess:
    """`collection-audit <role>` in a child process (`up`, `ingest` and `api` serve metrics on their HTTP
    port); without a broker for a role that needs none."""

    def __init__(self, role: str, broker: EmbeddedBroker | None, *args: str, **env: str) -> None:
        self.metrics_port = free_port()
        port_option = "--http-port" if role in ("up", "ingest", "api") else "--metrics-port"
        kafka = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers} if broker is not None else {}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", role, *args, port_option, str(self.metrics_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **kafka, "COLLECTION_AUDIT_KAFKA_MAX_POLL_INTERVAL_MS": str(TEST_POLL_INTERVAL_MS),
                 **env})
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
        return metric_samples(self.metrics_port, name, having)

    def peak_rss_mib(self) -> float:
        return peak_rss_mib(self.process.pid)

    def assignment(self) -> tuple[datetime, frozenset[tuple[str, int]]] | None:
        """When the group last assigned partitions to this process, and which (from its log)."""
        lines = [line for line in self.log if "consumer_loop: assigned " in line]
        if not lines:
            return None
        at = datetime.strptime(lines[-1][:23], "%Y-%m-%d %H:%M:%S,%f")
        return at, frozenset(ast.literal_eval(lines[-1].split("assigned ", 1)[1].strip()))

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(60) == 0, "".join(self.log[-30:])


class StoreProcess(RoleProcess):
    def __init__(self, broker: EmbeddedBroker, clickhouse_url: str, data_dir: Path, *args: str, **env: str) -> None:
        super().__init__("store", broker, "--data-dir", str(data_dir), *args, CLICKHOUSE_URL=clickhouse_url,
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


def sql(clickhouse_url: str, query: str) -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "deploy.cli", "sql", "--clickhouse-url", clickhouse_url,
                           "--output", "json", query], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    decoder, text, rows = json.JSONDecoder(), done.stdout, []
    index = 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        row, index = decoder.raw_decode(text, index)
        rows.append(row)
    return rows


def uninterrupted_alerts(events: list[dict[str, Any]], codec: AvroCodec) -> dict[str, str]:
    """alert id -> rule of the engine alone, judging the events once, in the order they were produced."""
    lexicon = Lexicon.from_directory()
    engine = RuleEngine(load_ruleset(categories=lexicon.categories), lexicon,
                        allowed_lateness=timedelta(seconds=Settings().rules_allowed_lateness_s))
    alerts = {}
    for event in events:
        validated = parse_event(event)
        record = codec.decode(validated.subject, codec.encode(validated.subject, validated.record)).record
        raised = engine.on_reference(record) if "kind" in event else engine.on_action(record)
        alerts.update((a["alert_id"], a["rule_id"]) for a in raised)
    return alerts


def judged_stream(n: int, seed: int, debtors: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Simulated events rich in violations, and the alerts (id -> rule) one uninterrupted judge raises."""
    events = list(simulated(n, seed=seed, debtors=debtors, violation_rate=0.05))
    expected = uninterrupted_alerts(events, AvroCodec(CatalogRegistry(Catalog.load())))
    assert len(expected) > 150 and len(set(expected.values())) >= 12, "the stream must exercise most rules"
    return events, expected


def fill(disk: Path) -> Path:
    """Fill a (small, dedicated) filesystem: ClickHouse can write nothing until the ballast goes."""
    ballast = disk / "ballast"
    with ballast.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * (1 << 20))
                out.flush()
        except OSError:
            pass
    return ballast


def assert_chains_intact(clickhouse_url: str) -> None:
    """Within every (key, month) chain: seq 1..n without gaps or repeats, each prev_hash the row before."""
    for table, key in (("audit.actions", "debtor_id"), ("audit.reference_events", "entity_key")):
        broken = sql(clickhouse_url, f"""
            SELECT {key} AS key, month, seqs FROM (
              SELECT {key}, toYYYYMM(occurred_at) AS month,
                     arraySort(x -> x.1, groupArray((chain_seq, prev_hash, row_hash))) AS links,
                     arrayMap(x -> x.1, links) AS seqs
              FROM {table} GROUP BY {key}, month)
            WHERE seqs != range(1, length(seqs) + 1)
               OR links[1].2 != repeat('0', 64)
               OR arrayExists(i -> links[i].2 != links[i - 1].3, range(2, length(links) + 1))
            LIMIT 5""")
        assert broken == [], f"{table}: broken chains {broken}"


def corrupt_parts(chdb_dir: Path, table: str = "audit.actions") -> int:
    """Flip one payload byte in every compressed block of every part of a chDB table, as bit rot would:
    each block's checksum no longer matches. Returns the number of blocks corrupted."""
    database, name = table.split(".")
    blocks = 0
    for data_file in (chdb_dir / "data" / database / name).resolve().glob("*_*_*_*/*.bin"):
        data = bytearray(data_file.read_bytes())
        offset = 0
        while offset + 25 <= len(data):  # 16 bytes of checksum, then method (1), sizes (4 + 4), payload
            compressed_size = int.from_bytes(data[offset + 17:offset + 21], "little")  # counts the 9-byte header
            if compressed_size > 9:
                data[offset + 25] ^= 0xFF
                blocks += 1
            offset += 16 + compressed_size
        data_file.write_bytes(bytes(data))
    return blocks
