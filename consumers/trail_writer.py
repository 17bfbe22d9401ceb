"""Writing rows to a trail table exactly once, hash-chained.

For each batch: read the chain heads of its keys (cached), which also tell each key's newest stored time;
ask ClickHouse which of the rows that may be stored already (no later than that time) are (a redelivered or
re-sent event) and drop those; link the rest into their chains, continuing from each chain's stored head;
insert the batch column-wise in one INSERT. After a failed insert the cache is dropped, because what was
stored is then unknown, and the heads are read again.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.insert import InsertContext

from consumers.hash_chain import GENESIS, as_hashed, hashed_columns, link, month_of, values_hash
from consumers.native_block import block_encoder
from schemas.contract import as_micros, from_micros

_ACTION_COLUMNS = (
    "event_id", "occurred_at", "occurred_offset_minutes", "produced_at", "source_system", "agency_id", "debtor_id",
    "account_id", "collector_id", "action_type", "direction", "counterparty", "contact_address_hash",
    "contact_address_last4", "message_text", "message_text_normalized", "pii_redactions", "recording_id",
    "duration_seconds", "call_result", "automated", "staff_count", "credentials_shown", "amount_due_minor",
    "currency", "due_date", "attributes", "jurisdiction", "debtor_timezone", "timezone_source", "local_time",
    "local_date", "local_hour", "local_weekday", "agency_license_status", "collector_cert_status", "out_of_order",
)
_REFERENCE_COLUMNS = (
    "event_id", "kind", "occurred_at", "occurred_offset_minutes", "produced_at", "entity_key", "source_system",
    "debtor_id", "account_id", "agency_id", "collector_id", "timezone", "phone_region", "jurisdiction", "channels",
    "contact_address_hash", "contact_address_last4", "counterparty", "complaint_id", "complex", "plan_id", "status",
    "valid_from", "valid_to", "attributes",
)
_ALERT_COLUMNS = (
    "alert_id", "rule_id", "rule_version", "severity", "jurisdiction", "debtor_id", "agency_id", "collector_id",
    "event_ids", "summary", "citation", "late", "occurred_at", "detected_at", "evidence",
)
_TRAIL = ("chain_seq", "prev_hash", "row_hash", "kafka_topic", "kafka_partition", "kafka_offset", "schema_id",
          "ingested_at")


@dataclass(frozen=True)
class TrailTable:
    name: str
    id_column: str
    key_column: str | None  # the chain key; None for tables without a chain
    time_column: str
    columns: tuple[str, ...]
    id_is_uuid: bool = True
    # What an already-stored copy of a row shares with it besides the id, and the table's order begins
    # with: the "already stored?" lookup reads those keys over that range (a primary-key range scan).
    lookup_key: str = "debtor_id"
    lookup_range: tuple[str, str] = ("occurred_at", "DateTime64(6, 'UTC')")


ACTION_COLUMNS = _ACTION_COLUMNS + _TRAIL
ACTIONS = TrailTable("audit.actions", "event_id", "debtor_id", "occurred_at", ACTION_COLUMNS)
REFERENCE_EVENTS = TrailTable("audit.reference_events", "event_id", "entity_key", "occurred_at",
                              _REFERENCE_COLUMNS + _TRAIL, lookup_key="entity_key")
ALERTS = TrailTable("audit.alerts", "alert_id", "debtor_id", "occurred_at", _ALERT_COLUMNS + _TRAIL, id_is_uuid=False)
# A dead letter's id derives from its source record; failed_at is when it was (last) refused, so a
# redelivered refusal differs there and is found by its source offset instead.
DEAD_LETTERS = TrailTable("audit.dead_letters", "dead_letter_id", None, "failed_at", (
    "dead_letter_id", "reason", "detail", "consumer_group", "source_topic", "source_partition", "source_offset",
    "schema_id", "raw_key_base64", "raw_value_base64", "failed_at"),
    lookup_key="source_topic", lookup_range=("source_offset", "UInt64"))

# A batch's keys (and ids) are each bound as one parameter, which clickhouse-connect sends to a server as a
# form field once it is over 4 KB; ClickHouse caps a form field at 128 KiB (http_max_field_value_size), so
# a batch with more than that is read in parts.
_PARAMETER_BYTES = 96 * 1024

# ClickHouse would look for rows of equal sorting key within each insert of a ReplacingMergeTree
# (optimize_on_insert): a batch here holds none, each id being written once, and the search took a third
# of the engine's insert time (3.0 against 1.9 us a row for batches of 10,000 actions, docs/operations.md).
INSERT_SETTINGS = {"optimize_on_insert": 0}

Head = tuple[int, str]  # (chain_seq, row_hash) of the newest stored row of a chain


class TextArray:
    """Strings bound as one Array(String) parameter, written as clickhouse-connect writes a list of them
    (each quoted, with backslash, quote, backtick, tab and newline escaped by a backslash) but in C, by
    str.replace over the values joined: clickhouse-connect escapes character by character in Python,
    about 3% of a store process's CPU for the keys of each batch's two reads (7.0 against 0.2 ms for 6,000
    keys). clickhouse-connect binds a value of a type it does not know as its str();
    tests/deploy/test_clickhouse_relay.py reads such a parameter back through chDB and through the relay."""

    __slots__ = ("text",)

    def __init__(self, values: Iterable[str]) -> None:
        values = list(values)
        joined = "\0".join(values)  # NUL ends a value, unless a value holds one itself (or there is none)
        if values and joined.count("\0") == len(values) - 1:
            self.text = "['" + _escaped(joined).replace("\0", "', '") + "']"
        else:
            self.text = "[" + ", ".join(["'" + _escaped(value) + "'" for value in values]) + "]"

    def __str__(self) -> str:
        return self.text


def _escaped(text: str) -> str:
    """`text` inside a ClickHouse string literal of a bound parameter, as clickhouse-connect escapes it."""
    return text.replace("\\", "\\\\").replace("'", "\\'").replace("`", "\\`").replace("\t", "\\\t") \
        .replace("\n", "\\\n")


Columns = dict[str, list[Any]]  # column name -> its values, one per row


def columns_of(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> Columns:
    """Rows (dicts) as the table's columns."""
    if not rows:
        return {c: [] for c in columns}
    return dict(zip(columns, map(list, zip(*map(itemgetter(*columns), rows), strict=True)), strict=True))


