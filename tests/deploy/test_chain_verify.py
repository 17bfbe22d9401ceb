"""The chain verifier on hand-built chains: each kind of tampering is named, nothing else is."""

from __future__ import annotations

from typing import Any

from consumers.hash_chain import GENESIS, content_hash, link
from consumers.trail_writer import TrailTable
from deploy.auditor.chain_verify import verify_chain

TABLE = TrailTable("t", "id", "key", "at", ("id", "key", "at", "text", "chain_seq", "prev_hash", "row_hash"))


def chain(n: int) -> list[dict[str, Any]]:
    rows, prev = [], GENESIS
    for seq in range(1, n + 1):
        row = {"id": f"e{seq}", "key": "D1", "at": seq, "text": f"message {seq}", "chain_seq": seq, "prev_hash": prev}
        row["row_hash"] = prev = link(prev, content_hash(row, TABLE.columns))
        rows.append(row)
    return rows


def found(rows: list[dict[str, Any]]) -> list[tuple[str, int, str | None]]:
    return [(p.kind, p.chain_seq, p.row_id) for p in verify_chain(TABLE, "D1", 202405, rows)]


def forged(after: dict[str, Any], seq: int, prev_hash: str | None = None) -> dict[str, Any]:
    row = {**after, "id": "forged", "text": "forged", "chain_seq": seq, "prev_hash": prev_hash or after["row_hash"]}
    row["row_hash"] = link(row["prev_hash"], content_hash(row, TABLE.columns))  # a forger who hashes correctly
    return row


def test_an_intact_chain_in_any_order_has_no_problems() -> None:
    assert found(list(reversed(chain(5)))) == []


def test_altered_content_is_named() -> None:
    rows = chain(5)
    rows[2]["text"] = "changed"
    assert found(rows) == [("ALTERED", 3, "e3")]


def test_altered_content_with_a_recomputed_hash_is_named_by_the_broken_link() -> None:
    rows = chain(5)
    rows[2]["text"] = "changed"
    rows[2]["row_hash"] = link(rows[2]["prev_hash"], content_hash(rows[2], TABLE.columns))
    assert found(rows) == [("ALTERED", 3, "e3")]


def test_removed_rows_are_named_by_position() -> None:
    rows = chain(6)
    assert found(rows[:1] + rows[3:]) == [("REMOVED", 2, None), ("REMOVED", 3, None)]
    assert found(rows[1:]) == [("REMOVED", 1, None)]


def test_a_forged_row_claiming_a_held_position_is_inserted() -> None:
    rows = chain(5)
    assert found([*rows, forged(rows[1], 3)]) == [("INSERTED", 3, "forged")]


def test_a_forged_row_that_links_nowhere_is_inserted() -> None:
    rows = chain(5)
    bad = forged(rows[4], 6, prev_hash="f" * 64)
    bad["row_hash"] = "0" * 64
    assert found([*rows, bad]) == [("INSERTED", 6, "forged")]


def test_all_three_at_once() -> None:
    rows = chain(8)
    rows[1]["text"] = "changed"
    intruder = forged(rows[2], 4)
    assert found([r for r in rows if r["chain_seq"] != 6] + [intruder]) == [
        ("ALTERED", 2, "e2"), ("INSERTED", 4, "forged"), ("REMOVED", 6, None)]


def test_the_documented_blind_spots() -> None:
    """A truncated tail and a correctly hashed append look like a shorter or longer honest chain:
    only anchoring the chain head outside the database reveals them (docs/tamper-evidence.md)."""
    rows = chain(5)
    assert found(rows[:-1]) == []
    assert found([*rows, forged(rows[4], 6)]) == []
