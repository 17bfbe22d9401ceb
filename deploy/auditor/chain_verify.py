"""Recomputing the hash chain (consumers/hash_chain.py) from what ClickHouse returns.

A chain is one key (debtor or entity) in one month of one table. Its rows are read without FINAL, so
a forged copy that shares a genuine row's sort key is seen before ClickHouse merges it away. For
each chain, in `chain_seq` order:

- ALTERED: the row's content no longer hashes to its `row_hash`, or its `row_hash` was recomputed
  and the next row no longer links to it;
- REMOVED: a `chain_seq` is missing between two stored rows (or before the first);
- INSERTED: a second row claims a position another row holds and nothing links to it, or a row
  neither links to its predecessor nor hashes to its own `row_hash`.

Deleting the newest rows of a chain, or rewriting a chain consistently from some row to its end, is
invisible to this check alone; anchoring chain heads outside the database closes that
(docs/tamper-evidence.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from consumers.hash_chain import GENESIS, content_hash, link
from consumers.trail_writer import TrailTable


@dataclass(frozen=True)
class Problem:
    kind: str  # ALTERED, REMOVED or INSERTED
    table: str
    chain_key: str
    month: int
    chain_seq: int
    row_id: str | None
    detail: str


@dataclass
class ChainTally:
    chains: int = 0
    rows: int = 0
    problems: list[Problem] = field(default_factory=list)


def _hashes_ok(row: dict[str, Any], columns: tuple[str, ...]) -> bool:
    return bool(link(row["prev_hash"], content_hash(row, columns)) == row["row_hash"])


def verify_chain(table: TrailTable, key: str, month: int, rows: list[dict[str, Any]]) -> list[Problem]:
    """Problems in one chain; `rows` are every stored row of it, in any order."""
    columns, id_column = table.columns, table.id_column
    ok = {id(row): _hashes_ok(row, columns) for row in rows}
    linked_to = {row["prev_hash"] for row in rows}
    by_seq: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_seq.setdefault(int(row["chain_seq"]), []).append(row)

    def problem(kind: str, seq: int, row: dict[str, Any] | None, detail: str) -> Problem:
        return Problem(kind, table.name, key, month, seq, None if row is None else str(row[id_column]), detail)

    problems: list[Problem] = []
    chain: list[dict[str, Any]] = []
    for seq in sorted(by_seq):
        candidates = by_seq[seq]
        if len(candidates) > 1:  # the genuine row: the chain goes on from it, it links back, it hashes right
            before = chain[-1]["row_hash"] if chain and int(chain[-1]["chain_seq"]) == seq - 1 else (
                GENESIS if seq == 1 else None)
            candidates.sort(key=lambda r: (r["row_hash"] in linked_to, r["prev_hash"] == before, ok[id(r)]),
                            reverse=True)
            problems.extend(problem("INSERTED", seq, r, f"a second row numbered {seq} in this chain, linked to "
                                    "by no row") for r in candidates[1:])
        chain.append(candidates[0])
    expected_seq: int = 1
    expected_prev: str | None = GENESIS
    for position, row in enumerate(chain):
        seq = int(row["chain_seq"])
        if seq > expected_seq:
            gap = f"rows {expected_seq}-{seq - 1} are" if seq - 1 > expected_seq else f"row {expected_seq} is"
            problems.extend(problem("REMOVED", missing, None, f"{gap} missing before row {seq}")
                            for missing in range(expected_seq, seq))
            expected_prev = None  # the removed row's hash is unknown
        links = expected_prev is None or row["prev_hash"] == expected_prev
        following = chain[position + 1] if position + 1 < len(chain) else None
        if not ok[id(row)]:
            if links:
                problems.append(problem("ALTERED", seq, row, "its content no longer matches its row_hash"))
            else:
                problems.append(problem("INSERTED", seq, row, "links to no row before it and its row_hash does "
                                        "not match its content"))
        elif (following is not None and int(following["chain_seq"]) == seq + 1
              and following["prev_hash"] != row["row_hash"] and ok[id(following)]):
            problems.append(problem("ALTERED", seq, row, "its row_hash was recomputed: the next row links to a "
                                    "different hash"))
        expected_seq, expected_prev = seq + 1, row["row_hash"]
    return sorted(problems, key=lambda p: p.chain_seq)


def verify_rows(table: TrailTable, rows: Iterable[dict[str, Any]], tally: ChainTally) -> None:
    """Verify rows sorted by chain key and month (chain after chain), adding to `tally`."""
    for (key, month), chain in _chains(table, rows):
        tally.chains += 1
        tally.rows += len(chain)
        tally.problems.extend(verify_chain(table, key, month, chain))


Chain = tuple[tuple[str, int], list[dict[str, Any]]]  # ((key, month), rows)


def _chains(table: TrailTable, rows: Iterable[dict[str, Any]]) -> Iterator[Chain]:
    current: tuple[str, int] | None = None
    chain: list[dict[str, Any]] = []
    for row in rows:
        key = (row[table.key_column], int(row["_month"]))  # type: ignore[index]
        if key != current:
            if current is not None:
                yield current, chain
            current, chain = key, []
        chain.append(row)
    if current is not None:
        yield current, chain


def verify_trail(client: Any, tables: Iterable[TrailTable], *, start: Any, end: Any, debtor: str | None = None,
                 agency: str | None = None) -> dict[str, ChainTally]:
    """Verify every chain of `tables` that touches the months of [start, end): all of them, a debtor's,
    or those of the debtors an agency acted on in the range (plus the agency's own reference chain).
    Whole month chains are read, streamed chain by chain."""
    tallies: dict[str, ChainTally] = {}
    for table in tables:
        key, time = table.key_column, table.time_column
        parameters: dict[str, Any] = {"start": start, "end": end}
        where = [f"toYYYYMM({time}) BETWEEN toYYYYMM({{start:DateTime64(6, 'UTC')}}) "
                 f"AND toYYYYMM({{end:DateTime64(6, 'UTC')}})"]
        if debtor is not None:
            where.append(f"{key} = {{debtor:String}}")
            parameters["debtor"] = debtor
        elif agency is not None:
            debtors = ("SELECT DISTINCT debtor_id FROM audit.actions WHERE agency_id = {agency:String} AND "
                       "occurred_at >= {start:DateTime64(6, 'UTC')} AND occurred_at < {end:DateTime64(6, 'UTC')}")
            own = f" OR {key} = {{agency:String}}" if table.name == "audit.reference_events" else ""
            where.append(f"({key} IN ({debtors}){own})")
            parameters["agency"] = agency
        sql = (f"SELECT {', '.join(table.columns)}, toYYYYMM({time}) AS _month FROM {table.name} "
               f"WHERE {' AND '.join(where)} ORDER BY {key}, _month, chain_seq")
        tally = tallies[table.name] = ChainTally()
        names = [*table.columns, "_month"]
        with client.query_row_block_stream(sql, parameters=parameters) as stream:
            rows = (dict(zip(names, row, strict=True)) for block in stream for row in block)
            verify_rows(table, rows, tally)
    return tallies
