"""Fuzz targets: what each entry point promises about any input whatsoever.

Each target takes raw bytes and returns normally when the code kept its promise; any exception is a
finding. The promises:
- `store_record`: the store consumer's path for a Kafka record (first byte picks the topic, the rest
  is the value): decoded or refused with a known dead-letter reason; what passes validation
  enriches into a row without error (validation is not bypassed).
- `jsonl_line`: one line of `collection-audit produce`: a validated event or EventRejected; what is
  accepted encodes, decodes and passes the consumer's validation, and enriches.
- `ingest_body`: an HTTP ingest body: parsed (then each event as above) or a ValueError (HTTP 400).
Run them coverage-guided with `python -m tests.fuzz TARGET` (atheris); their corpora run in `make test`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from consumers.pii import PiiMasker
from consumers.reference_state import ReferenceState
from consumers.store_consumer import store_codec
from consumers.store_rows import Enricher, Provenance
from producers.http_ingest import parse_body
from producers.jsonl_import import parse_line
from schemas import TOPIC_ACTIONS, TOPIC_ALERTS, TOPIC_REFERENCE, value_subject
from schemas.catalog import Catalog
from schemas.codec import DecodeError
from schemas.contract import EventRejected, ValidatedEvent, parse_event, record_problems, to_micros
from schemas.registry import CatalogRegistry

TOPICS = (TOPIC_ACTIONS, TOPIC_REFERENCE, TOPIC_ALERTS)
DEAD_LETTER_REASONS = {"EMPTY_VALUE", "TRUNCATED", "BAD_MAGIC", "UNKNOWN_SCHEMA_ID", "CORRUPT_BODY", "TRAILING_BYTES"}
CODEC = store_codec(CatalogRegistry(Catalog.load()))  # decodes as the store does: actions plain
MASKER = PiiMasker(bytes(32))
MAX_EVENTS_PER_BODY = 64  # enough to reach every branch; keeps one input fast


def enrich(topic: str, record: dict[str, Any]) -> dict[str, Any]:
    """The store's enrichment of a validated record (a fresh reference state: inputs are independent)."""
    enricher = Enricher(MASKER, ReferenceState(in_micros=True))
    origin = Provenance(topic, 0, 0, 1, datetime.now(UTC))
    if topic == TOPIC_ACTIONS:
        columns = enricher.action_columns([record], topic, [0], [0], [1], to_micros(origin.ingested_at))
        return {name: values[0] for name, values in columns.items()}
    if topic == TOPIC_REFERENCE:
        enricher.state.apply(record)
        return enricher.reference_row(record, "fuzz", origin)
    return enricher.alert_row(record, origin)


def store_record(data: bytes) -> None:
    if not data:
        return
    topic = TOPICS[data[0] % len(TOPICS)]
    try:
        decoded = CODEC.decode(value_subject(topic), data[1:])
    except DecodeError as exc:
        assert exc.reason in DEAD_LETTER_REASONS, exc.reason
        return
    if not record_problems(topic, decoded.record):
        enrich(topic, decoded.record)


def _accepted_event_survives_the_pipeline(event: ValidatedEvent) -> None:
    value = CODEC.encode(event.subject, event.record)
    decoded = CODEC.decode(event.subject, value)
    problems = record_problems(event.topic, decoded.record)
    assert not problems, f"accepted by the producer, refused by the consumer: {problems}"
    enrich(event.topic, decoded.record)


def jsonl_line(data: bytes) -> None:
    try:
        event = parse_line(data)
    except EventRejected:
        return
    _accepted_event_survives_the_pipeline(event)


def ingest_body(data: bytes) -> None:
    try:
        items = parse_body(data)
    except ValueError:
        return
    for item in items[:MAX_EVENTS_PER_BODY]:
        with contextlib.suppress(EventRejected):
            _accepted_event_survives_the_pipeline(parse_event(item))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "store_record": store_record, "jsonl_line": jsonl_line, "ingest_body": ingest_body}
