"""The tamper-evident hash chain.

Rows of one chain (one chain key -- a debtor, or a reference entity -- within one month partition)
are linked in the order they were stored: row_hash = SHA-256(prev_hash + content_hash), where the
content hash covers every stored column except the two hashes themselves, chain_seq included. A
chain never crosses a month partition, so an insert (atomic per partition) stores a batch's part of
a chain whole or not at all, and dropping an old partition for retention leaves no dangling link.
`verify` recomputes the same values from what ClickHouse returns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

import orjson

from schemas.contract import from_days, to_micros

GENESIS = "0" * 64
CHAIN_COLUMNS = ("prev_hash", "row_hash")


def _plain(value: Any) -> Any:
    """JSON form of the values JSON has no type for (the encoder calls it only for those)."""
    if isinstance(value, datetime):
        return to_micros(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"no canonical form for {type(value).__name__}")


# Compact UTF-8 JSON with sorted map keys: byte for byte what the standard library writes with
# ensure_ascii=False, sort_keys=True, separators=(",", ":") for the values a trail row holds (strings,
# integers, booleans, nulls, maps, arrays, UUIDs, datetimes and dates: tests/consumers/test_hash_chain.py
# compares the two), which is how every stored row_hash was computed, at about half its cost per row.
# Datetimes and dates are passed to _plain, not written in orjson's own ISO form; a UUID is written as
# str(uuid) writes it.
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _encode(values: list[Any] | tuple[Any, ...]) -> bytes:
    return orjson.dumps(values, default=_plain, option=_OPTIONS)


def canonical(values: list[Any] | tuple[Any, ...]) -> str:
    """One text form of a row's values, identical for what we insert and what ClickHouse returns
    (datetimes as UTC microseconds, dates ISO, maps with sorted keys)."""
    return _encode(values).decode()


def content_hash(row: Mapping[str, Any], columns: tuple[str, ...]) -> str:
    return values_hash(_hashed_values(columns)(row))


def values_hash(values: list[Any] | tuple[Any, ...]) -> str:
    """The content hash of a row's values in column order, the two hashes left out."""
    return hashlib.sha256(_encode(values)).hexdigest()


def as_hashed(values: list[Any]) -> list[Any]:
    """A column as its content hashes read it: a column of dates (nulls allowed) as the ISO text _plain
    writes for each, the same JSON without a call back into Python per date (a date's text made once per
    distinct day); any other column as it is."""
    first = next((v for v in values if v is not None), None)
    if type(first) is not date:
        return values
    days = set(values)
    days.discard(None)
    if any(type(day) is not date for day in days):  # a datetime among them hashes as microseconds
        return values
    texts = {day: day.isoformat() for day in days}
    return list(map(texts.get, values))  # None stays None


def hashed_columns(columns: tuple[str, ...]) -> tuple[str, ...]:
    """The columns a content hash covers, in its order."""
    return tuple(c for c in columns if c not in CHAIN_COLUMNS)


@lru_cache(maxsize=32)
def _hashed_values(columns: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A row's values in column order without the two hashes (a tuple, which JSON writes as a list)."""
    hashed = hashed_columns(columns)
    if len(hashed) == 1:
        return lambda row: (row[hashed[0]],)
    return itemgetter(*hashed)


def link(prev_hash: str, row_content_hash: str) -> str:
    return hashlib.sha256(f"{prev_hash}{row_content_hash}".encode()).hexdigest()


def month_of(moment: datetime | int) -> int:
    """The partition a row lands in: toYYYYMM(occurred_at) in UTC; `moment` aware, or microseconds
    since the epoch."""
    if type(moment) is int:
        return _month_of_day(moment // 86_400_000_000)
    utc = moment.astimezone(UTC)  # type: ignore[union-attr]
    return utc.year * 100 + utc.month


@lru_cache(maxsize=4096)
def _month_of_day(days: int) -> int:
    day = from_days(days)
    return day.year * 100 + day.month
