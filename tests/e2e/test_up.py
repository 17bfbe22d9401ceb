"""`collection-audit up` as a user runs it: a separate process, then Ctrl-C."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from deploy.embedded_broker import port_open
from tests.conftest import free_port, read_topic

pytestmark = pytest.mark.stack


def test_up_with_the_simulator_produces_events_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    kafka_port, http_port = free_port(), free_port()
    labels = tmp_path / "labels.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.cli", "up", "--data-dir", str(tmp_path), "--kafka-port", str(kafka_port),
         "--http-port", str(http_port), "--simulate", "--rate", "2000", "--violation-rate", "0.05",
         "--labels", str(labels)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("up did not become healthy within 30 s")
        time.sleep(3)
        bootstrap = f"127.0.0.1:{kafka_port}"
        profiles = read_topic(bootstrap, "collection.reference", {f"D{i:06d}" for i in range(1, 51)}, 50)
        assert {r["kind"] for _, r in profiles} == {"DEBTOR_PROFILE"}
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr.decode()
    assert "simulated events sent" in stderr.decode()
    assert not port_open("127.0.0.1", kafka_port), "the broker child must stop with the supervisor"
    assert not port_open("127.0.0.1", http_port)
    assert labels.read_text().count("\n") > 0
