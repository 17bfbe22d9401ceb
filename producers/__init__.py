"""Producers: the Python SDK, the JSON-lines import, the HTTP ingest endpoint and the simulator."""

from producers.sdk import AuditProducer, BatchRejected
from schemas.contract import EventRejected, FieldError

__all__ = ["AuditProducer", "BatchRejected", "EventRejected", "FieldError"]
