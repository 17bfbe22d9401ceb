"""JSON-lines import: one event per line, actions and reference events mixed, sent in file order.

Every line is validated; rejected lines are reported with their line number, field and reason and
are not sent. Valid lines are sent in order, in batches. An event without an `event_id` gets one
derived from the line's content, so importing the same file twice stores each event once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from schemas.contract import NOT_UNICODE, EventRejected, FieldError, ValidatedEvent, parse_event

# Namespace for event ids derived from imported lines (uuid5 of the canonical JSON of the event).
IMPORT_NAMESPACE = uuid.UUID("6f1c2a52-4d0e-4c5e-9a7e-2f2b8c3d9e10")
MAX_LINE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class LineRejected:
    line: int
    errors: list[FieldError]


@dataclass
class ImportReport:
    lines: int = 0
    accepted: int = 0
    blank: int = 0
    rejected: list[LineRejected] = field(default_factory=list)


def derived_event_id(event: dict[str, Any]) -> str:
    canonical = json.dumps(event, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return str(uuid.uuid5(IMPORT_NAMESPACE, canonical))


def parse_line(raw: bytes) -> ValidatedEvent:
    """One line of a JSON-lines file as a validated event; EventRejected if it is not one."""
    if len(raw) > MAX_LINE_BYTES:
        raise EventRejected([FieldError("(line)", f"longer than {MAX_LINE_BYTES} bytes")])
    try:
        event = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EventRejected([FieldError("(line)", f"not valid JSON: {exc}")]) from None
    except RecursionError:
        raise EventRejected([FieldError("(line)", "JSON nested too deeply")]) from None
    if isinstance(event, dict) and "event_id" not in event:
        try:
            event = {**event, "event_id": derived_event_id(event)}
        except UnicodeEncodeError:  # a lone surrogate escape somewhere in the line
            raise EventRejected([FieldError("(line)", f"a text {NOT_UNICODE}")]) from None
    return parse_event(event)


def validated_lines(stream: IO[bytes], report: ImportReport,
                    on_bytes: Callable[[int], None] | None = None) -> Iterator[ValidatedEvent]:
    """Yield the valid events of `stream` in order, recording rejected lines in `report`."""
    for number, raw in enumerate(stream, start=1):
        report.lines = number
        if on_bytes:
            on_bytes(len(raw))
        if not raw.strip():
            report.blank += 1
            continue
        try:
            event = parse_line(raw)
        except EventRejected as exc:
            report.rejected.append(LineRejected(number, exc.errors))
            continue
        report.accepted += 1
        yield event
