"""Run in its own process (chDB opens one data directory per process) by test_cluster_ddl.py:
`python -m tests.deploy.cluster_insert_path describe|write CLICKHOUSE_URL`. Prints one JSON object.

describe: the `audit` tables as ClickHouse sees them (columns, engine, keys).
write:    the store consumer's insert path (TrailWriter per trail table, dead letters, the API's
          access log) against the cluster layout, twice; counts with and without FINAL through the
          Distributed and the local tables; the chain verifier over what was stored; and EXPLAIN AST
          of every statement of the full cluster form (Replicated engines, ON CLUSTER).
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

from consumers.store_rows import dead_letter_row
from consumers.trail_writer import ACTIONS, ALERTS, DEAD_LETTERS, REFERENCE_EVENTS, TrailWriter
from deploy.auditor.access_log import AccessEntry, writer
from deploy.auditor.chain_verify import verify_trail
from deploy.clickhouse_client import connect
from deploy.cluster_ddl import cluster_statements, ledger_statements
from deploy.migrations import load_migrations
from deploy.settings import Settings
from tests.bench.query_bench import simulated_rows

CLUSTER = "audit"


def describe(client: Any) -> dict[str, Any]:
    tables = {name: {"engine": engine, "engine_full": full, "sorting_key": sorting, "partition_key": partition}
              for name, engine, full, sorting, partition in client.query(
                  "SELECT name, engine, engine_full, sorting_key, partition_key FROM system.tables "
                  "WHERE database = 'audit'").result_rows}
    for table, name, type_, default_kind, default, comment in client.query(
            "SELECT table, name, type, default_kind, default_expression, comment FROM system.columns "
            "WHERE database = 'audit' ORDER BY table, position").result_rows:
        tables[table].setdefault("columns", []).append([name, type_, default_kind, default, comment])
    for table, name, type_, expr in client.query(
            "SELECT table, name, type, expr FROM system.data_skipping_indices WHERE database = 'audit'").result_rows:
        tables[table].setdefault("indexes", []).append([name, type_, expr])
    return tables


def write(client: Any) -> dict[str, Any]:
    rows = simulated_rows(2_000, Console(stderr=True, quiet=True))
    by_table = {ACTIONS: rows["actions"], REFERENCE_EVENTS: rows["reference"], ALERTS: rows["alerts"]}
    now = datetime.now(UTC)
    by_table[DEAD_LETTERS] = [dead_letter_row("BAD_MAGIC", "first byte 0x7b", "audit-store", "collection.actions",
                                              p, 100 + p, None, b"k", b"{}", now) for p in range(6)]
    inserted: dict[str, list[int]] = {}
    for table, table_rows in by_table.items():
        first = TrailWriter(client, table).write([dict(r) for r in table_rows])
        again = TrailWriter(client, table).write([dict(r) for r in table_rows])  # a restarted consumer, redelivered
        inserted[table.name] = [len(table_rows), first, again]
    writer(_borrow(client))(AccessEntry(now, "cluster-test", "auditor", "GET", "/api/v1/actions", "{}", 200, 3,
                                        1.5, "127.0.0.1", uuid.uuid4()))
    counts = {}
    for name in ("actions", "reference_events", "alerts", "dead_letters", "access_log"):
        final = "" if name == "access_log" else " FINAL"
        counts[name] = {
            "distributed": _count(client, f"audit.{name}"),
            "distributed_final": _count(client, f"audit.{name}{final}"),
            "local": _count(client, f"audit.{name}_local"),
        }
    tallies = verify_trail(client, (ACTIONS, REFERENCE_EVENTS, ALERTS), start=now - timedelta(days=3650),
                           end=now + timedelta(days=3650))
    full_form = ledger_statements(CLUSTER) + cluster_statements(
        [s for m in load_migrations() for s in m.statements()], CLUSTER)
    parse_errors = []
    for statement in full_form:
        try:
            client.query(f"EXPLAIN AST {statement}")
        except Exception as exc:
            parse_errors.append(f"{statement.splitlines()[0]}: {exc}")
    return {"inserted": inserted, "counts": counts,
            "verified": {name: [t.chains, t.rows, len(t.problems)] for name, t in tallies.items()},
            "parsed": len(full_form), "parse_errors": parse_errors,
            "engines": {name: t["engine_full"] for name, t in describe(client).items()}}


def _borrow(client: Any) -> Any:
    import contextlib

    @contextlib.contextmanager
    def borrow() -> Any:
        yield client
    return borrow


def _count(client: Any, table: str) -> int:
    return int(client.query(f"SELECT count() FROM {table}").result_rows[0][0])


if __name__ == "__main__":
    command, url = sys.argv[1], sys.argv[2]
    client = connect(url, **Settings(clickhouse_cluster=CLUSTER).clickhouse_settings())
    result = describe(client) if command == "describe" else write(client)
    print(json.dumps(result, default=str))
    sys.stdout.flush()
    os._exit(0)  # chDB's engine can abort in its own exit handlers; the result is already out
