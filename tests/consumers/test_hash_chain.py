import json
import random
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from consumers.hash_chain import (
    GENESIS,
    as_hashed,
    canonical,
    content_hash,
    hashed_columns,
    link,
    month_of,
    values_hash,
)
from consumers.trail_writer import ACTIONS, ALERTS, DEAD_LETTERS, REFERENCE_EVENTS
from schemas.contract import to_micros

COLUMNS = ("id", "when", "text", "flag", "tags", "attrs", "missing", "chain_seq", "prev_hash", "row_hash")
ROW = {"id": uuid.UUID(int=1), "when": datetime(2024, 5, 1, 2, tzinfo=UTC), "text": "您好", "flag": True,
       "tags": ["a", "b"], "attrs": {"k": "v", "a": "z"}, "missing": None, "chain_seq": 1,
       "prev_hash": GENESIS, "row_hash": ""}


def test_canonical_forms_are_stable() -> None:
    assert canonical([None, True, 3, "您好"]) == '[null,true,3,"您好"]'
    assert canonical([datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC), date(2024, 5, 1), uuid.UUID(int=1)]) == \
        '[1000000,"2024-05-01","00000000-0000-0000-0000-000000000001"]'
    assert canonical([{"b": "1", "a": "2"}]) == canonical([{"a": "2", "b": "1"}])
    with pytest.raises(TypeError):
        canonical([object()])


@pytest.mark.parametrize(("column", "value"), [
    ("id", uuid.UUID(int=2)), ("when", datetime(2024, 5, 1, 2, 0, 0, 1, tzinfo=UTC)), ("text", "您好 "),
    ("flag", False), ("tags", ["b", "a"]), ("attrs", {"k": "v"}), ("missing", ""), ("chain_seq", 2),
])
def test_any_change_to_a_stored_column_changes_the_content_hash(column: str, value: object) -> None:
    assert content_hash({**ROW, column: value}, COLUMNS) != content_hash(ROW, COLUMNS)


def test_the_hashes_themselves_are_not_part_of_the_content() -> None:
    assert content_hash({**ROW, "prev_hash": "x", "row_hash": "y"}, COLUMNS) == content_hash(ROW, COLUMNS)


def test_link_depends_on_the_previous_hash() -> None:
    content = content_hash(ROW, COLUMNS)
    assert link(GENESIS, content) != link("1" * 64, content)
    assert len(link(GENESIS, content)) == 64


def test_month_of_is_the_utc_month() -> None:
    assert month_of(datetime(2024, 5, 31, 23, 30, tzinfo=UTC)) == 202405
    assert month_of(to_micros(datetime(2024, 5, 31, 23, 59, 59, 999_999, tzinfo=UTC))) == 202405
    assert month_of(to_micros(datetime(2024, 6, 1, tzinfo=UTC))) == 202406
    assert month_of(to_micros(datetime(1969, 12, 31, 23, 59, tzinfo=UTC))) == 196912


def test_a_row_hashes_alike_with_instants_as_microseconds_and_ids_as_text() -> None:
    """The store keeps an action's instants in microseconds and its id as text (a plain decode); verify
    recomputes the hash from what ClickHouse returns, datetimes and UUIDs."""
    plain = {**ROW, "id": str(ROW["id"]), "when": to_micros(ROW["when"])}
    assert content_hash(plain, COLUMNS) == content_hash(ROW, COLUMNS)
    assert values_hash([plain[c] for c in hashed_columns(COLUMNS)]) == content_hash(ROW, COLUMNS)


def _stdlib_plain(value: Any) -> Any:
    if isinstance(value, datetime):
        delta = value - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(type(value).__name__)


