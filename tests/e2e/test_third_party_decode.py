"""A client we did not write reads our topics: confluent-kafka's consumer, SchemaRegistryClient and
AvroDeserializer, pointed at the registry endpoint of `collection-audit up`, decode exactly the
events sent through the SDK, the CLI import and HTTP ingest."""

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from deploy.supervisor import EmbeddedStack
from schemas.contract import record_to_json
from tests.conftest import action, unique_token

pytestmark = pytest.mark.stack
TOPICS = ("collection.actions", "collection.reference")


def _events(prefix: str) -> list[dict[str, Any]]:
    debtor = f"D-{prefix}-{unique_token(8)}"
    return [
        action(debtor_id=debtor, event_id=str(uuid.uuid4()), occurred_at="2024-03-10T01:59:59-05:00"),
        action(debtor_id=debtor, event_id=str(uuid.uuid4()), action_type="CALL_ATTEMPT", call_result="BUSY",
               occurred_at="2024-03-10T03:00:00-04:00", message_text=None, amount_due_minor=None, currency=None,
               due_date=None),
        action(debtor_id=debtor, event_id=str(uuid.uuid4()), action_type="IM_MESSAGE",
               message_text="您本期應還款1,250.00元，請通過官方App還款", attributes={"channel": "wechat"}),
        {"kind": "DEBTOR_PROFILE", "event_id": str(uuid.uuid4()), "occurred_at": "2024-01-01T00:00:00+08:00",
         "debtor_id": debtor, "timezone": "America/New_York", "jurisdiction": "US", "phone_region": "US"},
        {"kind": "CEASE_REQUEST", "event_id": str(uuid.uuid4()), "occurred_at": "2024-05-01T09:00:00+08:00",
         "debtor_id": debtor, "channels": ["EMAIL", "SMS"], "counterparty": "DEBTOR"},
    ]


def _decode_with_confluent(bootstrap: str, registry_url: str, keys: set[str], expected: int) -> list[dict[str, Any]]:
    deserialize = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "third-party-check",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    partitions = []
    for topic in TOPICS:
        partitions += [TopicPartition(topic, p, 0) for p in consumer.list_topics(topic).topics[topic].partitions]
    consumer.assign(partitions)
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    try:
        while len(found) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() or message.key().decode(errors="replace") not in keys:
                continue
            found.append(deserialize(message.value(), SerializationContext(message.topic(), MessageField.VALUE)))
    finally:
        consumer.close()
    return found


def test_confluent_avro_deserializer_reads_back_exactly_what_sdk_cli_and_http_sent(
        stack: EmbeddedStack, base_url: str, tmp_path: Path) -> None:
    assert stack.producer is not None
    via_sdk, via_cli, via_http = _events("sdk"), _events("cli"), _events("http")

    stack.producer.emit_many(via_sdk)

    path = tmp_path / "import.jsonl"
    path.write_text("\n".join(json.dumps(e, ensure_ascii=False) for e in via_cli) + "\n", encoding="utf-8")
    env = {"KAFKA_BOOTSTRAP_SERVERS": stack.settings.bootstrap_servers, "COLLECTION_AUDIT_DATA_DIR": str(tmp_path),
           "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "deploy.cli", "produce", str(path)], capture_output=True, env=env,
                          timeout=60)
    assert done.returncode == 0, done.stderr.decode()

    answer = httpx.post(f"{base_url}/v1/events", json=via_http)
    assert answer.status_code == 202, answer.text

    sent = via_sdk + via_cli + via_http
    keys = {e["debtor_id"] for e in sent}
    decoded = _decode_with_confluent(stack.settings.bootstrap_servers, base_url, keys, len(sent))
    got = sorted((record_to_json(r) for r in decoded), key=lambda e: e["event_id"])
    assert got == sorted(sent, key=lambda e: e["event_id"])
