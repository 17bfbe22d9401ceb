"""Every store instance needs every licence and certification, whichever partitions the group gave
it: this reader follows the whole reference topic (no consumer group) from its beginning and feeds
the reference state. At start the state is first loaded from ClickHouse, so a broker that lost its
memory does not lose the state."""

from __future__ import annotations

import logging
import time

from clickhouse_connect.driver.client import Client
from kafka import KafkaConsumer

from consumers.reference_state import ReferenceState
from consumers.topic_reader import from_beginning
from schemas import TOPIC_REFERENCE, value_subject
from schemas.codec import AvroCodec, DecodeError

log = logging.getLogger(__name__)
_STATE_KINDS = ("DEBTOR_PROFILE", "AGENCY_LICENSE", "COLLECTOR_CERTIFICATION")


def load_from_clickhouse(client: Client, state: ReferenceState) -> int:
    result = client.query(
        "SELECT toString(event_id), kind, occurred_at, debtor_id, agency_id, collector_id, timezone, phone_region,"
        " jurisdiction, status, valid_from, valid_to FROM audit.reference_events FINAL"
        " WHERE kind IN {kinds:Array(String)} ORDER BY occurred_at", parameters={"kinds": list(_STATE_KINDS)})
    columns = ("event_id", "kind", "occurred_at", "debtor_id", "agency_id", "collector_id", "timezone",
               "phone_region", "jurisdiction", "status", "valid_from", "valid_to")
    for row in result.result_rows:
        state.apply(dict(zip(columns, row, strict=True)))
    return len(result.result_rows)


class ReferenceTail:
    def __init__(self, client_config: dict[str, object], codec: AvroCodec, state: ReferenceState) -> None:
        self.codec = codec
        self.state = state
        self.consumer = from_beginning(KafkaConsumer(**client_config, enable_auto_commit=False,
                                                     client_id="collection-audit-tail"), TOPIC_REFERENCE)

    def catch_up(self, max_s: float = 2.0) -> int:
        """Apply what the topic holds beyond what was read; returns the number of records read."""
        read, deadline = 0, time.monotonic() + max_s
        while time.monotonic() < deadline:
            batches = self.consumer.poll(timeout_ms=20, max_records=10_000)
            if not batches:
                break
            for records in batches.values():
                for record in records:
                    read += 1
                    try:
                        decoded = self.codec.decode(value_subject(TOPIC_REFERENCE), record.value)
                    except DecodeError:
                        continue  # the store's own consumer dead-letters it
                    if decoded.record["kind"] in _STATE_KINDS:
                        self.state.apply(decoded.record)
        return read

    def close(self) -> None:
        self.consumer.close()
