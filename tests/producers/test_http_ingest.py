import json
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from deploy.http_server import create_app
from deploy.supervisor import EmbeddedStack
from schemas.catalog import Catalog
from tests.conftest import action, read_topic

pytestmark = pytest.mark.stack


@pytest.fixture()
def small_limits(stack: EmbeddedStack) -> Iterator[TestClient]:
    """The same app with tiny limits, sharing the stack's producer."""
    app = create_app(Catalog.load(), CollectorRegistry(), producer=stack.producer, max_body_bytes=2000,
                     max_events=3)
    with TestClient(app) as client:
        yield client


def test_a_json_array_is_accepted_with_its_ids(stack: EmbeddedStack, base_url: str) -> None:
    events = [action(debtor_id="D-http-1"), action(debtor_id="D-http-1")]
    answer = httpx.post(f"{base_url}/v1/events", json=events)
    assert answer.status_code == 202
    body = answer.json()
    assert body["accepted"] == 2 and len(body["event_ids"]) == 2
    found = read_topic(stack.settings.bootstrap_servers, "collection.actions", {"D-http-1"}, 2)
    assert [str(r["event_id"]) for _, r in found] == body["event_ids"]


def test_json_lines_and_a_single_object_are_accepted(base_url: str) -> None:
    lines = "\n".join(json.dumps(action()) for _ in range(3)) + "\n"
    answer = httpx.post(f"{base_url}/v1/events", content=lines.encode(),
                        headers={"content-type": "application/x-ndjson"})
    assert answer.status_code == 202 and answer.json()["accepted"] == 3
    single = httpx.post(f"{base_url}/v1/events", json=action())
    assert single.status_code == 202 and single.json()["accepted"] == 1


def test_one_bad_item_rejects_the_request_with_every_error_and_sends_nothing(
        stack: EmbeddedStack, base_url: str) -> None:
    assert stack.producer is not None
    sent_before = stack.producer.sent
    events = [action(), action(action_type="FAX"), action(currency="yen", occurred_at="now")]
    answer = httpx.post(f"{base_url}/v1/events", json=events)
    assert answer.status_code == 400
    errors = {(e["index"], e["field"]) for e in answer.json()["errors"]}
    assert errors == {(1, "action_type"), (2, "currency"), (2, "occurred_at")}
    assert "none were sent" in answer.json()["detail"]
    assert stack.producer.sent == sent_before and stack.producer.pending() == 0


@pytest.mark.parametrize(("body", "problem"), [
    (b"", "empty"), (b"{not json", "not JSON"), (b"\xff\xfe\x00", "not JSON"),
    (b'{"a": 1}\n{broken', "line 2"), (b'"just a string"', "(event)"),
])
def test_malformed_bodies_get_400(base_url: str, body: bytes, problem: str) -> None:
    answer = httpx.post(f"{base_url}/v1/events", content=body)
    assert answer.status_code == 400
    assert problem in answer.text


def test_a_body_over_the_limit_gets_413_before_parsing(small_limits: TestClient) -> None:
    answer = small_limits.post("/v1/events", content=b"[" + b" " * 3000 + b"]")
    assert answer.status_code == 413 and "2000 bytes" in answer.json()["detail"]


def test_a_chunked_body_over_the_limit_gets_413(small_limits: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b" " * 500

    answer = small_limits.post("/v1/events", content=chunks())
    assert answer.status_code == 413


def test_too_many_events_in_one_request_get_413(small_limits: TestClient) -> None:
    tiny = {"kind": "CEASE_WITHDRAWN", "occurred_at": "2024-05-01T09:00:00Z", "debtor_id": "D"}
    answer = small_limits.post("/v1/events", json=[tiny] * 4)
    assert answer.status_code == 413 and "limit is 3" in answer.json()["detail"]


def test_healthz_and_metrics(stack: EmbeddedStack, base_url: str) -> None:
    health = httpx.get(f"{base_url}/healthz")
    assert health.status_code == 200
    assert health.json()["checks"] == {"kafka": True, "embedded_broker": True, "store_consumer": True,
                                       "rule_consumer": True}
    metrics = httpx.get(f"{base_url}/metrics").text
    assert 'collection_audit_producer_delivered_total{producer="ingest"}' in metrics
    assert 'collection_audit_producer_outbox_pending{producer="ingest"} 0.0' in metrics
