"""Auditor query latency over a trail of simulated actions: the simulator's events are enriched,
judged by the rule engine and hash-chained exactly as the consumers do, written to a fresh chDB,
then the API is asked over HTTP -- debtor timelines and every report over the whole range.

The trail is built by `python -m tests.bench.query_bench N DIR` in a child process (chDB opens one data
directory per process), which prints what the queries need as its last line and exits; then
`collection-audit api` serves that directory as its own process, as in a deployment."""

from __future__ import annotations

import itertools
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from consumers.pii import PiiMasker
from consumers.reference_state import ReferenceState
from consumers.rule_consumer import build_engine
from consumers.store_rows import Enricher, Provenance
from consumers.trail_writer import ACTIONS, ALERTS, REFERENCE_EVENTS, TrailTable, TrailWriter
from deploy.auditor import queries
from deploy.auditor.tokens import TokenStore
from deploy.clickhouse_client import connect
from deploy.migrations import migrate
from deploy.settings import Settings
from producers.simulator import SimConfig, Simulation
from schemas import TOPIC_ALERTS, value_subject
from schemas.catalog import Catalog
from schemas.codec import AvroCodec
from schemas.contract import from_micros, parse_event
from schemas.registry import CatalogRegistry
from tests.conftest import wait_until
from tests.e2e.processes import RoleProcess

LABELS = {"timeline_p50_ms": "debtor timeline p50, ms", "timeline_p99_ms": "debtor timeline p99, ms"}
TIMELINE_REQUESTS = 300
REPORT_REQUESTS = 15
BATCH = 50_000
BASE = 100_000  # actions simulated one by one; the rest are copies for further debtors


def simulated_rows(n_actions: int, console: Console) -> dict[str, list[dict[str, Any]]]:
    """Rows for `n_actions` simulated actions, their reference events and alerts, enriched and judged as
    the consumers do (chain columns are filled by the trail writer)."""
    codec = AvroCodec(CatalogRegistry(Catalog.load()))
    enricher = Enricher(PiiMasker(bytes(32)), ReferenceState(in_micros=True))
    engine = build_engine(Settings())
    engine.watermark_from_events = True
    rows: dict[str, list[dict[str, Any]]] = {"actions": [], "reference": [], "alerts": []}
    now = datetime.now(UTC)
    alert_subject = value_subject(TOPIC_ALERTS)
    offset = itertools.count()
    for item in Simulation(SimConfig(seed=11, violation_rate=0.01)).events():
        validated = parse_event(item.event)
        record = codec.decode(validated.subject, codec.encode(validated.subject, validated.record)).record
        origin = Provenance(validated.topic, 0, next(offset), 1, now)
        if "kind" in item.event:
            enricher.state.apply(record)
            rows["reference"].append(enricher.reference_row(record, validated.key, origin))
            alerts = engine.on_reference(record)
        else:
            rows["actions"].append(enricher.action_row(record, origin))
            alerts = engine.on_action(record)
        for alert in alerts:
            decoded = codec.decode(alert_subject, codec.encode(alert_subject, alert)).record
            rows["alerts"].append(enricher.alert_row(decoded, Provenance(TOPIC_ALERTS, 0, next(offset), 1, now)))
        if len(rows["actions"]) >= n_actions:
            return rows
    return rows


def replica(rows: list[dict[str, Any]], table: TrailTable, k: int, debtors: set[str]) -> list[dict[str, Any]]:
    """Copy k of simulated rows: the same activity for another population of debtors (ids suffixed)."""
    if k == 0:
        return [dict(r) for r in rows]
    out = []
    for row in rows:
        copy = dict(row)
        if table is ALERTS:
            copy["alert_id"] = f"{row['alert_id']}~{k}"
        else:
            copy["event_id"] = uuid.uuid5(uuid.UUID(str(row["event_id"])), str(k))
        for column in ("debtor_id", "entity_key"):
            if copy.get(column) in debtors:
                copy[column] = f"{copy[column]}~{k}"
        out.append(copy)
    return out


