"""`make bench`: every figure measured on the embedded stack in one run, printed as one table (each
figure beside its ceiling or target) and written to bench-results.json for tracking. BENCH_EVENTS sets
the size (default 100,000; two store processes are timed from 60,000); BENCH_QUERY_ACTIONS the stored
actions the auditor queries run over (default 1,000,000); BENCH_SECTIONS picks sections (default
producers,store,rules,steady,queries; add `instructions` for the rule engine's and the store's
instructions per event under valgrind's callgrind, BENCH_CALLGRIND_EVENTS of them, default 20,000:
minutes, but the figures this machine's drifting speed does not move)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tests.bench import instructions_bench, producers_bench, query_bench, rules_bench, steady_bench, store_bench

SECTIONS = "producers,store,rules,steady,queries"


@dataclass(frozen=True)
class Row:
    section: str
    key: str
    label: str
    unit: str
    target: str = ""  # what the issue asks, shown beside the figure
    met: Callable[[float, dict[str, dict[str, float]]], bool] | None = None


def _store_ratio(_: float, r: dict[str, dict[str, float]]) -> bool:
    return r["store"]["store_ratio_to_slowest_ceiling"] >= 0.6


ROWS = [
    *(Row("producers", key, label, "events/s") for key, label in producers_bench.LABELS.items()),
    Row("store", "ceiling_kafka_consume_per_s", store_bench.LABELS["ceiling_kafka_consume_per_s"], "records/s"),
    Row("store", "ceiling_avro_decode_per_s", store_bench.LABELS["ceiling_avro_decode_per_s"], "records/s"),
    Row("store", "ceiling_avro_decode_plain_per_s", store_bench.LABELS["ceiling_avro_decode_plain_per_s"],
        "records/s"),
    Row("store", "ceiling_clickhouse_insert_rows_per_s", store_bench.LABELS["ceiling_clickhouse_insert_rows_per_s"],
        "rows/s"),
    Row("store", "store_end_to_end_per_s", store_bench.LABELS["store_end_to_end_per_s"], "events/s"),
    Row("store", "store_2_processes_per_s", store_bench.LABELS["store_2_processes_per_s"], "events/s",
        "≥ 0.6 × slowest ceiling", _store_ratio),
    *(Row("store", key, store_bench.LABELS[key], "events/s")
      for key in ("store_2_processes_slowest_per_s", "store_2_processes_fastest_per_s")),
    Row("store", "resend_history_ms_per_batch", store_bench.LABELS["resend_history_ms_per_batch"], "ms"),
    Row("rules", "engine_alone_per_s", rules_bench.LABELS["engine_alone_per_s"], "events/s", "≥ 50,000",
        lambda v, _: v >= 50_000),
    Row("instructions", "engine_instructions_per_event", instructions_bench.LABELS["engine_instructions_per_event"],
        "instr."),
    Row("instructions", "store_instructions_per_event", instructions_bench.LABELS["store_instructions_per_event"],
        "instr."),
    Row("rules", "through_kafka_per_s", rules_bench.LABELS["through_kafka_per_s"], "actions/s"),
    Row("rules", "replay_1_instances_per_s", rules_bench.LABELS["replay_1_instances_per_s"], "actions/s"),
    Row("rules", "replay_2_instances_per_s", rules_bench.LABELS["replay_2_instances_per_s"], "actions/s",
        "adds up (> 1 process)", lambda v, r: v > r["rules"]["replay_1_instances_per_s"]),
    Row("steady", "steady_rate_per_s", "steady load through the store and rules roles", "events/s", "2,000",
        lambda v, _: v >= 1_950),
    Row("steady", "stored_latency_p50_ms", "occurred -> stored in ClickHouse, p50", "ms"),
    Row("steady", "stored_latency_p99_ms", "occurred -> stored in ClickHouse, p99", "ms"),
    Row("steady", "alert_latency_p50_ms", "occurred -> alert readable in Kafka, p50", "ms"),
    Row("steady", "alert_latency_p99_ms", "occurred -> alert readable in Kafka, p99", "ms", "< 1,000",
        lambda v, _: v < 1_000),
    Row("queries", "timeline_p50_ms", "debtor timeline over the trail, p50", "ms"),
    Row("queries", "timeline_p99_ms", "debtor timeline over the trail, p99", "ms", "< 200", lambda v, _: v < 200),
    *(Row("queries", f"report_{name}_p99_ms", f"report {name}, p99", "ms", "< 1,000", lambda v, _: v < 1_000)
      for name in query_bench.queries.REPORTS),
    Row("queries", "verify_rows_per_s", "verify: every hash chain of the range recomputed (the API's /verify)",
        "rows/s"),
    Row("producers", "rss_ingest_mib", "peak RSS: ingest role", "MiB"),
    Row("steady", "rss_store_mib", "peak RSS: store role", "MiB"),
    Row("steady", "rss_rules_mib", "peak RSS: rules role", "MiB"),
    Row("queries", "rss_api_mib", "peak RSS: api role (queries over the trail)", "MiB"),
    Row("steady", "rss_broker_mib", "peak RSS: embedded broker (Tansu)", "MiB"),
]


def table(results: dict[str, dict[str, float]], n_events: int) -> tuple[Table, dict[str, Any]]:
    """The one table, and the targets as JSON (figure, target, met)."""
    out = Table(title=f"collection-audit benchmark ({n_events:,} simulated events, {os.cpu_count()} cores)")
    for column, justify in (("section", "left"), ("figure", "left"), ("measured", "right"), ("unit", "left"),
                            ("target", "left"), ("", "left")):
        out.add_column(column, justify=justify)  # type: ignore[arg-type]
    targets = {}
    for row in ROWS:
        value = results.get(row.section, {}).get(row.key)
        if value is None:
            continue
        verdict = ""
        if row.met is not None:
            met = row.met(value, results)
            verdict = "[green]met[/]" if met else "[red]missed[/]"
            targets[row.key] = {"measured": value, "target": row.target, "met": met}
        out.add_row(row.section, row.label, f"{value:,.0f}", row.unit, row.target, verdict)
    return out, targets


def main() -> None:
    console = Console() if sys.stdout.isatty() else Console(width=150)  # a log keeps the table's rows whole
    n_events = int(os.environ.get("BENCH_EVENTS", "100000"))
    sections = os.environ.get("BENCH_SECTIONS", SECTIONS).split(",")
    results: dict[str, dict[str, float]] = {}
    if "producers" in sections:
        results["producers"] = producers_bench.run(console, min(n_events, 50_000))
    if "store" in sections:
        results["store"] = store_bench.run(console, n_events)
    if "rules" in sections:
        results["rules"] = rules_bench.run(console, n_events)
    if "instructions" in sections:
        results["instructions"] = instructions_bench.run(console, int(os.environ.get("BENCH_CALLGRIND_EVENTS",
                                                                                      "20000")))
    if "steady" in sections:
        results["steady"] = steady_bench.run(console)
    if "queries" in sections:
        results["queries"] = query_bench.run(console, int(os.environ.get("BENCH_QUERY_ACTIONS", "1000000")))
    rendered, targets = table(results, n_events)
    console.print(rendered)
    if "store_ratio_to_slowest_ceiling" in results.get("store", {}):
        store = results["store"]
        # three places: rounded to two, a median of 0.5993 printed 0.60 beside a target marked missed
        console.print(f"store ratio to slowest ceiling: {store['store_ratio_to_slowest_ceiling']:.3f} "
                      f"(two processes, the median of {store_bench.END_TO_END_RUNS} runs; "
                      f"the runs {store['store_ratio_slowest_run']:.3f}-"
                      f"{store['store_ratio_fastest_run']:.3f}; one process: {store['store_ratio_one_process']:.3f})")
    if "queries" in results:
        q = results["queries"]
        console.print(f"queries ran over {q['actions']:,.0f} actions and {q['alerts']:,.0f} alerts, "
                      f"a {q['range_days']:.0f}-day range")
    Path("bench-results.json").write_text(json.dumps({**results, "targets": targets}, indent=2))
    console.print("figures written to bench-results.json")


if __name__ == "__main__":
    main()
