"""The auditor API: read-only, token-authenticated, role-checked, every request access-logged.

Routes live under /api/v1. Lists and the timeline page with a cursor; any list or report is also a
streamed CSV or Parquet download (`format=csv|parquet`, roles with the `export` permission). Query
limits (range, page size, export rows) are in queries.py and answered with 422 and a reason.
"""

# No `from __future__ import annotations`: FastAPI reads the dependency aliases defined inside
# auditor_router from the evaluated annotations.
import csv
import io
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from consumers.rules.ruleset import load_ruleset
from consumers.trail_writer import ACTIONS as ACTIONS_TABLE
from consumers.trail_writer import ALERTS as ALERTS_TABLE
from consumers.trail_writer import REFERENCE_EVENTS
from deploy.auditor import queries
from deploy.auditor.chain_verify import verify_trail
from deploy.auditor.queries import Filters, Listing, QueryError, Sql
from deploy.auditor.tokens import PERMISSIONS, Principal, TokenError, TokenStore
from deploy.clickhouse_client import ClientPool
from deploy.rate_limit import RateLimiter

FORMATS = ("json", "csv", "parquet")
MAX_PROBLEMS = 10_000


def daily_caps() -> dict[str, int]:
    """DAILY_CONTACT_CAP's conversations-per-debtor-day limit for each jurisdiction that has one."""
    rule = load_ruleset().rule("DAILY_CONTACT_CAP")
    caps = {}
    for jurisdiction in rule.profiles:
        for clause in rule.clauses_for(jurisdiction):
            if clause.kind == "count" and clause.per == ("debtor_id",):
                caps[jurisdiction] = clause.max
    return caps


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _csv_cell(value: Any) -> Any:
    value = _plain(value)
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value


