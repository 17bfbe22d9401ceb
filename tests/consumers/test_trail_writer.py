import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from consumers.hash_chain import GENESIS, content_hash, link
from consumers.pii import PiiMasker
from consumers.reference_state import ReferenceState
from consumers.store_rows import Enricher, Provenance, dead_letter_row
from consumers.trail_writer import ACTIONS, DEAD_LETTERS, TrailWriter, _parameter_parts
from tests.conftest import unique_token

pytestmark = pytest.mark.stack
ENRICHER = Enricher(PiiMasker(bytes(32)), ReferenceState(in_micros=True))


def action(debtor: str, at: datetime, offset: int) -> dict[str, Any]:
    record = {
        "event_id": uuid.uuid4(), "occurred_at": at, "occurred_at_offset_minutes": 480, "produced_at": at,
        "source_system": "t", "agency_id": "AG", "debtor_id": debtor, "account_id": "A", "collector_id": None,
        "action_type": "SMS", "direction": "OUTBOUND", "counterparty": "DEBTOR", "contact_address": None,
        "message_text": "hello", "recording_id": None, "duration_seconds": None, "call_result": None,
        "automated": True, "staff_count": None, "credentials_shown": None, "amount_due_minor": None,
        "currency": None, "due_date": None, "attributes": {},
    }
    return ENRICHER.action_row(record, Provenance("collection.actions", 0, offset, 1, datetime.now(UTC)))


def stored(client: Client, debtor: str) -> list[tuple[Any, ...]]:
    return client.query("SELECT toYYYYMM(occurred_at), chain_seq, prev_hash, row_hash, out_of_order "
                        "FROM audit.actions WHERE debtor_id = {d:String} ORDER BY occurred_at, chain_seq",
                        parameters={"d": debtor}).result_rows


def test_rows_already_stored_are_not_stored_again(clickhouse: Client) -> None:
    debtor = f"TW-{unique_token(8)}"
    t0 = datetime(2024, 5, 1, 2, tzinfo=UTC)
    rows = [action(debtor, t0 + timedelta(minutes=i), i) for i in range(5)]
    writer = TrailWriter(clickhouse, ACTIONS)
    assert writer.write(rows) == 5
    assert writer.write(rows) == 0  # a redelivered batch
    fresh_writer = TrailWriter(clickhouse, ACTIONS)  # a restarted consumer: nothing cached
    assert fresh_writer.write([*rows[3:], action(debtor, t0 + timedelta(minutes=9), 9)]) == 1
    assert [r[1] for r in stored(clickhouse, debtor)] == [1, 2, 3, 4, 5, 6]


def test_a_large_batch_of_distinct_debtors_is_checked_and_stored_once(clickhouse: Client) -> None:
    # 12,000 ids and debtor keys do not fit in one query's text (ClickHouse max_query_size is 256 KiB)
    prefix = f"TWL-{unique_token(8)}"
    t0 = datetime(2024, 7, 1, tzinfo=UTC)
    rows = [action(f"{prefix}-{i:05d}-with-a-long-debtor-identifier", t0 + timedelta(seconds=i), i)
            for i in range(12_000)]
    assert TrailWriter(clickhouse, ACTIONS).write(rows) == 12_000
    assert TrailWriter(clickhouse, ACTIONS).write(rows) == 0  # restarted consumer, whole batch redelivered
    count = clickhouse.query("SELECT count() FROM audit.actions WHERE startsWith(debtor_id, {p:String})",
                             parameters={"p": prefix}).result_rows[0][0]
    assert count == 12_000


def test_a_redelivered_batch_out_of_time_order_is_recognised_row_by_row(clickhouse: Client) -> None:
    # a backfill: a year of a few debtors' history in no order, then part of it again with new rows --
    # its range holds far more of those debtors' rows than the batch, so the read names the ids as well
    debtor = f"TW-{unique_token(8)}"
    t0 = datetime(2023, 1, 1, tzinfo=UTC)
    rows = [action(f"{debtor}-{i % 7}", t0 + timedelta(days=(i * 37) % 365, microseconds=i), i) for i in range(3_000)]
    assert TrailWriter(clickhouse, ACTIONS).write(rows) == 3_000
    new = [action(f"{debtor}-{i}", t0 + timedelta(days=i * 40, microseconds=1), 5_000 + i) for i in range(5)]
    assert TrailWriter(clickhouse, ACTIONS).write(rows[::300] + new) == 5
    assert TrailWriter(clickhouse, ACTIONS).write(rows[::2]) == 0


