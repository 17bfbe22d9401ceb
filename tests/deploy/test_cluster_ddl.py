"""The cluster DDL: generated from the single-node migrations, parsed by ClickHouse, and run.

chDB cannot host a replicated table (it runs no replication threads) nor receive ON CLUSTER DDL (no
DDL worker), so the tables are created with `migrate --cluster audit --no-replication
--no-distributed-ddl` on a chDB configured with a one-shard cluster `audit` whose replica is chDB
itself; the full form (Replicated engines, ON CLUSTER) is parsed by chDB's EXPLAIN AST.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deploy.cluster_ddl import SHARD_KEYS, ClusterDdlError, cluster_statements
from deploy.migrations import load_migrations

CLI = [sys.executable, "-m", "deploy.cli"]
ONE_SHARD_CLUSTER = """<clickhouse>
  <tcp_port>9000</tcp_port>
  <macros><shard>01</shard><replica>chdb-1</replica></macros>
  <remote_servers><audit><shard><internal_replication>true</internal_replication>
    <replica><host>localhost</host><port>9000</port></replica>
  </shard></audit></remote_servers>
</clickhouse>
"""


def single_node_statements() -> list[str]:
    return [s for m in load_migrations() for s in m.statements()]


def run(args: list[str], url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLICKHOUSE_URL": url}
    env.pop("COLLECTION_AUDIT_CLICKHOUSE_CLUSTER", None)
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=180)


def insert_path(command: str, url: str) -> dict[str, Any]:
    result = run([sys.executable, "-m", "tests.deploy.cluster_insert_path", command, url], url)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


def test_every_trail_table_gets_a_replicated_local_table_and_a_distributed_one() -> None:
    statements = cluster_statements(single_node_statements(), "prod")
    created = re.findall(r"CREATE TABLE IF NOT EXISTS audit\.(\w+) ON CLUSTER prod", "\n".join(statements))
    assert sorted(created) == sorted([*SHARD_KEYS, *(f"{t}_local" for t in SHARD_KEYS)])
    local = next(s for s in statements if "audit.actions_local" in s.splitlines()[0])
    assert ("ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/audit/actions_local', '{replica}')"
            in local)
    assert "ORDER BY (debtor_id, occurred_at, event_id)" in local
    distributed = next(s for s in statements if s.startswith("CREATE TABLE IF NOT EXISTS audit.actions ON"))
    assert distributed.endswith("ENGINE = Distributed(prod, audit, actions_local, cityHash64(debtor_id))")
    assert any(s.startswith("CREATE VIEW IF NOT EXISTS audit.contacts_per_debtor_day ON CLUSTER prod AS")
               for s in statements)


def test_each_sharding_key_is_built_from_its_tables_order_by_so_copies_of_a_row_meet_on_one_shard() -> None:
    orders = {m[1]: m[2] for s in single_node_statements()
              if (m := re.search(r"audit\.(\w+)\s*\(.*ORDER BY \(([^)]*)\)", s, re.S))}
    for table, key in SHARD_KEYS.items():
        if key == "rand()":
            assert "ReplacingMergeTree" not in next(s for s in single_node_statements() if f"audit.{table}\n" in s)
            continue
        columns = re.findall(r"\w+", key[key.index("(") + 1:])
        assert columns == [c.strip() for c in orders[table].split(",")][:len(columns)], table


def test_statements_without_a_cluster_form_are_refused_not_guessed() -> None:
    with pytest.raises(ClusterDdlError, match="no cluster form"):
        cluster_statements(["INSERT INTO audit.actions SELECT * FROM somewhere"], "prod")
    with pytest.raises(ClusterDdlError, match="no sharding key"):
        cluster_statements(["CREATE TABLE IF NOT EXISTS audit.new_table (a UInt8) ENGINE = MergeTree ORDER BY a"],
                           "prod")
    alter = cluster_statements(["ALTER TABLE audit.actions ADD COLUMN IF NOT EXISTS x UInt8"], "prod")
    assert alter == ["ALTER TABLE audit.actions_local ON CLUSTER prod ADD COLUMN IF NOT EXISTS x UInt8",
                     "ALTER TABLE audit.actions ON CLUSTER prod ADD COLUMN IF NOT EXISTS x UInt8"]
    setting = cluster_statements(["ALTER TABLE audit.actions MODIFY SETTING old_parts_lifetime = 480"], "prod")
    assert setting == ["ALTER TABLE audit.actions_local ON CLUSTER prod MODIFY SETTING old_parts_lifetime = 480"]


def test_cluster_tables_match_the_single_node_schema_and_take_the_store_insert_path(tmp_path: Path) -> None:
    (tmp_path / "config.xml").write_text(ONE_SHARD_CLUSTER)
    cluster_url = f"chdb://{tmp_path / 'cluster'}?config-file={tmp_path / 'config.xml'}"
    single_url = f"chdb://{tmp_path / 'single'}"
    migrate = [*CLI, "migrate", "--cluster", "audit", "--no-replication", "--no-distributed-ddl"]

    first = run(migrate, cluster_url)
    assert first.returncode == 0, first.stderr
    assert f"{len(load_migrations())} migration(s) applied on cluster audit" in first.stderr
    assert "schema up to date" in run(migrate, cluster_url).stderr
    mixed = run([*CLI, "migrate"], cluster_url)  # single-node migrate on a cluster node: refused
    assert mixed.returncode == 1 and "cluster layout" in mixed.stderr
    assert run([*CLI, "migrate"], single_url).returncode == 0

    single, cluster = insert_path("describe", single_url), insert_path("describe", cluster_url)
    for table in SHARD_KEYS:
        local, distributed, reference = cluster[f"{table}_local"], cluster[table], single[table]
        for key in ("columns", "indexes", "sorting_key", "partition_key", "engine"):
            assert local.get(key) == reference.get(key), (table, key)
        assert distributed["engine"] == "Distributed"
        assert distributed["columns"] == reference["columns"]
    views = {name for name, t in single.items() if t["engine"] == "View"}
    assert views and {name for name, t in cluster.items() if t["engine"] == "View"} == views

    written = insert_path("write", cluster_url)
    for table, (rows, first_write, second_write) in written["inserted"].items():
        assert rows > 0 and first_write == rows and second_write == 0, table
    for table, counts in written["counts"].items():
        assert counts["distributed"] == counts["distributed_final"] == counts["local"] > 0, table
    assert written["counts"]["actions"]["local"] == written["inserted"]["audit.actions"][0]
    for table, (chains, rows, problems) in written["verified"].items():
        assert chains > 0 and rows == written["inserted"][table][0] and problems == 0, table
    assert written["parse_errors"] == [] and written["parsed"] == 2 + len(
        cluster_statements(single_node_statements(), "audit"))
