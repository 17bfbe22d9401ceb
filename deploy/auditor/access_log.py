"""`audit.access_log`: one row per auditor API request, allowed or refused.

An ASGI middleware around the API writes the row before the last byte of the response is sent, so
a client that has read a whole answer can find its request in the log. The endpoint reports who
asked (`state["principal"]`) and how many rows it returned (`state["rows"]`, counted as a stream
goes for exports).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deploy.auditor.tokens import TOKEN_PREFIX

log = logging.getLogger(__name__)
SECRET_PARAMETERS = {"token", "access_token", "api_key", "apikey", "key", "password", "secret", "authorization"}
TOKEN_LIKE = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]{16,}")
REDACTED = "[redacted]"


def redacted(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Query parameters as logged: a token pasted into a URL by mistake is still a secret."""
    return [(name, REDACTED if name.lower() in SECRET_PARAMETERS else TOKEN_LIKE.sub(REDACTED, value))
            for name, value in pairs]
COLUMNS = ("request_id", "at", "token_name", "role", "method", "path", "query", "status", "rows", "duration_ms",
           "client")


@dataclass(frozen=True)
class AccessEntry:
    at: datetime
    token_name: str
    role: str
    method: str
    path: str
    query: str
    status: int
    rows: int
    duration_ms: float
    client: str
    request_id: uuid.UUID


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, write: Callable[[AccessEntry], None], prefix: str = "/api/") -> None:
        self.app = app
        self.write = write
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        at = datetime.now(UTC)
        state: dict[str, Any] = scope.setdefault("state", {})
        status, written = 500, False

        async def record() -> None:
            nonlocal written
            written = True
            principal = state.get("principal")
            query = json.dumps(redacted(parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                                                  keep_blank_values=True)), ensure_ascii=False)
            client = scope.get("client") or ("", 0)
            path = TOKEN_LIKE.sub(REDACTED, scope["path"])
            entry = AccessEntry(at, getattr(principal, "name", state.get("token_problem", "(no token)")),
                                getattr(principal, "role", ""), scope["method"], path, query, status,
                                int(state.get("rows", 0)), round((time.perf_counter() - started) * 1000, 3),
                                f"{client[0]}:{client[1]}", uuid.uuid4())
            try:
                await run_in_threadpool(self.write, entry)
            except Exception:
                log.exception("could not write the access log entry for %s %s", scope["method"], scope["path"])

        async def logged_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body") and not written:
                await record()
            await send(message)

        try:
            await self.app(scope, receive, logged_send)
        finally:
            if not written:  # the response never completed (client gone, error): still on the record
                await record()


def writer(client_for: Callable[[], Any]) -> Callable[[AccessEntry], None]:
    """Insert one entry (a small synchronous insert: the log is part of answering)."""
    def write(entry: AccessEntry) -> None:
        with client_for() as client:
            client.insert("audit.access_log", [[getattr(entry, c) for c in COLUMNS]], column_names=COLUMNS)
    return write