def test_a_refusal_redelivered_later_is_one_dead_letter(clickhouse: Client) -> None:
    # a consumer that stored a dead letter and died before committing refuses the record again on restart,
    # at a later failed_at: the same source record, one dead letter
    topic = f"tw.{unique_token(8)}"
    first = datetime(2024, 5, 1, 12, tzinfo=UTC)

    def refusal(offset: int, at: datetime) -> dict[str, Any]:
        return dead_letter_row("BAD_MAGIC", "first byte", "audit-store", topic, 3, offset, None, b"k", b"\x01", at)

    assert TrailWriter(clickhouse, DEAD_LETTERS).write([refusal(5, first), refusal(9, first)]) == 2
    later = first + timedelta(minutes=3)
    assert TrailWriter(clickhouse, DEAD_LETTERS).write([refusal(9, later), refusal(5, later), refusal(6, later)]) == 1
    count = clickhouse.query("SELECT count() FROM audit.dead_letters WHERE source_topic = {t:String}",
                             parameters={"t": topic}).result_rows[0][0]
    assert count == 3


def test_duplicates_inside_one_batch_are_stored_once(clickhouse: Client) -> None:
    debtor = f"TW-{unique_token(8)}"
    row = action(debtor, datetime(2024, 5, 1, tzinfo=UTC), 0)
    assert TrailWriter(clickhouse, ACTIONS).write([row, dict(row, kafka_offset=7)]) == 1


def test_each_month_has_its_own_chain_linked_from_genesis(clickhouse: Client) -> None:
    debtor = f"TW-{unique_token(8)}"
    times = [datetime(2024, 5, 31, 23, tzinfo=UTC), datetime(2024, 6, 1, 1, tzinfo=UTC),
             datetime(2024, 5, 30, tzinfo=UTC), datetime(2024, 6, 2, tzinfo=UTC)]
    TrailWriter(clickhouse, ACTIONS).write([action(debtor, t, i) for i, t in enumerate(times)])
    chains: dict[int, list[tuple[Any, ...]]] = {}
    for month, seq, prev, row_hash, _ in sorted(stored(clickhouse, debtor), key=lambda r: (r[0], r[1])):
        chains.setdefault(month, []).append((seq, prev, row_hash))
    assert sorted(chains) == [202405, 202406]
    for chain in chains.values():
        assert [seq for seq, _, _ in chain] == [1, 2]
        assert chain[0][1] == GENESIS and chain[1][1] == chain[0][2]


def test_row_hash_covers_the_stored_content(clickhouse: Client) -> None:
    debtor = f"TW-{unique_token(8)}"
    row = action(debtor, datetime(2024, 7, 1, tzinfo=UTC), 0)
    TrailWriter(clickhouse, ACTIONS).write([row])
    result = clickhouse.query(f"SELECT {', '.join(ACTIONS.columns)} FROM audit.actions "
                              "WHERE debtor_id = {d:String}", parameters={"d": debtor})
    back = dict(zip(result.column_names, result.result_rows[0], strict=True))
    assert back["row_hash"] == link(GENESIS, content_hash(back, ACTIONS.columns))


def test_values_the_native_block_does_not_take_are_inserted_by_clickhouse_connect(clickhouse: Client) -> None:
    debtor = f"TW-{unique_token(8)}"
    rows = [action(debtor, datetime(2024, 7, 2, tzinfo=UTC) + timedelta(minutes=i), i) for i in range(3)]
    for row in rows:
        row["event_id"] = uuid.UUID(row["event_id"])  # the block takes ids as text
    writer = TrailWriter(clickhouse, ACTIONS)
    assert writer.write(rows) == 3 and writer._encode is not None
    assert writer.write(rows) == 0
    assert [r[1] for r in stored(clickhouse, debtor)] == [1, 2, 3]


def test_after_forget_the_chain_continues_from_what_is_stored(clickhouse: Client) -> None:
    debtor = f"TW-{unique_token(8)}"
    t0 = datetime(2024, 8, 1, tzinfo=UTC)
    writer = TrailWriter(clickhouse, ACTIONS)
    writer.write([action(debtor, t0, 0)])
    writer.forget()
    writer.write([action(debtor, t0 + timedelta(hours=1), 1)])
    (_, s1, _, h1, _), (_, s2, p2, _, _) = stored(clickhouse, debtor)
    assert (s1, s2) == (1, 2) and p2 == h1