# How every row_hash stored so far was computed: the standard library's encoder with these options.
_STDLIB = json.JSONEncoder(default=_stdlib_plain, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
# every character JSON escapes or might: ASCII and Latin-1 (controls, quote, backslash, DEL), line and
# paragraph separators, BOM, full-width punctuation, CJK, the last BMP character, astral emoji
_CHARACTERS = [chr(c) for c in (*range(0x100), 0x2028, 0x2029, 0xFEFF, 0xFF0C, 0x3002, 0x4E2D, 0x50B5, 0xFFFF,
                                0x1F600, 0x10FFFF)]


def _random_value(rng: random.Random) -> Any:
    def text() -> str:
        if rng.random() < 0.2:  # any code point but a lone surrogate (Avro strings are UTF-8)
            return "".join(chr(rng.choice((rng.randrange(0xD800), rng.randrange(0xE000, 0x110000))))
                           for _ in range(rng.randrange(8)))
        return "".join(rng.choice(_CHARACTERS) for _ in range(rng.randrange(12)))

    kind = rng.randrange(10)
    if kind == 0:
        return text()
    if kind == 1:
        return rng.choice((-(2**63), 2**63 - 1, 2**64 - 1, 0, rng.randrange(-(2**63), 2**64)))
    if kind == 2:
        return rng.choice((True, False, None))
    if kind == 3:
        return uuid.UUID(int=rng.getrandbits(128))
    if kind == 4:
        return date.fromordinal(rng.randrange(1, date.max.toordinal() + 1))
    if kind == 5:
        zone = rng.choice((UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))))
        since_epoch = timedelta(microseconds=rng.randrange(-(2**51), 2**53))  # about 1898 to 2255
        return datetime(1970, 1, 1, tzinfo=UTC).astimezone(zone) + since_epoch
    if kind == 6:
        return {text(): text() for _ in range(rng.randrange(5))}
    if kind == 7:
        return [rng.choice((text(), uuid.UUID(int=rng.getrandbits(128)))) for _ in range(rng.randrange(4))]
    return text()


@pytest.mark.parametrize("column", [
    [date(2024, 5, 1), None, date(1900, 1, 1), date(2024, 5, 1)],  # dates: written as their text
    [None, None],
    [datetime(2024, 5, 1, 2, tzinfo=UTC), date(2024, 5, 1)],  # a datetime first: as it is
    [date(2024, 5, 1), datetime(2024, 5, 1, 2, tzinfo=UTC)],  # a datetime later: as it is too
    [1, 2, None], ["2024-05-01"],
])
def test_a_column_as_hashed_gives_the_rows_the_content_hashes_they_had(column: list[Any]) -> None:
    hashed = as_hashed(column)
    assert [values_hash([v, "x"]) for v in hashed] == [values_hash([v, "x"]) for v in column]
    present = [v for v in column if v is not None]
    assert (hashed is not column) == (bool(present) and all(type(v) is date for v in present))


def test_the_canonical_form_is_byte_for_byte_the_one_stored_hashes_were_computed_with() -> None:
    """The values a trail row can hold (strings with any character, 64-bit integers, maps, arrays, UUIDs,
    datetimes in any offset, dates) encode to the same bytes as the encoder the stored chains used."""
    rng = random.Random(20261123)
    for _ in range(20_000):
        values = [_random_value(rng) for _ in range(rng.randrange(13))]
        assert canonical(values).encode() == _STDLIB.encode(values).encode(), values


@pytest.mark.stack
def test_trail_tables_hold_no_floating_point_columns(clickhouse: Any) -> None:
    """The canonical form is the standard library's for every type a trail row holds; floats are not
    among them (JSON encoders write some floats differently), so a float column would need a canonical
    form of its own before it is added."""
    tables = [table.name.split(".")[1] for table in (ACTIONS, REFERENCE_EVENTS, ALERTS, DEAD_LETTERS)]
    typed = clickhouse.query("SELECT table, name, type FROM system.columns WHERE database = 'audit' "
                             "AND table IN {tables:Array(String)}", parameters={"tables": tables}).result_rows
    assert {table for table, _, _ in typed} == set(tables)
    assert [row for row in typed if "Float" in row[2] or "Decimal" in row[2]] == []