def build_trail(client: Any, n_actions: int, console: Console) -> tuple[list[str], datetime, datetime]:
    """Store `n_actions` actions: up to BASE simulated ones, then copies of them for further populations
    of debtors (simulating 1M events one by one would take most of the benchmark's time)."""
    started = time.perf_counter()
    base = simulated_rows(min(n_actions, BASE), console)
    console.print(f"  simulated, enriched and judged {len(base['actions']):,} actions in "
                  f"{time.perf_counter() - started:,.0f} s")
    debtors = {r["debtor_id"] for r in base["actions"]}
    writers = [(TrailWriter(client, ACTIONS), "actions"), (TrailWriter(client, REFERENCE_EVENTS), "reference"),
               (TrailWriter(client, ALERTS), "alerts")]
    stored, k, all_debtors = 0, 0, []
    while stored < n_actions:
        for writer, name in writers:
            copies = replica(base[name], writer.table, k, debtors)
            if name == "actions":
                copies = copies[:n_actions - stored]
                stored += len(copies)
                all_debtors += sorted({r["debtor_id"] for r in copies})
            for i in range(0, len(copies), BATCH):
                writer.write(copies[i:i + BATCH])
        k += 1
        console.print(f"  {stored:,} actions stored ({stored / (time.perf_counter() - started):,.0f}/s overall)")
    times = [r["occurred_at"] for r in base["actions"]]  # as the store holds them: microseconds
    return all_debtors, from_micros(min(times)), from_micros(max(times))


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def build(n_actions: int, data_dir: Path, console: Console) -> dict[str, Any]:
    """The trail in `data_dir`'s chDB; returns what the queries need (debtors, time span, counts)."""
    client = connect(Settings(data_dir=data_dir).clickhouse)
    migrate(client)
    console.print(f"queries: building a trail of {n_actions:,} simulated actions (enrich, judge, chain, insert)...")
    debtors, first, last = build_trail(client, n_actions, console)
    client.command("OPTIMIZE TABLE audit.actions FINAL")  # as after the background merges of a day
    actions, alerts = client.query("SELECT (SELECT count() FROM audit.actions), (SELECT count() FROM audit.alerts)"
                                   ).result_rows[0]
    return {"debtors": debtors, "first": first.isoformat(), "last": last.isoformat(), "actions": actions,
            "alerts": alerts}


def measure(trail: dict[str, Any], data_dir: Path, console: Console) -> dict[str, float]:
    """Timelines and reports over HTTP from `collection-audit api` (its own process, rate limits off),
    and that process's peak resident memory."""
    settings = Settings(data_dir=data_dir)
    token = TokenStore(settings.tokens_path).create("bench", "auditor")
    api = RoleProcess("api", None, "--data-dir", str(data_dir), COLLECTION_AUDIT_API_REQUESTS_PER_S="0")
    debtors = trail["debtors"]
    end = datetime.fromisoformat(trail["last"]) + timedelta(seconds=1)
    start = max(datetime.fromisoformat(trail["first"]), end - queries.MAX_RANGE + timedelta(days=1))
    span = {"from": start.isoformat(), "to": end.isoformat()}
    figures: dict[str, float] = {"actions": trail["actions"], "alerts": trail["alerts"],
                                 "range_days": (end - start).total_seconds() / 86400}
    rng = random.Random(5)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{api.metrics_port}/api/v1", timeout=120,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            def answers() -> bool:
                if api.process.poll() is not None:
                    raise RuntimeError("the api role exited:\n" + "".join(api.log[-20:]))
                try:
                    return http.get("/me").status_code == 200
                except httpx.HTTPError:
                    return False

            if not wait_until(answers, timeout_s=120, every_s=0.5):
                raise RuntimeError("the api role did not answer:\n" + "".join(api.log[-20:]))

            def timed(path: str) -> float:
                began = time.perf_counter()
                response = http.get(path, params=span)
                response.raise_for_status()
                return (time.perf_counter() - began) * 1000

            console.print(f"queries: {TIMELINE_REQUESTS} debtor timelines, each report {REPORT_REQUESTS} times...")
            timed(f"/debtors/{debtors[0]}/timeline")  # warm-up
            figures["timeline_p50_ms"], figures["timeline_p99_ms"] = percentiles(
                [timed(f"/debtors/{rng.choice(debtors)}/timeline") for _ in range(TIMELINE_REQUESTS)])
            for name in queries.REPORTS:
                timed(f"/reports/{name}")
                samples = [timed(f"/reports/{name}") for _ in range(REPORT_REQUESTS)]
                figures[f"report_{name}_p50_ms"], figures[f"report_{name}_p99_ms"] = percentiles(samples)
            console.print("queries: verifying every hash chain of the range...")
            began = time.perf_counter()
            response = http.get("/verify", params=span)
            response.raise_for_status()
            elapsed, verified = time.perf_counter() - began, response.json()
            if not verified["ok"]:
                raise RuntimeError(f"verify found problems in the benchmark's own trail: {verified['problems'][:3]}")
            figures["verify_rows_per_s"] = sum(t["rows"] for t in verified["tables"].values()) / elapsed
        figures["rss_api_mib"] = api.peak_rss_mib()
        api.stop()
    finally:
        if api.process.poll() is None:
            api.process.kill()
    return figures


def run(console: Console, n_actions: int) -> dict[str, float]:
    """The trail is built in a child process (chDB opens a data directory in one process at a time),
    which then exits so that the api role can open it."""
    with tempfile.TemporaryDirectory() as tmp:
        process = subprocess.Popen([sys.executable, "-m", "tests.bench.query_bench", str(n_actions), tmp],
                                   stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if not line.startswith("{"):
                console.print(line.rstrip())
        if process.wait() != 0:
            raise RuntimeError("building the query benchmark's trail failed (see above)")
        return measure(json.loads(lines[-1]), Path(tmp), console)


if __name__ == "__main__":
    trail = build(int(sys.argv[1]), Path(sys.argv[2]), Console(file=sys.stdout, force_terminal=False, width=120))
    print(json.dumps(trail))