class TrailWriter:
    def __init__(self, client: Client, table: TrailTable, max_cached_keys: int = 500_000) -> None:
        self.client = client
        self.table = table
        self._heads: OrderedDict[str, dict[int, Head]] = OrderedDict()  # key -> month -> head
        self._latest: dict[str, int] = {}  # key -> newest event time stored, in microseconds (out_of_order,
        # and which rows may be stored already: _maybe_stored)
        self._max_cached = max_cached_keys
        self._hashed = hashed_columns(table.columns)
        self._insert: InsertContext | None = None  # the table's column types, asked for once, not per insert
        self._encode: Callable[[list[list[Any]]], bytes] | None = None  # its Native block (native_block.py)

    def forget(self) -> None:
        """Drop cached chain heads (after a failed insert: what was stored is unknown)."""
        self._heads.clear()
        self._latest.clear()

    def write(self, rows: list[dict[str, Any]]) -> int:
        """Store rows not stored yet, in the given (offset) order; returns how many were inserted."""
        return self.write_columns(columns_of(rows, self.table.columns))

    def write_columns(self, columns: Columns) -> int:
        """`write` for a batch given as columns (every column of the table; the chain columns and
        `out_of_order` are filled in here). Instants may be aware datetimes or microseconds, ids UUIDs
        or their canonical text."""
        table = self.table
        ids = columns[table.id_column]
        if not ids:
            return 0
        if table.id_is_uuid:
            ids = [i if type(i) is str else str(i) for i in ids]
        stored = self._stored_ids(*self._maybe_stored(columns, ids))
        fresh, seen = [], set()
        for index, row_id in enumerate(ids):
            if row_id not in stored and row_id not in seen:
                seen.add(row_id)
                fresh.append(index)
        if not fresh:
            return 0
        if len(fresh) < len(ids):
            columns = {name: [values[i] for i in fresh] for name, values in columns.items()}
        if table.key_column is not None:
            self._chain(columns)
        self._insert_columns([columns[c] for c in table.columns])
        while len(self._heads) > self._max_cached:  # evict only once the batch is chained and stored
            evicted, _ = self._heads.popitem(last=False)
            self._latest.pop(evicted, None)
        return len(fresh)

    def _insert_columns(self, data: list[list[Any]]) -> None:
        """One INSERT of the columns: a Native block built by native_block.py when the table's types and
        these values allow it, else clickhouse-connect's own encoding of them."""
        table = self.table
        if self._insert is None:
            self._insert = self.client.create_insert_context(table.name, column_names=table.columns,
                                                             column_oriented=True, settings=INSERT_SETTINGS)
            self._encode = block_encoder(table.columns, [t.insert_name for t in self._insert.column_types])
        block = None
        if self._encode is not None:
            with contextlib.suppress(TypeError):  # a value the block does not take (a uuid.UUID, a datetime)
                block = self._encode(data)
        if block is None:
            self._insert.data = None  # a failed insert may have left its data
            self.client.insert(data=data, context=self._insert)
        else:
            self.client.raw_insert(table.name, table.columns, insert_block=block, fmt="Native",
                                   settings=INSERT_SETTINGS)

    def _chain(self, columns: Columns) -> None:
        """Link the rows into their chains, in order: chain_seq, prev_hash, row_hash (and out_of_order:
        arrived after a later row of the same key) of each, continuing from each chain's head. The sequence
        numbers and flags come first (they depend on no hash), so each row's hashed values are a tuple of
        one transposition."""
        table, heads, latest_of = self.table, self._heads, self._latest
        keys = columns[table.key_column]  # type: ignore[index]
        times = list(map(as_micros, columns[table.time_column]))
        distinct = set(keys)
        self._load_heads(distinct)
        flags = "out_of_order" in columns
        months = list(map(month_of, times))
        seqs, out_of_order = [], []
        last_seq = {key: {month: head[0] for month, head in heads[key].items()} for key in distinct}
        for key, when, month in zip(keys, times, months, strict=True):
            seq = last_seq[key][month] = last_seq[key].get(month, 0) + 1
            seqs.append(seq)
            latest = latest_of.get(key)  # every chain's newest time: _maybe_stored relies on it
            if flags:
                out_of_order.append(latest is not None and when < latest)
            if latest is None or when > latest:
                latest_of[key] = when
        columns["chain_seq"] = seqs
        if flags:
            columns["out_of_order"] = out_of_order
        prevs, hashes = [], []
        contents = map(values_hash, zip(*[as_hashed(columns[c]) for c in self._hashed], strict=True))
        for key, month, seq, content in zip(keys, months, seqs, contents, strict=True):
            chain = heads[key]
            prev = chain[month][1] if month in chain else GENESIS
            row_hash = link(prev, content)
            chain[month] = (seq, row_hash)
            prevs.append(prev)
            hashes.append(row_hash)
        for key in distinct:
            heads.move_to_end(key)
        columns.update(prev_hash=prevs, row_hash=hashes)

    def _maybe_stored(self, columns: Columns, ids: list[Any]) -> tuple[Columns, list[Any]]:
        """The rows that may be stored already (their lookup columns, their ids). A stored copy of a row has
        its id, chain key and time; the writer knows each chain key's newest stored time (read with the
        chain heads, kept as it stores, forgotten whenever what is stored may have changed without it:
        a failed insert, a rebalance), so a row later than that, or of a key with nothing stored, is new.
        Events come in time order per debtor, and then no batch needs the read at all; a redelivery, a
        re-send or an event arriving late is read for."""
        table = self.table
        if table.key_column is None or (table.lookup_key, table.lookup_range[0]) != (table.key_column,
                                                                                    table.time_column):
            return columns, ids
        keys = columns[table.key_column]
        self._load_heads(set(keys))
        latest = self._latest
        maybe = [i for i, (key, when) in enumerate(zip(keys, map(as_micros, columns[table.time_column]), strict=True))
                 if (newest := latest.get(key)) is not None and when <= newest]
        if len(maybe) == len(ids):
            return columns, ids
        lookup = (table.lookup_key, table.lookup_range[0])
        return {c: [columns[c][i] for i in maybe] for c in lookup}, [ids[i] for i in maybe]

    def _stored_ids(self, columns: Columns, ids: list[Any]) -> set[Any]:
        """The ids of these rows that are already stored: every stored id of the rows' keys over the
        rows' range, kept if it is one of theirs. One primary-key range read per batch, not a list of
        thousands of ids for ClickHouse to parse (about 5x the cost). When the range holds far more of
        those keys than the batch (history sent again in no time order), the reads name the ids too."""
        table = self.table
        range_values = columns[table.lookup_range[0]]
        if table.lookup_range[1].startswith("DateTime"):
            range_values = list(map(as_micros, range_values))
        order = sorted(range(len(ids)), key=range_values.__getitem__)
        keys = [columns[table.lookup_key][i] for i in order]
        stored: list[str] = []
        for start, end in _parameter_parts(keys):
            part = order[start:end]
            low, high = range_values[part[0]], range_values[part[-1]]
            limit = 2 * (end - start) + 1_000
            found = self._read_stored(keys[start:end], low, high, limit=limit)
            if len(found) >= limit:  # the ids are one parameter too: read in parts under the same bound
                part_ids = [str(ids[i]) for i in part]
                found = [i for first, last in _parameter_parts(part_ids)
                         for i in self._read_stored(keys[start + first:start + last],
                                                    range_values[part[first]], range_values[part[last - 1]],
                                                    ids=part_ids[first:last])]
            stored += found
        return set(stored)

    def _read_stored(self, keys: list[str], low: Any, high: Any, limit: int | None = None,
                     ids: list[str] | None = None) -> list[str]:
        """Stored ids (as text) of `keys` between `low` and `high` (of those `ids`, if given); at most
        `limit` of them."""
        table = self.table
        range_column, range_type = table.lookup_range
        where = f"{table.lookup_key} IN {{keys:Array(String)}} AND {range_column} BETWEEN {{low:{range_type}}} " \
                f"AND {{high:{range_type}}}"
        if range_type.startswith("DateTime"):
            low, high = from_micros(low), from_micros(high)
        parameters: dict[str, Any] = {"keys": TextArray(set(keys)), "low": low, "high": high}
        if ids is not None:
            where += f" AND {table.id_column} IN {{ids:Array({'UUID' if table.id_is_uuid else 'String'})}}"
            parameters["ids"] = ids
        result = self.client.query(f"SELECT toString({table.id_column}) FROM {table.name} WHERE {where}"
                                   + ("" if limit is None else f" LIMIT {int(limit)}"), parameters=parameters)
        return [row[0] for row in result.result_rows]

    def _load_heads(self, keys: set[str]) -> None:
        missing = [k for k in keys if k not in self._heads]
        if missing:
            key_column, time_column = self.table.key_column, self.table.time_column
            for k in missing:
                self._heads[k] = {}
            for start, end in _parameter_parts(missing):
                result = self.client.query(
                    f"SELECT {key_column}, toYYYYMM({time_column}) AS month, max(chain_seq), "
                    f"argMax(row_hash, chain_seq), toUnixTimestamp64Micro(max({time_column})) "
                    f"FROM {self.table.name} WHERE {key_column} IN {{keys:Array(String)}} GROUP BY {key_column}, month",
                    parameters={"keys": TextArray(missing[start:end])})
                for key, month, seq, row_hash, latest in result.result_rows:
                    self._heads[key][int(month)] = (int(seq), row_hash)
                    if key not in self._latest or latest > self._latest[key]:
                        self._latest[key] = int(latest)


def _parameter_parts(keys: list[str]) -> Iterator[tuple[int, int]]:
    """Spans [start, end) of `keys` (debtor keys, or ids) whose distinct values, bound as one Array
    parameter, stay under _PARAMETER_BYTES."""
    seen: set[str] = set()
    start = size = 0
    for i, key in enumerate(keys):
        if key not in seen:
            size += len(key.encode()) + 4  # quotes, comma, space
            if size > _PARAMETER_BYTES and seen:
                yield start, i
                start, seen, size = i, set(), len(key.encode()) + 4
            seen.add(key)
    if keys:
        yield start, len(keys)
