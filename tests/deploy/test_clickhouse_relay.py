"""The relay serves the embedded chDB over ClickHouse's HTTP interface: clickhouse-connect's ordinary
`http://` client reads and writes what the engine holds, parameters bound, long statements form-encoded,
inserts streamed, and ClickHouse's own errors passed through with their codes."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlparse

import pytest
from clickhouse_connect.driver.binding import use_form_encoding
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from consumers.native_block import block_encoder
from consumers.trail_writer import INSERT_SETTINGS, TextArray
from deploy.clickhouse_client import connect
from deploy.clickhouse_relay import ClickHouseRelay
from deploy.supervisor import EmbeddedStack
from tests.conftest import unique_token

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def relay(stack: EmbeddedStack) -> Iterator[ClickHouseRelay]:
    if not stack.settings.clickhouse.startswith("chdb:"):
        pytest.skip("the relay serves embedded chDB; CLICKHOUSE_URL names a server")
    relay = ClickHouseRelay(urlparse(stack.settings.clickhouse).path).start()
    yield relay
    relay.stop()


@pytest.fixture(scope="module")
def relayed(relay: ClickHouseRelay, clickhouse: Client) -> Iterator[tuple[Client, Client, str]]:
    """(a client through the relay, a client on the engine itself, a scratch database)."""
    database = f"relay_{unique_token()}"
    clickhouse.command(f"CREATE DATABASE {database}")
    try:
        yield connect(relay.url), clickhouse, database
    finally:
        clickhouse.command(f"DROP DATABASE {database}")


def test_rows_inserted_through_the_relay_are_the_engines_rows(relayed: tuple[Client, Client, str]) -> None:
    client, engine, database = relayed
    client.command(f"CREATE TABLE {database}.t (id UUID, text String, at DateTime64(6, 'UTC'), "
                   "attributes Map(String, String)) ENGINE = MergeTree ORDER BY id")
    start = datetime(2024, 3, 10, 6, 59, tzinfo=UTC)
    rows = [[uuid.uuid4(), f"第{i}行 'quoted'\n", start + timedelta(seconds=i, microseconds=7), {"k": str(i)}]
            for i in range(2_000)]
    client.insert(f"{database}.t", rows, column_names=["id", "text", "at", "attributes"])
    query = f"SELECT id, text, at, attributes FROM {database}.t ORDER BY at"
    assert engine.query(query).result_rows == client.query(query).result_rows == [tuple(r) for r in rows]


def test_the_trail_writers_insert_settings_reach_the_engine(relayed: tuple[Client, Client, str]) -> None:
    """Two rows of one sorting key in one insert of a ReplacingMergeTree: ClickHouse keeps one unless the
    insert says optimize_on_insert = 0, as the trail writer's do (it writes no such pair)."""
    client, engine, database = relayed
    client.command(f"CREATE TABLE {database}.r (id String, n UInt8) ENGINE = ReplacingMergeTree ORDER BY id")
    for settings, kept in (({}, 1), (INSERT_SETTINGS, 2)):
        client.command(f"TRUNCATE TABLE {database}.r")
        client.insert(f"{database}.r", [["same", 1], ["same", 2]], column_names=["id", "n"], settings=settings)
        assert engine.query(f"SELECT count() FROM {database}.r").result_rows == [(kept,)]


def test_a_native_block_the_trail_writer_builds_arrives_whole_with_its_settings(
        relayed: tuple[Client, Client, str]) -> None:
    client, engine, database = relayed
    client.command(f"CREATE TABLE {database}.b (id UUID, k LowCardinality(Nullable(String)), at DateTime64(6, 'UTC'), "
                   "day Nullable(Date32), attributes Map(String, String), n Nullable(UInt32)) "
                   "ENGINE = ReplacingMergeTree ORDER BY id")
    names = ["id", "k", "at", "day", "attributes", "n"]
    encode = block_encoder(names, ["UUID", "LowCardinality(Nullable(String))", "DateTime64(6, 'UTC')",
                                   "Nullable(Date32)", "Map(String, String)", "Nullable(UInt32)"])
    assert encode is not None
    same = str(uuid.uuid4())
    columns: list[list[object]] = [
        [same, same, str(uuid.uuid4())], ["外呼", None, "外呼"], [1, 2, 3_000_000],
        [date(2024, 3, 10), None, date(1900, 1, 1)], [{"k": "v"}, {}, {"a": "'quoted'\n"}], [None, 7, 2**32 - 1]]
    client.raw_insert(f"{database}.b", names, insert_block=encode(columns), fmt="Native", settings=INSERT_SETTINGS)
    rows = engine.query(f"SELECT toString(id), k, toUnixTimestamp64Micro(at), day, attributes, n FROM {database}.b "
                        "ORDER BY at").result_rows
    assert rows == list(zip(*columns, strict=True))  # both rows of one id: optimize_on_insert = 0 arrived too


