"""A part ClickHouse cannot read back stops the store instead of being retried forever: a retry reads
the same broken part again, while a restart lets chDB detach it and restore the parts it replaced."""

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from prometheus_client import CollectorRegistry

from consumers.metrics import ConsumerMetrics
from consumers.store_consumer import StoreProcessor
from consumers.store_rows import plain_action
from consumers.trail_writer import ACTIONS, TrailWriter
from deploy.clickhouse_client import ClickHouseCorrupted, is_corruption
from tests.conftest import unique_token
from tests.consumers.test_trail_writer import ENRICHER, action

pytestmark = pytest.mark.stack


def record(debtor: str, offset: int) -> dict[str, Any]:
    """An action as the store decodes it (plain), before enrichment."""
    at = datetime(2024, 6, 1, 3, offset, tzinfo=UTC)
    return plain_action({
            "event_id": uuid.uuid4(), "occurred_at": at, "occurred_at_offset_minutes": 480, "produced_at": at,
            "source_system": "t", "agency_id": "AG", "debtor_id": debtor, "account_id": "A",
            "collector_id": None, "action_type": "SMS", "direction": "OUTBOUND", "counterparty": "DEBTOR",
            "contact_address": None, "message_text": "hello", "recording_id": None, "duration_seconds": None,
            "call_result": None, "automated": True, "staff_count": None, "credentials_shown": None,
            "amount_due_minor": None, "currency": None, "due_date": None, "attributes": {}})


def test_a_corrupted_part_stops_the_store_with_what_happened(clickhouse: Client) -> None:
    database = f"corrupt_{unique_token(8)}"
    clickhouse.command(f"CREATE DATABASE {database}")
    try:
        table = replace(ACTIONS, name=f"{database}.actions")
        clickhouse.command(f"CREATE TABLE {table.name} AS audit.actions")
        debtor = f"CP-{unique_token(8)}"
        TrailWriter(clickhouse, table).write([action(debtor, datetime(2024, 6, 1, 2, tzinfo=UTC), 0)])
        [[part_path]] = clickhouse.query(f"SELECT path FROM system.parts WHERE database = '{database}' "
                                         "AND table = 'actions' AND active").result_rows
        marks = [p for p in Path(part_path).iterdir() if ".cmrk" in p.name or ".mrk" in p.name]
        assert marks, f"no marks file in {part_path}"
        for path in marks:  # what a merge on a full disk left behind: the marks file empty
            path.write_bytes(b"")
        clickhouse.command("SYSTEM DROP MARK CACHE")

        processor = StoreProcessor(clickhouse, codec=None, enricher=ENRICHER, dlq=None,  # type: ignore[arg-type]
                                   metrics=ConsumerMetrics(CollectorRegistry(), "test"), tail=None)
        processor.writers[ACTIONS.name] = TrailWriter(clickhouse, table)
        message = SimpleNamespace(topic="collection.actions", partition=0, offset=1, key=None)
        processor.batch.actions.append((record(debtor, 1), message, 1))  # type: ignore[arg-type]
        with pytest.raises(ClickHouseCorrupted) as raised:
            processor.flush()
        assert is_corruption(raised.value.__cause__) and "marks file" in str(raised.value)
        assert processor.pending() == 1, "the batch stays unstored and uncommitted"
    finally:
        clickhouse.command(f"DROP DATABASE {database} SYNC")