def auditor_router(pool: ClientPool, tokens: TokenStore, limiter: RateLimiter | None = None) -> APIRouter:
    limiter = limiter or RateLimiter(0)
    router = APIRouter(prefix="/api/v1", tags=["auditor"])
    caps = daily_caps()

    def principal(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            request.state.token_problem = "(no token)"
            raise HTTPException(401, "send a token: Authorization: Bearer <token> (collection-audit tokens create)",
                                headers={"WWW-Authenticate": "Bearer"})
        try:
            who = tokens.authenticate(token.strip())
        except TokenError as exc:
            request.state.token_problem = "(refused token)"
            raise HTTPException(401, f"token refused: {exc}", headers={"WWW-Authenticate": "Bearer"}) from None
        request.state.principal = who
        limiter.check(who.name, f"token {who.name!r}")  # after auth: the access log names who was refused
        return who

    def allowed(permission: str) -> Callable[[Principal], Principal]:
        def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
            if not who.may(permission):
                raise HTTPException(403, f"role {who.role!r} may not {permission.replace('_', ' ')}; "
                                    f"ask an admin for a token with that permission")
            return who
        return check

    Reader = Annotated[Principal, Depends(allowed("read"))]

    def filters(start: Annotated[datetime | None, Query(alias="from", description="UTC unless an offset is given")]
                = None,
                end: Annotated[datetime | None, Query(alias="to", description="exclusive; default now")] = None,
                agency: str | None = None, collector: str | None = None, debtor: str | None = None,
                rule: str | None = None, severity: str | None = None, action_type: str | None = None,
                reason: str | None = None) -> Filters:
        try:
            return Filters.build(start, end, agency=agency, collector=collector, debtor=debtor, rule=rule,
                                 severity=severity, action_type=action_type, reason=reason)
        except QueryError as exc:
            raise HTTPException(422, str(exc)) from None

    Filtered = Annotated[Filters, Depends(filters)]
    Format = Annotated[str, Query(pattern="^(json|csv|parquet)$", description="json, or a streamed csv/parquet file")]
    Limit = Annotated[int, Query(ge=1, le=queries.MAX_PAGE)]

    def run(sql: Sql) -> tuple[list[str], list[Sequence[Any]]]:
        with pool.borrow() as client:
            result = client.query(sql.text, parameters=sql.parameters, settings=dict(sql.settings))
            return list(result.column_names), list(result.result_rows)

    async def rows_json(request: Request, sql: Sql, limit: int | None, cursor_of: Callable[[dict[str, Any]], str]
                        | None = None, **extra: Any) -> JSONResponse:
        try:
            names, rows = await run_in_threadpool(run, sql)
        except QueryError as exc:
            raise HTTPException(422, str(exc)) from None
        records = [dict(zip(names, (_plain(v) for v in row), strict=True)) for row in rows]
        request.state.rows = len(records)
        body: dict[str, Any] = {**extra, "rows": records}
        if cursor_of is not None:
            body["next_cursor"] = cursor_of(dict(zip(names, rows[-1], strict=True))) \
                if limit is not None and len(rows) == limit else None
        return JSONResponse(body)

    async def download(request: Request, who: Principal, sql: Sql, fmt: str, name: str) -> StreamingResponse:
        if not who.may("export"):
            raise HTTPException(403, f"role {who.role!r} may not export; ask for an auditor token")
        _, counted = await run_in_threadpool(run, queries.count_query(sql))
        total = int(counted[0][0])
        if total > queries.MAX_EXPORT_ROWS:
            raise HTTPException(422, f"the export would hold {total:,} rows; at most {queries.MAX_EXPORT_ROWS:,} "
                                "per file: narrow the range or filters")
        request.state.rows = 0
        stream = _csv_stream(pool, sql, request) if fmt == "csv" else _parquet_stream(pool, sql, request)
        media = "text/csv; charset=utf-8" if fmt == "csv" else "application/vnd.apache.parquet"
        return StreamingResponse(stream, media_type=media,
                                 headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"',
                                          "X-Total-Rows": str(total)})

    def cursor_from(listing: Listing) -> Callable[[dict[str, Any]], str]:
        return lambda row: queries.encode_cursor(row[listing.time_column], row[listing.id_column])

    async def listing_response(request: Request, who: Principal, listing: Listing, f: Filters, fmt: str,
                               limit: int, cursor: str | None, extra: tuple[str, ...] = ()) -> Any:
        try:
            if fmt != "json":
                return await download(request, who, queries.list_query(listing, f, limit=None, extra_columns=extra),
                                      fmt, listing.table.split(".")[1])
            sql = queries.list_query(listing, f, limit=limit, cursor=cursor, extra_columns=extra)
        except QueryError as exc:
            raise HTTPException(422, str(exc)) from None
        return await rows_json(request, sql, limit, cursor_from(listing),
                               range={"from": f.start.isoformat(), "to": f.end.isoformat()})

    @router.get("/me", summary="Who this token is and what it may do")
    def me(who: Annotated[Principal, Depends(principal)]) -> dict[str, Any]:
        return {"name": who.name, "role": who.role, "permissions": sorted(PERMISSIONS[who.role])}

    @router.get("/overview", summary="What the trail holds: counts and the event-time range")
    async def overview(request: Request, who: Reader) -> dict[str, Any]:
        sql = Sql("SELECT (SELECT count() FROM audit.actions) AS actions, (SELECT min(occurred_at) FROM audit.actions)"
                  " AS first_action, (SELECT max(occurred_at) FROM audit.actions) AS last_action, "
                  "(SELECT count() FROM audit.alerts) AS alerts, (SELECT count() FROM audit.reference_events) AS "
                  "reference_events, (SELECT count() FROM audit.dead_letters) AS dead_letters, "
                  "(SELECT uniqExact(debtor_id) FROM audit.actions) AS debtors", {}, {})
        names, rows = await run_in_threadpool(run, sql)
        request.state.rows = 1
        body = {n: _plain(v) for n, v in zip(names, rows[0], strict=True)}
        body["reports"] = [{"name": r.name, "title": r.title, "description": r.description, "filters": r.filters}
                           for r in queries.REPORTS.values()]
        body["daily_caps"] = caps
        return body

    @router.get("/actions", summary="Collection actions, in event time")
    async def actions(request: Request, who: Reader, f: Filtered, format: Format = "json", limit: Limit = 100,
                      cursor: str | None = None) -> Any:
        return await listing_response(request, who, queries.ACTIONS, f, format, limit, cursor)

    @router.get("/alerts", summary="Alerts raised by the rule consumer, in event time")
    async def alerts(request: Request, who: Reader, f: Filtered, format: Format = "json", limit: Limit = 100,
                     cursor: str | None = None) -> Any:
        return await listing_response(request, who, queries.ALERTS, f, format, limit, cursor)

    @router.get("/dead-letters", summary="Records that could not be stored, with the reason "
                "(raw bytes for admins with payloads=true)")
    async def dead_letters(request: Request, who: Reader, f: Filtered, format: Format = "json", limit: Limit = 100,
                           cursor: str | None = None, payloads: bool = False) -> Any:
        if payloads and not who.may("payloads"):
            raise HTTPException(403, f"role {who.role!r} may not read dead-letter payloads (they may hold clear PII)")
        extra = queries.DEAD_LETTER_PAYLOADS if payloads else ()
        return await listing_response(request, who, queries.DEAD_LETTERS, f, format, limit, cursor, extra)

    @router.get("/access-log", summary="Who asked what of this API (admins)")
    async def access_log(request: Request, who: Annotated[Principal, Depends(allowed("access_log"))], f: Filtered,
                         format: Format = "json", limit: Limit = 100, cursor: str | None = None) -> Any:
        return await listing_response(request, who, queries.ACCESS_LOG, f, format, limit, cursor)

    @router.get("/debtors/{debtor_id}/timeline", summary="A debtor's actions, reference events and alerts in "
                "event time, with debtor-local times")
    async def timeline(request: Request, who: Reader, debtor_id: str, f: Filtered, format: Format = "json",
                       limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = 500,
                       cursor: str | None = None) -> Any:
        if len(debtor_id) > 128:
            raise HTTPException(422, "a debtor id is at most 128 characters")
        try:
            if format != "json":
                return await download(request, who, queries.timeline_query(debtor_id, f, limit=None), format,
                                      f"timeline-{debtor_id}")
            sql = queries.timeline_query(debtor_id, f, limit=limit, cursor=cursor)
        except QueryError as exc:
            raise HTTPException(422, str(exc)) from None
        return await rows_json(request, sql, limit, lambda row: queries.encode_cursor(row["occurred_at"], row["id"]),
                               debtor_id=debtor_id, range={"from": f.start.isoformat(), "to": f.end.isoformat()})

    @router.get("/reports", summary="The reports this API serves")
    def reports(request: Request, who: Reader) -> list[dict[str, Any]]:
        request.state.rows = len(queries.REPORTS)
        return [{"name": r.name, "title": r.title, "description": r.description, "filters": r.filters}
                for r in queries.REPORTS.values()]

    @router.get("/reports/{name}", summary="One report (contacts-per-day, alerts-by-rule, collector-league, "
                "complaint-sla, quiet-hours)")
    async def report(request: Request, who: Reader, name: str, f: Filtered, format: Format = "json",
                     limit: Annotated[int, Query(ge=1, le=queries.MAX_REPORT_ROWS)] = queries.DEFAULT_REPORT_ROWS
                     ) -> Any:
        if name not in queries.REPORTS:
            raise HTTPException(404, f"no report {name!r}; reports: {', '.join(queries.REPORTS)}")
        if format != "json":
            return await download(request, who, queries.report_query(name, f, caps, limit=None), format, name)
        names, rows = await run_in_threadpool(run, queries.report_query(name, f, caps, limit=limit))
        truncated = len(rows) > limit
        rows = rows[:limit]
        request.state.rows = len(rows)
        report = queries.REPORTS[name]
        return JSONResponse({"report": name, "title": report.title, "description": report.description,
                             "range": {"from": f.start.isoformat(), "to": f.end.isoformat()},
                             "columns": names, "rows": [[_plain(v) for v in row] for row in rows],
                             "truncated": truncated,
                             **({"daily_caps": caps} if name == "contacts-per-day" else {})})

    @router.get("/verify", summary="Recompute the hash chain: a debtor, an agency's debtors, or everything in the "
                "months of a range; lists every altered, removed or inserted row")
    async def verify(request: Request, who: Annotated[Principal, Depends(allowed("verify"))], f: Filtered) -> Any:
        def check() -> dict[str, Any]:
            with pool.borrow() as client:
                return {name: tally for name, tally in verify_trail(
                    client, (ACTIONS_TABLE, ALERTS_TABLE, REFERENCE_EVENTS), start=f.start, end=f.end,
                    debtor=f.debtor, agency=f.agency).items()}
        tallies = await run_in_threadpool(check)
        problems = [p for t in tallies.values() for p in t.problems]
        request.state.rows = len(problems)
        return {"scope": {"debtor": f.debtor, "agency": f.agency, "from": f.start.isoformat(),
                          "to": f.end.isoformat()},
                "ok": not problems,
                "tables": {name: {"chains": t.chains, "rows": t.rows, "problems": len(t.problems)}
                           for name, t in tallies.items()},
                "problems": [p.__dict__ for p in problems[:MAX_PROBLEMS]],
                "problems_truncated": len(problems) > MAX_PROBLEMS}

    return router


def _csv_stream(pool: ClientPool, sql: Sql, request: Request) -> Iterator[bytes]:
    with pool.borrow() as client, client.query_row_block_stream(sql.text, parameters=sql.parameters,
                                                                settings=dict(sql.settings)) as stream:
        buffer = io.StringIO()
        out = csv.writer(buffer)
        out.writerow(stream.source.column_names)
        for block in stream:
            out.writerows([_csv_cell(v) for v in row] for row in block)
            request.state.rows += len(block)
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue().encode()


class _Chunks(io.RawIOBase):
    """A write-only file whose bytes are collected for the response as they are written."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


def _parquet_stream(pool: ClientPool, sql: Sql, request: Request) -> Iterator[bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = _Chunks()
    writer: pq.ParquetWriter | None = None
    with pool.borrow() as client, client.query_arrow_stream(sql.text, parameters=sql.parameters,
                                                            settings=dict(sql.settings)) as stream:
        for batch in stream:
            if writer is None:
                writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), batch.schema, compression="zstd")
            writer.write_batch(batch)
            request.state.rows += batch.num_rows
            yield sink.take()
    if writer is None:  # no rows: still a valid file, with no columns known
        writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), pa.schema([]))
    writer.close()
    yield sink.take()
