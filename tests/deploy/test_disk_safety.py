"""Every MergeTree table of the trail keeps the disk reserve and the replaced parts (migration 0004):
a table added later without them would be the one a full disk can break (docs/operations.md)."""

import pytest
from clickhouse_connect.driver.client import Client

pytestmark = pytest.mark.stack


def test_every_trail_table_refuses_inserts_below_the_reserve_and_keeps_replaced_parts(clickhouse: Client) -> None:
    tables = clickhouse.query("SELECT name, engine_full FROM system.tables "
                              "WHERE database = 'audit' AND engine LIKE '%MergeTree'").result_rows
    assert {name for name, _ in tables} >= {"actions", "reference_events", "alerts", "dead_letters", "access_log"}
    missing = [name for name, engine in tables if name != "schema_migrations" and not (
        "min_free_disk_ratio_to_perform_insert = 0.1" in engine and "old_parts_lifetime = 480" in engine)]
    assert not missing, f"tables without the disk settings of 0004_disk_safety.sql: {missing}"
