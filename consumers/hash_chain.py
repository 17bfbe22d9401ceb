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
import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

GENESIS = "0" * 64
CHAIN_COLUMNS = ("prev_hash", "row_hash")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def canonical(value: Any) -> str:
    """One text form per value, identical for what we insert and what ClickHouse returns."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, datetime):
        delta = value - _EPOCH
        return str((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)
    if isinstance(value, date | uuid.UUID | int | str):
        return str(value) if not isinstance(value, date) else value.isoformat()
    if isinstance(value, Mapping):
        return json.dumps(sorted(value.items()), ensure_ascii=False)
    if isinstance(value, list | tuple):
        return json.dumps([canonical(v) for v in value], ensure_ascii=False)
    raise TypeError(f"no canonical form for {type(value).__name__}")


def content_hash(row: Mapping[str, Any], columns: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for column in columns:
        if column not in CHAIN_COLUMNS:
            digest.update(f"{column}={canonical(row[column])}\x1e".encode())
    return digest.hexdigest()


def link(prev_hash: str, row_content_hash: str) -> str:
    return hashlib.sha256(f"{prev_hash}{row_content_hash}".encode()).hexdigest()


def month_of(moment: datetime) -> int:
    """The partition a row lands in: toYYYYMM(occurred_at) in UTC."""
    utc = moment.astimezone(UTC)
    return utc.year * 100 + utc.month
