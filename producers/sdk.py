"""The Python SDK upstream systems use to emit collection actions and reference events.

Guarantees:
- Validation happens before anything is sent: a bad event raises EventRejected naming every field
  at fault, and nothing of it (or, for emit_many, of its batch) is sent.
- `emit`/`emit_many` return only once every event is durable: acknowledged by all in-sync replicas
  (acks=all, idempotent producer) or written to the local SQLite outbox.
- Outbox rows are delivered in order by a background thread as soon as Kafka is back. While rows
  wait, new events queue behind them, so a debtor's events keep their order.
- A delivery that timed out may still have reached Kafka; its outbox copy is then delivered again.
  Storage is idempotent on event_id, so an auditor never sees it twice.
- `flush()` tries to deliver the outbox now and returns how many events still wait. `close()`
  flushes within its timeout and stops; rows left in the outbox file stay there and are delivered
  by the next producer opened on the same file.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from producers.outbox import Outbox
from schemas import TOPIC_REFERENCE
from schemas.codec import AvroCodec
from schemas.contract import EventRejected, FieldError, ValidatedEvent, parse_event
from schemas.registry import SchemaRegistry

log = logging.getLogger(__name__)

_DRAIN_BATCH = 1000
_MAX_BACKOFF_S = 5.0


class BatchRejected(EventRejected):
    """Some events of a batch broke the contract; `by_index` maps each bad event's index to its errors."""

    def __init__(self, by_index: dict[int, list[FieldError]]) -> None:
        flat = [FieldError(f"[{i}].{e.field}", e.problem) for i, errors in by_index.items() for e in errors]
        super().__init__(flat)
        self.by_index = by_index


