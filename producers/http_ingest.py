"""HTTP ingest for non-Python systems: POST /v1/events with a JSON array or JSON lines.

All or nothing: if any event is invalid the answer is 400 with every error by item and nothing is
sent; otherwise 202 once every event is durable (Kafka or the outbox) with the accepted ids.
Bodies larger than the configured limit get 413 before they are parsed.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from deploy.rate_limit import RateLimiter
from producers.sdk import AuditProducer
from schemas.contract import EventRejected, ValidatedEvent, parse_event


class BodyTooLarge(Exception):
    pass


async def read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(body: bytes) -> list[Any]:
    """The events of a body: a JSON array, a single object, or JSON lines. ValueError if none."""
    try:
        return _parse_body(body)
    except RecursionError:  # json refuses nesting deeper than the interpreter's recursion limit
        raise ValueError("JSON nested too deeply") from None


def _parse_body(body: bytes) -> list[Any]:
    text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError
    stripped = text.lstrip()
    if not stripped:
        raise ValueError("the body is empty")
    if stripped[0] == "[":
        items = json.loads(text)
        if not isinstance(items, list):
            raise ValueError("expected a JSON array of events")
        return items
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) == 1:
        return [json.loads(lines[0])]
    items = []
    for number, line in enumerate(lines, start=1):
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number} is not valid JSON: {exc}") from None
    return items


def ingest_router(producer: AuditProducer, max_body_bytes: int, max_events: int,
                  limiter: RateLimiter | None = None) -> APIRouter:
    limiter = limiter or RateLimiter(0)
    router = APIRouter()

    @router.post("/v1/events", status_code=202, tags=["ingest"],
                 summary="Send collection actions and reference events (JSON array or JSON lines)")
    async def post_events(request: Request) -> JSONResponse:
        client = request.client.host if request.client else "?"
        limiter.check(client, f"client {client}")
        try:
            body = await read_limited(request, max_body_bytes)
        except BodyTooLarge:
            raise HTTPException(413, f"body larger than {max_body_bytes} bytes; split it into smaller requests") \
                from None
        try:
            items = parse_body(body)
        except ValueError as exc:
            raise HTTPException(400, f"body is not JSON or JSON lines: {exc}") from None
        if len(items) > max_events:
            raise HTTPException(413, f"{len(items)} events in one request; the limit is {max_events}")
        events: list[ValidatedEvent] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            try:
                events.append(parse_event(item))
            except EventRejected as exc:
                errors += [{"index": index, "field": e.field, "problem": e.problem} for e in exc.errors]
        if errors:
            return JSONResponse(status_code=400, content={
                "detail": f"{len({e['index'] for e in errors})} of {len(items)} events rejected; none were sent",
                "errors": errors})
        await run_in_threadpool(producer.send_validated, events)
        return JSONResponse(status_code=202, content={
            "accepted": len(events), "event_ids": [e.event_id for e in events]})

    return router
