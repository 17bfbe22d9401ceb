"""Run in its own process by test_dashboards.py: `python -m tests.deploy.dashboard_queries CLICKHOUSE_URL`.

Applies the migrations to a fresh chDB, stores a simulated trail through the store's insert path,
then runs every ClickHouse query of deploy/grafana/dashboards/ (template variables and panels) the
way the Grafana ClickHouse plugin sends them: its time macros expanded to the trail's time range,
template variables set to "All" and then to the first agency and jurisdiction. Prints one JSON
object: {"variables": {name: values}, "panels": {title: [rows with All, rows filtered]}}.
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

import deploy
from consumers.store_rows import dead_letter_row
from consumers.trail_writer import ACTIONS, ALERTS, DEAD_LETTERS, REFERENCE_EVENTS, TrailWriter
from deploy.clickhouse_client import connect
from deploy.migrations import migrate
from schemas.contract import from_micros
from tests.bench.query_bench import simulated_rows

DASHBOARDS = Path(deploy.__file__).parent / "grafana" / "dashboards"
CLICKHOUSE_PLUGIN = "grafana-clickhouse-datasource"


def render(sql: str, start: datetime, end: datetime, variables: dict[str, str]) -> str:
    """The plugin's macros (`$__timeFilter(col)`, `$__fromTime`, `$__toTime`) and `${name}` variables."""
    low, high = f"toDateTime({int(start.timestamp())})", f"toDateTime({int(end.timestamp())})"
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 >= {low} AND \1 <= {high}", sql)
    sql = sql.replace("$__fromTime", low).replace("$__toTime", high)
    sql = re.sub(r"\$\{(\w+)\}", lambda m: variables[m[1]], sql)
    if "$" in sql:
        raise ValueError(f"unexpanded macro or variable in: {sql}")
    return sql


def clickhouse_queries() -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    variables, panels = [], []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        variables += [v for v in dashboard["templating"]["list"] if v["datasource"]["type"] == CLICKHOUSE_PLUGIN]
        panels += [(f"{dashboard['uid']}: {p['title']}", t["rawSql"]) for p in dashboard["panels"]
                   for t in p["targets"] if t["datasource"]["type"] == CLICKHOUSE_PLUGIN]
    return variables, panels


def main(url: str) -> dict[str, Any]:
    client = connect(url)
    migrate(client)
    rows = simulated_rows(10_000, Console(stderr=True, quiet=True))
    for table, key in ((REFERENCE_EVENTS, "reference"), (ACTIONS, "actions"), (ALERTS, "alerts")):
        TrailWriter(client, table).write(rows[key])
    TrailWriter(client, DEAD_LETTERS).write([dead_letter_row(
        "CONTRACT_INVALID", "event_id: empty", "audit-store", "collection.actions", 0, 7, 1, b"", b"x",
        from_micros(rows["actions"][0]["occurred_at"]))])
    start = from_micros(min(r["occurred_at"] for r in rows["actions"]))  # as the store holds them: microseconds
    end = from_micros(max(r["occurred_at"] for r in rows["actions"]))

    variables, panels = clickhouse_queries()
    values = {v["name"]: [r[0] for r in client.query(v["query"]).result_rows] for v in variables}
    everything = {name: v["allValue"] for name, v in ((v["name"], v) for v in variables)}
    first = {name: found[0] for name, found in values.items() if found}
    results = {}
    for title, sql in panels:
        results[title] = [len(client.query(render(sql, start, end, everything)).result_rows),
                          len(client.query(render(sql, start, end, {**everything, **first})).result_rows)]
    return {"variables": values, "panels": results}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1]), default=str))
    sys.stdout.flush()
    os._exit(0)  # chDB's engine can abort in its own exit handlers; the result is already out