class AuditProducer:
    def __init__(self, client_config: Mapping[str, Any], registry: SchemaRegistry, outbox_path: Path, *,
                 delivery_timeout_s: float = 15.0, source_system: str | None = None) -> None:
        if delivery_timeout_s < 1:
            raise ValueError(f"delivery_timeout_s must be at least 1 second, not {delivery_timeout_s}: "
                             "it bounds each wait for the broker's acknowledgement")
        self._client_config = dict(client_config)
        self._codec = AvroCodec(registry)
        self._delivery_timeout_s = delivery_timeout_s
        self._source_system = source_system
        self._outbox = Outbox(outbox_path)
        self._producer: KafkaProducer | None = None
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._left_at_close = 0
        self.sent = 0
        self.outboxed = 0
        self._drainer = threading.Thread(target=self._drain_forever, name="outbox-drainer", daemon=True)
        self._drainer.start()

    @classmethod
    def from_settings(cls, settings: Any, name: str = "sdk", **kwargs: Any) -> AuditProducer:
        from schemas.registry import registry_for

        return cls(settings.kafka_client_config(), registry_for(settings.schema_registry_url),
                   settings.outbox_dir / f"{name}.sqlite",
                   delivery_timeout_s=settings.producer_delivery_timeout_s, **kwargs)

    # -- public API -------------------------------------------------------------------------

    def validate(self, event: Mapping[str, Any]) -> ValidatedEvent:
        """The validated form of `event`, or EventRejected; sends nothing."""
        if self._source_system and "source_system" not in event and "kind" not in event:
            event = {**event, "source_system": self._source_system}
        return parse_event(event)

    def emit(self, event: Mapping[str, Any]) -> str:
        """Validate and send one event; returns its event_id once it is durable."""
        validated = self.validate(event)
        self.send_validated([validated])
        return validated.event_id

    def emit_many(self, events: Iterable[Mapping[str, Any]]) -> list[str]:
        """Validate all events, then send them in order; returns their ids once all are durable.
        If any event is invalid, BatchRejected is raised and nothing is sent."""
        validated: list[ValidatedEvent] = []
        errors: dict[int, list[FieldError]] = {}
        for i, event in enumerate(events):
            try:
                validated.append(self.validate(event))
            except EventRejected as exc:
                errors[i] = exc.errors
        if errors:
            raise BatchRejected(errors)
        self.send_validated(validated)
        return [v.event_id for v in validated]

    def send_validated(self, events: list[ValidatedEvent]) -> None:
        """Send already-validated events (used by the importer and the ingest endpoint)."""
        rows = [(v.topic, v.key.encode(), self._codec.encode(v.subject, v.record), v.event_id) for v in events]
        if self._outbox.pending():  # queue behind waiting events without waiting for the drainer's retry
            self._to_outbox(rows)
            return
        with self._lock:
            if self._outbox.pending() or not self._connect():  # re-checked: another thread may have queued
                self._to_outbox(rows)
                return
            failed = self._deliver(rows)
            if failed:
                self._to_outbox([rows[i] for i in failed])

    def pending(self) -> int:
        """Events waiting in the outbox."""
        return self._outbox.pending()

    def flush(self, timeout_s: float | None = None) -> int:
        """Deliver what the outbox holds, for at most `timeout_s`; returns the events still waiting."""
        deadline = time.monotonic() + (self._delivery_timeout_s if timeout_s is None else timeout_s)
        while self._outbox.pending() and time.monotonic() < deadline:
            with self._lock:
                if not self._drain_once():
                    time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        return self._outbox.pending()

    def close(self, timeout_s: float = 5.0) -> int:
        """Flush within `timeout_s`, stop the drainer; returns the events left in the outbox file. Closing
        again does nothing and returns the same count."""
        if self._closed.is_set():
            return self._left_at_close
        left = self._left_at_close = self.flush(timeout_s)
        self._closed.set()
        self._wake.set()
        self._drainer.join()
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=timeout_s)
                self._producer = None
            self._outbox.close()
        return left

    def __enter__(self) -> AuditProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- delivery ---------------------------------------------------------------------------

    def _connect(self) -> bool:
        if self._producer is not None:
            return True
        timeout_ms = int(self._delivery_timeout_s * 1000)
        try:
            self._producer = KafkaProducer(
                **self._client_config,
                client_id="collection-audit-producer",
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                batch_size=256 * 1024,
                max_request_size=2 * 1024 * 1024,
                max_block_ms=timeout_ms,
                bootstrap_timeout_ms=timeout_ms,
                request_timeout_ms=max(500, timeout_ms // 2),  # below the delivery timeout minus linger
                delivery_timeout_ms=timeout_ms,
            )
            return True
        except KafkaError as exc:
            log.warning("Kafka unavailable (%s): events go to the outbox %s", exc, self._outbox.path)
            return False

    def _disconnect(self) -> None:
        """Drop the client after a failed delivery. What it did not deliver is in the outbox, so its pending
        batches are abandoned, not flushed: kafka-python's close() flushes first and raises while batches are
        pending, which left its network thread running for good and a traceback at garbage collection, once
        per outage (kafka-python 3.0; `_sender` and `_closed` are its own)."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.close(timeout=0)
        except KafkaError:
            sender = getattr(producer, "_sender", None)
            if sender is not None:
                sender.force_close()  # stops the thread and fails the pending batches without sending them
            producer._closed = True  # nothing left for its __del__ to flush
        except Exception:  # closing a broken client must not hide the delivery failure
            log.debug("closing the Kafka producer failed", exc_info=True)

    def _deliver(self, rows: list[tuple[str, bytes, bytes, str]]) -> list[int]:
        """Send rows and wait for their acks; returns the indexes that were not acknowledged. Reference
        events go first and are acknowledged before the actions of the same call are sent: Kafka orders
        nothing across topics, so this is what lets a consumer that has read an action find the profile,
        licence or certification sent with it (the rule consumer reads references before each batch)."""
        assert self._producer is not None
        references = [i for i, row in enumerate(rows) if row[0] == TOPIC_REFERENCE]
        others = [i for i, row in enumerate(rows) if row[0] != TOPIC_REFERENCE]
        failed: list[int] = []
        for phase in (references, others):
            if failed:  # what depends on an unacknowledged reference waits with it
                failed += phase
            elif phase:
                failed += [phase[i] for i in self._send_and_wait([rows[i] for i in phase])]
        failed.sort()
        self.sent += len(rows) - len(failed)
        if failed:
            self._disconnect()
        return failed

    def _send_and_wait(self, rows: list[tuple[str, bytes, bytes, str]]) -> list[int]:
        assert self._producer is not None
        futures = []
        try:
            for topic, key, value, _ in rows:
                futures.append(self._producer.send(topic, key=key, value=value))
            self._producer.flush(timeout=self._delivery_timeout_s)
        except KafkaError as exc:
            log.warning("delivery to Kafka failed: %s", exc)
        failed = [i for i, f in enumerate(futures) if not (f.is_done and f.succeeded())]
        return failed + list(range(len(futures), len(rows)))

    def _to_outbox(self, rows: list[tuple[str, bytes, bytes, str]]) -> None:
        self._outbox.append(rows)
        self.outboxed += len(rows)
        self._wake.set()

    def _drain_once(self) -> bool:
        """Deliver one batch from the head of the outbox; True if it all went through."""
        batch = self._outbox.head(_DRAIN_BATCH)
        if not batch:
            return True
        if not self._connect():
            return False
        failed = self._deliver([(r.topic, r.key, r.value, r.event_id) for r in batch])
        first_failed = failed[0] if failed else len(batch)
        if first_failed:  # rows acked after a failed one are sent again later: storage dedups them
            self._outbox.remove_through(batch[first_failed - 1].seq)
        return not failed

    def _drain_forever(self) -> None:
        backoff = 0.5
        while not self._closed.is_set():
            self._wake.wait(backoff if self._outbox.pending() else 5.0)
            self._wake.clear()
            if self._closed.is_set() or not self._outbox.pending():
                continue
            with self._lock:
                ok = self._drain_once()
            backoff = 0.0 if ok else min(max(backoff * 2, 0.5), _MAX_BACKOFF_S)
            if ok and self._outbox.pending():
                self._wake.set()
