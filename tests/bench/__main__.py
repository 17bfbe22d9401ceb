"""`make bench`: every figure measured on the embedded stack in one run, printed as a table and
written to bench-results.json for tracking. BENCH_EVENTS sets the size (default 100,000);
BENCH_QUERY_ACTIONS the stored actions the auditor queries run over (default 1,000,000);
BENCH_SECTIONS picks sections (default producers,store,rules,queries)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tests.bench import producers_bench, query_bench, rules_bench, store_bench


def main() -> None:
    console = Console()
    n_events = int(os.environ.get("BENCH_EVENTS", "100000"))
    sections = os.environ.get("BENCH_SECTIONS", "producers,store,rules,queries").split(",")
    results = {}
    if "producers" in sections:
        results["producers"] = producers_bench.run(console, min(n_events, 50_000))
    if "store" in sections:
        results["store"] = store_bench.run(console, n_events)
    if "rules" in sections:
        results["rules"] = rules_bench.run(console, n_events)
    if "queries" in sections:
        results["queries"] = query_bench.run(console, int(os.environ.get("BENCH_QUERY_ACTIONS", "1000000")))
    table = Table(title=f"collection-audit benchmark ({n_events:,} simulated events, {os.cpu_count()} cores)")
    table.add_column("figure")
    table.add_column("per second", justify="right")
    for section, labels in (("producers", producers_bench.LABELS), ("store", store_bench.LABELS),
                            ("rules", rules_bench.LABELS)):
        for key, label in labels.items() if section in results else ():
            table.add_row(label, f"{results[section][key]:,.0f}")
    console.print(table)
    if "store" in results:
        console.print(f"store ratio to slowest ceiling: {results['store']['store_ratio_to_slowest_ceiling']:.2f}")
    if "rules" in results:
        rules = results["rules"]
        console.print(f"alert latency, occurred -> alert readable in Kafka, at {rules['steady_rate_per_s']:,.0f} "
                      f"events/s: p50 {rules['alert_latency_p50_ms']:,.0f} ms, p99 "
                      f"{rules['alert_latency_p99_ms']:,.0f} ms ({rules['alerts_timed']:,.0f} alerts)")
    for line in query_bench.report_lines(results["queries"]) if "queries" in results else ():
        console.print(line)
    Path("bench-results.json").write_text(json.dumps(results, indent=2))
    console.print("figures written to bench-results.json")


if __name__ == "__main__":
    main()
