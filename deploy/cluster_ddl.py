"""Cluster DDL generated from the single-node migrations, never hand-copied.

For a named cluster each trail table `audit.X` becomes
- `audit.X_local` on every node: the same columns, indexes, partitioning and ordering, with the
  engine's Replicated twin (`ReplacingMergeTree` -> `ReplicatedReplacingMergeTree(path, '{replica}')`,
  path `/clickhouse/tables/{shard}/audit/X_local`);
- `audit.X`, a `Distributed` table over the locals, sharded by the key in SHARD_KEYS.
Every role keeps using the names it uses on one node (`audit.actions`...), so the store consumer
writes to the Distributed table and reads its "already stored?" checks and chain heads through it.

A sharding key must be a function of the table's ORDER BY prefix: ReplacingMergeTree collapses a
re-sent row only within one shard, so every copy of a row must land on the same shard. Sharding the
trail by debtor also keeps a debtor's actions, alerts and chains on one shard.
Views are created on every node and read the Distributed tables. ALTER TABLE is applied to the
local and the Distributed table, except MODIFY SETTING (MergeTree settings: the local table only).
Anything else in a migration is refused, not guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SHARD_KEYS = {
    "actions": "cityHash64(debtor_id)",
    "alerts": "cityHash64(debtor_id)",
    "reference_events": "cityHash64(entity_key)",
    "dead_letters": "cityHash64(source_topic, source_partition)",
    "access_log": "rand()",  # append-only MergeTree: nothing to collapse, spread evenly
}
LOCAL_SUFFIX = "_local"
LEDGER_PATH = "/clickhouse/tables/all/audit/schema_migrations"  # no {shard}: one copy on every node

_CREATE_DATABASE = re.compile(r"^CREATE DATABASE IF NOT EXISTS (\w+)$", re.S)
_CREATE_TABLE = re.compile(
    r"^CREATE TABLE IF NOT EXISTS (?P<db>\w+)\.(?P<table>\w+)\s*(?P<body>\(.*\))\s*"
    r"ENGINE\s*=\s*(?P<engine>\w*MergeTree)(?:\((?P<args>[^)]*)\))?(?P<rest>\s.*)$", re.S)
_CREATE_VIEW = re.compile(r"^CREATE VIEW IF NOT EXISTS (?P<name>\w+\.\w+)\s+AS\s+(?P<select>.*)$", re.S)
_ALTER_TABLE = re.compile(r"^ALTER TABLE (?P<db>\w+)\.(?P<table>\w+)\s+(?P<change>.*)$", re.S)


class ClusterDdlError(ValueError):
    pass


def cluster_statements(statements: Iterable[str], cluster: str, *, replicated: bool = True,
                       distributed_ddl: bool = True) -> list[str]:
    """The cluster form of single-node statements. `replicated=False` keeps the plain engines (shards
    of one replica each); `distributed_ddl=False` drops ON CLUSTER (apply on each node yourself)."""
    if not re.fullmatch(r"\w+", cluster):
        raise ClusterDdlError(f"cluster name {cluster!r}: letters, digits and _ only")
    on = f" ON CLUSTER {cluster}" if distributed_ddl else ""
    out: list[str] = []
    for statement in statements:
        if match := _CREATE_DATABASE.match(statement):
            out.append(f"CREATE DATABASE IF NOT EXISTS {match[1]}{on}")
        elif match := _CREATE_TABLE.match(statement):
            out.extend(_table(match, cluster, on, replicated))
        elif match := _CREATE_VIEW.match(statement):
            out.append(f"CREATE VIEW IF NOT EXISTS {match['name']}{on} AS {match['select']}")
        elif match := _ALTER_TABLE.match(statement):
            db, table, change = match["db"], match["table"], match["change"]
            out.append(f"ALTER TABLE {db}.{table}{LOCAL_SUFFIX}{on} {change}")
            if not change.startswith("MODIFY SETTING"):  # a Distributed table has no MergeTree settings
                out.append(f"ALTER TABLE {db}.{table}{on} {change}")
        else:
            first_line = statement.strip().splitlines()[0]
            raise ClusterDdlError(f"no cluster form for: {first_line!r} (CREATE DATABASE/TABLE/VIEW IF NOT "
                                  "EXISTS and ALTER TABLE are supported)")
    return out


def ledger_statements(cluster: str, *, replicated: bool = True, distributed_ddl: bool = True) -> list[str]:
    """The migrations ledger on every node: replicated to all of them, so `migrate --cluster` can
    run against any node and see what was applied."""
    on = f" ON CLUSTER {cluster}" if distributed_ddl else ""
    engine = f"ReplicatedMergeTree('{LEDGER_PATH}', '{{replica}}')" if replicated else "MergeTree"
    return [f"CREATE DATABASE IF NOT EXISTS audit{on}",
            f"CREATE TABLE IF NOT EXISTS audit.schema_migrations{on} (version UInt32, name String, checksum String,"
            f" applied_at DateTime64(3, 'UTC')) ENGINE = {engine} ORDER BY version"]


def _table(match: re.Match[str], cluster: str, on: str, replicated: bool) -> list[str]:
    db, table = match["db"], match["table"]
    if table not in SHARD_KEYS:
        raise ClusterDdlError(f"{db}.{table}: no sharding key; add one to SHARD_KEYS in deploy/cluster_ddl.py "
                              "(a function of its ORDER BY prefix)")
    local = f"{table}{LOCAL_SUFFIX}"
    engine, args = match["engine"], (match["args"] or "").strip()
    if replicated:
        replica_args = [f"'/clickhouse/tables/{{shard}}/{db}/{local}'", "'{replica}'"] + ([args] if args else [])
        engine_clause = f"Replicated{engine}({', '.join(replica_args)})"
    else:
        engine_clause = f"{engine}({args})" if args else engine
    return [
        f"CREATE TABLE IF NOT EXISTS {db}.{local}{on}\n{match['body']}\nENGINE = {engine_clause}{match['rest']}",
        f"CREATE TABLE IF NOT EXISTS {db}.{table}{on} AS {db}.{local}\n"
        f"ENGINE = Distributed({cluster}, {db}, {local}, {SHARD_KEYS[table]})",
    ]
