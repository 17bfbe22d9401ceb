"""One way to reach ClickHouse for every role: clickhouse-connect, with a chdb:// DSN (embedded
chDB, one process per data directory) or http(s):// (a server or cluster)."""

from __future__ import annotations

import contextlib
import queue
import re
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from deploy.settings import Settings


class ClickHouseUnavailable(RuntimeError):
    pass


class ClickHouseCorrupted(RuntimeError):
    """ClickHouse cannot read back a part it committed. Retrying the same query cannot help;
    restarting an embedded chDB can: at start it detaches the broken part and brings back the
    parts it replaced (kept old_parts_lifetime, 8 minutes; see docs/operations.md)."""


CORRUPTED_EXIT_CODE = 3  # how a store process that met ClickHouseCorrupted exits

_CORRUPTION = re.compile(r"\bCode: (40|246)\.")  # CHECKSUM_DOESNT_MATCH, CORRUPTED_DATA


def is_corruption(exc: BaseException) -> bool:
    return bool(_CORRUPTION.search(str(exc)))


def connect(url: str, **settings: Any) -> Client:
    """A client for `url`: `chdb:///abs/dir[?engine-option=value...]` (e.g. `config-file=/etc/x.xml`)
    or `http(s)://user:password@host:port`. Datetimes come back timezone-aware (UTC), whatever the
    host's zone, so they compare and hash like what we wrote."""
    if not url.startswith(("chdb:", "http://", "https://")):
        raise ValueError(f"CLICKHOUSE_URL {url!r}: expected chdb:///path or http(s)://host:port")
    try:
        if url.startswith("chdb:") and "?" in url:  # engine options: clickhouse-connect's DSN parser drops them
            base, query = url.split("?", 1)
            return clickhouse_connect.get_client(interface="chdb", path=urlparse(base).path,
                                                 chdb_options=dict(parse_qsl(query)), settings=settings or None,
                                                 tz_mode="aware")
        return clickhouse_connect.get_client(dsn=url, settings=settings or None, tz_mode="aware")
    except Exception as exc:  # connection refused, bad credentials, engine path in use...
        raise ClickHouseUnavailable(f"cannot reach ClickHouse at {redact(url)}: {exc}") from exc


def trail_client(settings: Settings) -> Client:
    """A client on the trail the settings name, with the session settings of its layout (cluster or not)."""
    return connect(settings.clickhouse, **settings.clickhouse_settings())


def redact(url: str) -> str:
    """The URL without a password, for messages and logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


class ClientPool:
    """Clients for concurrent readers (API requests): a chDB handle or HTTP session serves one query
    at a time, and an open result stream holds it until the stream is consumed."""

    @classmethod
    def for_trail(cls, settings: Settings) -> ClientPool:
        return cls(settings.clickhouse, **settings.clickhouse_settings())

    def __init__(self, url: str, size: int = 4, **settings: Any) -> None:
        self.url = url
        self.settings = settings
        self._idle: queue.LifoQueue[Client] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    @contextlib.contextmanager
    def borrow(self) -> Iterator[Client]:
        self._slots.acquire()
        try:
            try:
                client = self._idle.get_nowait()
            except queue.Empty:
                client = connect(self.url, **self.settings)
            yield client
            self._idle.put(client)
        finally:
            self._slots.release()
