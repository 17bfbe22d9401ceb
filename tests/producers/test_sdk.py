import gc
import sys
import threading
import time
from pathlib import Path

import pytest

from deploy.embedded_broker import EmbeddedBroker
from deploy.supervisor import EmbeddedStack
from deploy.topics import apply_topics, load_topic_specs
from producers.outbox import OutboxInUse
from producers.sdk import AuditProducer, BatchRejected
from schemas.catalog import Catalog
from schemas.contract import EventRejected
from schemas.registry import CatalogRegistry
from tests.chaos.link import FaultyLink
from tests.conftest import action, free_port, read_topic

pytestmark = pytest.mark.stack
ACTIONS = "collection.actions"


def producer_for(bootstrap: str, outbox: Path, timeout_s: float = 10.0) -> AuditProducer:
    return AuditProducer({"bootstrap_servers": bootstrap}, CatalogRegistry(Catalog.load()), outbox,
                         delivery_timeout_s=timeout_s)


@pytest.fixture()
def producer(stack: EmbeddedStack, outbox_path: Path) -> AuditProducer:
    with producer_for(stack.settings.bootstrap_servers, outbox_path) as p:
        yield p


def test_emit_returns_once_kafka_acknowledged_the_event_keyed_by_debtor(
        stack: EmbeddedStack, producer: AuditProducer) -> None:
    event = action(debtor_id="D-sdk-1")
    event_id = producer.emit(event)
    assert producer.sent == 1 and producer.pending() == 0
    [(key, record)] = read_topic(stack.settings.bootstrap_servers, ACTIONS, {"D-sdk-1"}, 1)
    assert key == "D-sdk-1"
    assert str(record["event_id"]) == event_id
    assert record["message_text"] == event["message_text"]


def test_actions_of_one_debtor_keep_their_order(stack: EmbeddedStack, producer: AuditProducer) -> None:
    ids = producer.emit_many([action(debtor_id="D-order", occurred_at=f"2024-05-01T10:00:{s:02d}+08:00")
                              for s in range(40)])
    found = read_topic(stack.settings.bootstrap_servers, ACTIONS, {"D-order"}, 40)
    assert [str(r["event_id"]) for _, r in found] == ids


def test_an_invalid_event_raises_naming_the_field_and_sends_nothing(producer: AuditProducer) -> None:
    with pytest.raises(EventRejected) as caught:
        producer.emit(action(direction="SIDEWAYS"))
    assert [e.field for e in caught.value.errors] == ["direction"]
    assert "'SIDEWAYS' is not one of OUTBOUND, INBOUND" in str(caught.value)
    assert producer.sent == 0 and producer.pending() == 0


def test_a_batch_with_one_bad_event_sends_none_of_it(stack: EmbeddedStack, producer: AuditProducer) -> None:
    good = action(debtor_id="D-batch")
    with pytest.raises(BatchRejected) as caught:
        producer.emit_many([good, action(debtor_id="D-batch", occurred_at="2024-13-01T00:00:00Z")])
    assert list(caught.value.by_index) == [1]
    assert caught.value.errors[0].field == "[1].occurred_at"
    marker = producer.emit(action(debtor_id="D-batch", message_text="marker"))
    found = read_topic(stack.settings.bootstrap_servers, ACTIONS, {"D-batch"}, 2, timeout_s=5)
    assert [str(r["event_id"]) for _, r in found] == [marker]  # same partition: the marker came alone


def test_reference_events_go_to_their_topic_keyed_by_entity(stack: EmbeddedStack, producer: AuditProducer) -> None:
    producer.emit_many([
        {"kind": "AGENCY_LICENSE", "occurred_at": "2024-01-01T00:00:00Z", "agency_id": "AG-sdk", "status": "VALID",
         "valid_from": "2024-01-01T00:00:00Z"},
        {"kind": "CEASE_REQUEST", "occurred_at": "2024-05-01T09:00:00+08:00", "debtor_id": "D-sdk-ref"},
    ])
    found = read_topic(stack.settings.bootstrap_servers, "collection.reference", {"AG-sdk", "D-sdk-ref"}, 2)
    assert sorted((k, r["kind"]) for k, r in found) == [("AG-sdk", "AGENCY_LICENSE"), ("D-sdk-ref", "CEASE_REQUEST")]


def test_two_producers_cannot_share_an_outbox(stack: EmbeddedStack, producer: AuditProducer,
                                              outbox_path: Path) -> None:
    with pytest.raises(OutboxInUse, match="another producer"):
        producer_for(stack.settings.bootstrap_servers, outbox_path)


def _start_broker(broker: EmbeddedBroker) -> None:
    broker.start()
    apply_topics({"bootstrap_servers": broker.bootstrap_servers}, load_topic_specs(), single_node=True)


def _wait_for(condition: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.1)


