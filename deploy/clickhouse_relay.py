"""ClickHouse's HTTP interface in front of the embedded chDB engine.

chDB opens a data directory in one process only. The process that holds it can serve it here, on
loopback, so that other processes -- a second store consumer, an auditor's client -- reach the same
trail with an ordinary `http://` CLICKHOUSE_URL, through exactly the code that talks to a server.

What is served is the part of the protocol clickhouse-connect uses: a statement in the `query`
parameter or at the head of the body (the data of an INSERT follows the statement's first line),
bound parameters as `param_<name>`, the result format from `default_format` or a trailing FORMAT,
plain or chunked bodies, `/ping`. Errors keep ClickHouse's text ("Code: N. DB::Exception: ...") so
callers classify them as they do a server's. Bodies are not compressed: clients connect with
`compress=false`. Not served: sessions (each statement stands alone), compression, authentication,
so the relay listens on loopback only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import tempfile
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlparse

import chdb
from clickhouse_connect.driver._chdbclient import build_connection_string

log = logging.getLogger(__name__)
_TRAILING_FORMAT = re.compile(r"\sFORMAT\s+(\w+)\s*;?\s*$", re.I)
_ERROR_CODE = re.compile(r"Code: (\d+)\.")
# settings a client sends with an insert that change how data is read or stored
_RELAYED_SETTINGS = ("date_time_input_format", "optimize_on_insert")
HANDLES = 4  # statements run at once: two store processes' inserts and lookups, and an auditor's query


class ClickHouseRelay:
    """Serve the chDB engine at `path` on 127.0.0.1:`port` (0: any free port) until `stop()`."""

    def __init__(self, path: str, chdb_options: dict[str, Any] | None = None, port: int = 0,
                 handles: int = HANDLES) -> None:
        self._connection_string = build_connection_string(path, chdb_options)
        # Handles on the engine, each running one statement at a time: a store process's lookup runs while
        # another's insert does, and two inserts run side by side, on both cores (one handle made them queue).
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._capacity = handles
        self._free = threading.BoundedSemaphore(handles)
        self._handles: list[Any] = []
        self._lock = threading.Lock()  # guards _handles
        self._idle.put(self._open())  # the engine opens the directory now: a wrong path fails here, not later
        relay = self

        class Handler(_Handler):
            def execute(self, sql: str, fmt: str, params: dict[str, str]) -> bytes:
                return relay.execute(sql, fmt, params)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="clickhouse-relay", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}?compress=false"

    def start(self) -> ClickHouseRelay:
        self._thread.start()
        log.info("embedded ClickHouse served at %s", self.url)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        for _ in range(self._capacity):
            self._free.acquire()  # every statement running has returned its handle
        for handle in self._handles:
            handle.close()

    def execute(self, sql: str, fmt: str, params: dict[str, str]) -> bytes:
        with self._free:
            try:
                handle = self._idle.get_nowait()
            except queue.Empty:
                handle = self._open()
            try:
                result = handle.query(sql, fmt, params=params)
            finally:
                self._idle.put(handle)
        return bytes(result.bytes()) if result is not None else b""

    def _open(self) -> Any:
        handle = chdb.connect(self._connection_string)  # type: ignore[no-untyped-call]
        with self._lock:
            self._handles.append(handle)
        return handle


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def execute(self, sql: str, fmt: str, params: dict[str, str]) -> bytes:
        raise NotImplementedError

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("relay: " + format, *args)

    def do_GET(self) -> None:
        if urlparse(self.path).path in ("/ping", "/"):
            self._reply(200, b"Ok.\n")
        else:
            self._reply(404, b"not found\n")

    def do_POST(self) -> None:
        query = dict(parse_qsl(urlparse(self.path).query, keep_blank_values=True))
        body = self._body()
        if self.headers.get_content_type() == "multipart/form-data":  # a long statement with its parameters
            query.update(_form_fields(self.headers["Content-Type"], body))
            body = b""
        sql = query.get("query")
        if sql is None:  # the statement heads the body; an INSERT's data follows its first line
            head, _, data = body.partition(b"\n") if body.lstrip()[:6].upper() == b"INSERT" else (body, b"", b"")
            sql, body = head.decode(), data
        params = {k[6:]: v for k, v in query.items() if k.startswith("param_")}
        found = _TRAILING_FORMAT.search(sql)
        fmt = found.group(1) if found else query.get("default_format", "TabSeparated")
        settings = {k: query[k] for k in _RELAYED_SETTINGS if k in query}
        try:
            if body:
                out = self._insert(sql, body, settings)
            else:
                statement = _TRAILING_FORMAT.sub("", sql) if found else sql
                out = self.execute(statement, fmt, params)
        except Exception as exc:
            message = str(exc)
            code = _ERROR_CODE.search(message)
            text = message if code else f"Code: 1000. DB::Exception: {message}"
            self._reply(500, text.encode(), {"X-ClickHouse-Exception-Code": code.group(1) if code else "1000"})
            return
        self._reply(200, out, {"X-ClickHouse-Format": fmt, "X-ClickHouse-Timezone": "UTC",
                               "X-ClickHouse-Summary": json.dumps({"read_rows": "0", "written_rows": "0"})})

    def _insert(self, sql: str, data: bytes, settings: dict[str, str]) -> bytes:
        found = _TRAILING_FORMAT.search(sql)
        if not found or not sql.lstrip().upper().startswith("INSERT"):
            raise ValueError("Code: 62. DB::Exception: a request body is accepted after INSERT ... FORMAT <name> only")
        clause = " SETTINGS " + ", ".join(f"{k} = '{v}'" for k, v in settings.items()) if settings else ""
        with tempfile.NamedTemporaryFile(suffix=".relay", delete=False) as tmp:
            tmp.write(data)
        try:
            path = tmp.name.replace("'", "\\'")
            return self.execute(f"{sql[:found.start()]} FROM INFILE '{path}'{clause} FORMAT {found.group(1)}",
                                "TabSeparated", {})
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp.name)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _form_fields(content_type: str, body: bytes) -> dict[str, str]:
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            fields[name] = payload.decode() if isinstance(payload, bytes) else str(payload)
    return fields
