"""A local durable outbox (SQLite): events accepted while Kafka cannot take them wait here, on disk,
in the order they were accepted, until the producer delivers them.

One outbox file belongs to one producer at a time (an exclusive lock file enforces it), so two
producers never deliver the same rows.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path


class OutboxInUse(RuntimeError):
    pass


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    topic: str
    key: bytes
    value: bytes
    event_id: str


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(f"{path}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise OutboxInUse(f"{path} is used by another producer; give each producer its own outbox") from None
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a row is on disk when append() returns
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
            " key BLOB NOT NULL, value BLOB NOT NULL, event_id TEXT NOT NULL, stored_at REAL NOT NULL)"
        )
        self._mutex = threading.Lock()
        self._pending = self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def pending(self) -> int:
        return int(self._pending)

    def append(self, rows: list[tuple[str, bytes, bytes, str]]) -> None:
        """Store (topic, key, value, event_id) rows durably, in order, in one transaction."""
        if not rows:
            return
        now = time.time()
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO outbox (topic, key, value, event_id, stored_at) VALUES (?, ?, ?, ?, ?)",
                    [(*row, now) for row in rows],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._pending += len(rows)

    def head(self, limit: int) -> list[OutboxRow]:
        with self._mutex:
            cursor = self._db.execute(
                "SELECT seq, topic, key, value, event_id FROM outbox ORDER BY seq LIMIT ?", (limit,))
            return [OutboxRow(*row) for row in cursor.fetchall()]

    def remove_through(self, seq: int) -> None:
        """Forget every row up to and including `seq` (they were delivered)."""
        with self._mutex:
            deleted = self._db.execute("DELETE FROM outbox WHERE seq <= ?", (seq,)).rowcount
            self._pending -= deleted

    def close(self) -> None:
        with self._mutex:
            self._db.close()
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)