def test_a_statement_runs_while_another_one_does(relay: ClickHouseRelay) -> None:
    """A store process's lookup is not held up by another's insert: the relay runs statements side by side."""
    client, slow_client = connect(relay.url), connect(relay.url)
    slow = threading.Thread(target=slow_client.query, args=("SELECT sleep(2)",))
    slow.start()
    time.sleep(0.3)  # the slow statement is running
    started = time.monotonic()
    assert client.query("SELECT 1").result_rows == [(1,)]
    answered_after = time.monotonic() - started
    assert slow.is_alive(), "the slow statement was still running when the quick one was answered"
    slow.join()
    assert answered_after < 1.0


def test_bound_parameters_small_and_form_encoded(relayed: tuple[Client, Client, str]) -> None:
    client, engine, database = relayed
    client.command(f"CREATE TABLE {database}.p (id String, n UInt32) ENGINE = MergeTree ORDER BY id")
    engine.insert(f"{database}.p", [[f"id-{i}", i] for i in range(3_000)], column_names=["id", "n"])
    few = [f"id-{i}" for i in range(0, 500, 7)]
    result = client.query(f"SELECT sum(n) FROM {database}.p WHERE n >= {{low:UInt32}} AND id IN {{ids:Array(String)}}",
                          parameters={"low": 14, "ids": few})
    assert result.result_rows == [(sum(range(14, 500, 7)),)]
    # parameters over 4 KB travel as multipart form fields, as the store's "already stored?" keys do
    many = [f"id-{i}" for i in range(0, 3_000, 3)]
    assert use_form_encoding("SELECT 1", {"param_ids": str(many)})
    result = client.query(f"SELECT count() FROM {database}.p WHERE id IN {{ids:Array(String)}}",
                          parameters={"ids": many})
    assert result.result_rows == [(len(many),)]


def test_clickhouse_errors_keep_their_code(relayed: tuple[Client, Client, str]) -> None:
    client, _, database = relayed
    with pytest.raises(DatabaseError, match=r"Code: 60\."):  # UNKNOWN_TABLE, as a server says it
        client.query(f"SELECT * FROM {database}.missing")
    with pytest.raises(DatabaseError, match=r"Code: 62\."):  # SYNTAX_ERROR
        client.command("SELEKT 1")
    assert client.query("SELECT 1").result_rows == [(1,)]  # and the relay still serves


TRICKY_TEXTS = ["plain", "o'brien", "back\\slash", "tick`", "tab\there", "line\nbreak", "\\'", "", "中文 債務",
                "quote at end'", "{keys:String}", "\\N"]


def test_text_arrays_the_trail_writer_binds_arrive_whole_through_the_relay_and_in_the_engine(
        relayed: tuple[Client, Client, str]) -> None:
    """consumers.trail_writer.TextArray writes an Array(String) parameter itself: the values must come back
    as they went, through the relay's HTTP interface (a short statement, and one long enough to be sent as a
    form) and through chDB in-process."""
    client, engine, _ = relayed
    many = [f"{text}-{i}" for i in range(2_000) for text in TRICKY_TEXTS[:2]]
    for values in (TRICKY_TEXTS, many):
        for reader in (client, engine):
            rows = reader.query("SELECT arrayJoin({keys:Array(String)})", parameters={"keys": TextArray(values)})
            assert [row[0] for row in rows.result_rows] == values