def test_outbox_keeps_events_while_kafka_is_down_and_delivers_them_when_it_returns(
        tmp_path: Path, outbox_path: Path) -> None:
    broker = EmbeddedBroker(free_port(), tmp_path / "broker.log")
    with producer_for(broker.bootstrap_servers, outbox_path, timeout_s=2) as p:
        first = p.emit(action(debtor_id="D-outage"))  # broker not running: lands in the outbox
        started = time.monotonic()
        rest = p.emit_many([action(debtor_id="D-outage") for _ in range(5)])
        assert time.monotonic() - started < 1.0, "once the outbox holds events, new ones queue behind fast"
        assert p.pending() == 6 and p.sent == 0
        try:
            _start_broker(broker)
            _wait_for(lambda: p.pending() == 0, 30)
            assert p.pending() == 0
            found = read_topic(broker.bootstrap_servers, ACTIONS, {"D-outage"}, 6)
            assert [str(r["event_id"]) for _, r in found] == [first, *rest]
        finally:
            broker.stop()


def test_a_delivery_timeout_too_short_for_kafka_python_is_refused_at_once(outbox_path: Path) -> None:
    # below a second kafka-python refuses the client (delivery > linger + request timeout) at every
    # connect, and every event would wait in the outbox with nothing but a warning
    with pytest.raises(ValueError, match=r"delivery_timeout_s must be at least 1 second, not 0\.5"):
        producer_for("127.0.0.1:1", outbox_path, timeout_s=0.5)


def test_a_client_dropped_with_batches_in_flight_stops_at_once(tmp_path: Path, outbox_path: Path) -> None:
    """After a failed delivery the SDK drops its Kafka client; batches of it may still be in flight (a broker
    answering slowly, here a relay delaying every chunk). kafka-python's close() raises on those, which
    left the client's network thread running and a traceback at garbage collection, once per outage."""
    link = FaultyLink(free_port(), free_port())
    link.start()
    broker = EmbeddedBroker(link.upstream_port, tmp_path / "broker.log", advertised_port=link.listen_port)
    _start_broker(broker)

    unraisable: list[object] = []
    pytests_hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        with producer_for(f"127.0.0.1:{link.listen_port}", outbox_path, timeout_s=5) as p:
            p.emit(action(debtor_id="D-slow"))
            assert p._producer is not None
            thread = p._producer._sender  # the client's network thread (kafka-python's own attribute)
            assert isinstance(thread, threading.Thread) and thread.is_alive()
            link.delay_s = 3.0
            p._producer.send(ACTIONS, b"D-slow", b"in flight when the client is dropped")
            p._disconnect()  # what a failed delivery does
            thread.join(2)  # well before the in-flight batch could be answered or expire
            assert not thread.is_alive()
            gc.collect()
            assert unraisable == []
            link.delay_s = 0.0
            assert p.emit(action(debtor_id="D-slow"))  # a new client takes over
    finally:
        sys.unraisablehook = pytests_hook
        broker.stop()
        link.stop()


def test_outbox_survives_the_producer_and_the_broker_restarting(tmp_path: Path, outbox_path: Path) -> None:
    """Broker up -> delivered; broker stopped -> outbox; producer closed with rows left; broker and a
    new producer on the same outbox file started -> the rows are delivered, in order."""
    broker = EmbeddedBroker(free_port(), tmp_path / "broker.log")
    _start_broker(broker)
    try:
        p = producer_for(broker.bootstrap_servers, outbox_path, timeout_s=2)
        p.emit(action(debtor_id="D-restart"))
        assert p.sent == 1
        broker.stop()  # memory-only broker: what it held is gone (documented caveat)
        during = p.emit_many([action(debtor_id="D-restart", occurred_at=f"2024-05-02T10:00:0{i}+08:00")
                              for i in range(3)])
        assert p.close(timeout_s=1) == 3  # nothing delivered; all three stay on disk
        _start_broker(broker)
        with producer_for(broker.bootstrap_servers, outbox_path, timeout_s=5) as again:
            assert again.pending() == 3
            _wait_for(lambda: again.pending() == 0, 30)
            assert again.flush(5) == 0
        found = read_topic(broker.bootstrap_servers, ACTIONS, {"D-restart"}, 3)
        assert [str(r["event_id"]) for _, r in found] == during
    finally:
        broker.stop()


def test_emit_from_many_threads_loses_nothing(stack: EmbeddedStack, producer: AuditProducer) -> None:
    ids: list[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for _ in range(25):
            event_id = producer.emit(action(debtor_id=f"D-thread-{n}"))
            with lock:
                ids.append(event_id)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    found = read_topic(stack.settings.bootstrap_servers, ACTIONS, {f"D-thread-{n}" for n in range(4)}, 100)
    assert sorted(str(r["event_id"]) for _, r in found) == sorted(ids)