def test_an_action_older_than_one_already_stored_is_flagged_out_of_order(clickhouse: Client) -> None:
    debtor = f"TW-{unique_token(8)}"
    t0 = datetime(2024, 9, 10, tzinfo=UTC)
    TrailWriter(clickhouse, ACTIONS).write([action(debtor, t0, 0)])
    TrailWriter(clickhouse, ACTIONS).write([action(debtor, t0 - timedelta(days=20), 1),
                                            action(debtor, t0 + timedelta(days=1), 2)])
    flags = {seq_month: flag for seq_month, _, _, _, flag in stored(clickhouse, debtor)}
    assert flags == {202408: True, 202409: False}


def test_a_batch_s_keys_are_bound_in_parts_a_server_accepts() -> None:
    # ClickHouse refuses a form field over 128 KiB (http_max_field_value_size); a debtor appears many times
    keys = [f"debtor-{i % 9_000:05d}-{'长' * 10}" for i in range(30_000)]
    parts = list(_parameter_parts(keys))
    assert parts[0][0] == 0 and parts[-1][1] == len(keys)
    assert all(end == next_start for (_, end), (next_start, _) in itertools.pairwise(parts))
    assert len(parts) > 1
    for start, end in parts:
        assert len(repr(sorted(set(keys[start:end]))).encode()) < 128 * 1024


def reads_of_stored_ids(writer: TrailWriter, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of keys of each "already stored?" read the writer makes from now on."""
    reads: list[int] = []
    read = writer._read_stored

    def counted(keys: list[str], *args: Any, **kwargs: Any) -> list[str]:
        reads.append(len(keys))
        return read(keys, *args, **kwargs)

    monkeypatch.setattr(writer, "_read_stored", counted)
    return reads


def test_rows_later_than_every_stored_row_of_their_debtor_are_stored_without_a_read(
        clickhouse: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    debtor, other = f"TW-{unique_token(8)}", f"TW-{unique_token(8)}"
    t0 = datetime(2024, 8, 1, tzinfo=UTC)
    writer = TrailWriter(clickhouse, ACTIONS)
    reads = reads_of_stored_ids(writer, monkeypatch)
    assert writer.write([action(debtor, t0 + timedelta(minutes=i), i) for i in range(3)]) == 3
    assert writer.write([action(debtor, t0 + timedelta(minutes=i), i) for i in range(3, 6)]
                        + [action(other, t0, 9)]) == 4
    assert reads == []  # nothing stored for `other`, and `debtor`'s rows come after its newest
    assert [r[1] for r in stored(clickhouse, debtor)] == [1, 2, 3, 4, 5, 6]


def test_a_re_sent_or_late_row_is_still_looked_for(clickhouse: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    debtor = f"TW-{unique_token(8)}"
    t0 = datetime(2024, 8, 2, tzinfo=UTC)
    rows = [action(debtor, t0 + timedelta(minutes=i), i) for i in range(5)]
    writer = TrailWriter(clickhouse, ACTIONS)
    assert writer.write(rows) == 5
    reads = reads_of_stored_ids(writer, monkeypatch)
    late = action(debtor, t0 + timedelta(seconds=30), 7)  # not stored, older than the newest
    assert writer.write([rows[2], late, action(debtor, t0 + timedelta(minutes=9), 8)]) == 2
    assert reads == [2]  # the re-sent row and the late one; not the newest
    assert len(stored(clickhouse, debtor)) == 7


def test_after_a_rebalance_rows_another_process_stored_are_found(clickhouse: Client) -> None:
    debtor = f"TW-{unique_token(8)}"
    t0 = datetime(2024, 8, 3, tzinfo=UTC)
    rows = [action(debtor, t0 + timedelta(minutes=i), i) for i in range(6)]
    ours, theirs = TrailWriter(clickhouse, ACTIONS), TrailWriter(clickhouse, ACTIONS)
    assert ours.write(rows[:3]) == 3
    assert theirs.write(rows[:5]) == 2  # the partition went to another process, which stored two more
    ours.forget()  # it comes back: the store forgets what it knew on every assignment
    assert ours.write(rows[3:]) == 1  # the two it stored are found, only the last is new
    assert [r[1] for r in stored(clickhouse, debtor)] == [1, 2, 3, 4, 5, 6]
