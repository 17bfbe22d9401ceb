"""Secrets never logged: the PII key, API tokens (valid and mistyped), a ClickHouse password in the URL
and a Kafka SASL password appear in no log line, no file the roles write, no stored row and no
metrics or error response, also when the role fails because of them.

The one deliberate exception: `up` prints, once, a console link carrying a 12-hour auditor token for
the person who started it (as Jupyter does); that line is excluded and checked to be the only one."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from deploy.auditor.tokens import TokenStore
from deploy.embedded_broker import EmbeddedBroker
from deploy.settings import Settings
from tests.conftest import free_port, wait_until
from tests.e2e.processes import RoleProcess, simulated, sql

pytestmark = pytest.mark.stack
PII_KEY = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7"
CLICKHOUSE_PASSWORD = "Ch-pa55-never-shown"
SASL_PASSWORD = "Sasl-pa55-never-shown"
MISTYPED_TOKEN = "ca_mistyped-but-still-a-secret-0123456789"


def leaks(text: str, secrets: list[str]) -> list[str]:
    return [secret for secret in secrets if secret in text]


def test_secrets_appear_in_no_log_file_row_or_response(tmp_path: Path, broker: EmbeddedBroker) -> None:
    data_dir = tmp_path / "up"
    token = TokenStore(Settings(data_dir=data_dir).tokens_path).create("auditor-1", "auditor")
    secrets = [PII_KEY, token, MISTYPED_TOKEN, CLICKHOUSE_PASSWORD, SASL_PASSWORD]
    up = RoleProcess("up", None, "--data-dir", str(data_dir), "--kafka-port", str(free_port()),
                     COLLECTION_AUDIT_PII_KEY=PII_KEY, COLLECTION_AUDIT_API_REQUESTS_PER_S="0")
    base = f"http://127.0.0.1:{up.metrics_port}"
    try:
        assert up.wait_for_line("auditor console", timeout_s=90), "".join(up.log[-30:])
        responses = []
        with httpx.Client(base_url=base, timeout=30) as http:
            responses.append(http.post("/v1/events", json=list(simulated(200, seed=5))))
            for bearer in (token, MISTYPED_TOKEN):
                for path in ("/api/v1/me", "/api/v1/actions", "/api/v1/verify", "/api/v1/nowhere"):
                    responses.append(http.get(path, headers={"Authorization": f"Bearer {bearer}"}))
            responses.append(http.get("/api/v1/actions", params={"token": token}))
            responses.append(http.get("/metrics"))
            responses.append(http.get("/healthz"))
        assert responses[0].status_code in (200, 202), responses[0].text
        assert responses[1].status_code == 200 and responses[5].status_code == 401
        for response in responses:
            assert leaks(response.text, secrets) == [], f"{response.request.url} answers with a secret"
        time.sleep(2)  # the event stored, the access log written
    finally:
        up.stop()
    console_lines = [line for line in up.log if "#token=" in line]
    assert len(console_lines) == 1, "`up` prints the console link once"
    assert leaks("".join(line for line in up.log if line not in console_lines), secrets) == []

    # the roles fail on the secrets' account: still nothing in clear
    store = RoleProcess("store", broker, "--data-dir", str(tmp_path / "store"),
                        CLICKHOUSE_URL=f"http://writer:{CLICKHOUSE_PASSWORD}@127.0.0.1:{free_port()}/",
                        COLLECTION_AUDIT_PII_KEY=PII_KEY)
    assert store.process.wait(120) != 0, "the store cannot reach ClickHouse and says so"
    rules = RoleProcess("rules", broker, COLLECTION_AUDIT_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                        COLLECTION_AUDIT_KAFKA_SASL_MECHANISM="PLAIN", COLLECTION_AUDIT_KAFKA_SASL_USERNAME="rules",
                        COLLECTION_AUDIT_KAFKA_SASL_PASSWORD=SASL_PASSWORD)
    wait_until(lambda: rules.process.poll() is not None, timeout_s=15)  # fails or keeps retrying: either way
    if rules.process.poll() is None:
        rules.kill()
    for role in (store, rules):
        time.sleep(0.5)  # the stderr reader has the last lines
        assert leaks("".join(role.log), secrets) == [], "".join(role.log[-20:])
    assert any("ClickHouse" in line or "clickhouse" in line for line in store.log), "".join(store.log[-10:])

    written = [path for path in data_dir.rglob("*") if path.is_file() and "clickhouse" not in path.parts
               and path != Settings(data_dir=data_dir).tokens_path]
    assert written, "the stack writes logs and state into its data directory"
    for path in written:
        assert leaks(path.read_bytes().decode("utf-8", "replace"), secrets) == [], f"{path} holds a secret"
    stored = sql(f"chdb://{data_dir / 'clickhouse'}", "SELECT * FROM audit.access_log")
    assert len(stored) >= 9, "every API request is in the access log"
    assert any("[redacted]" in row["query"] for row in stored), "a token pasted into a URL is logged redacted"
    stored += sql(f"chdb://{data_dir / 'clickhouse'}", "SELECT * FROM audit.actions")
    assert leaks(repr(stored), secrets) == []
    assert leaks(repr(Settings(pii_key=PII_KEY, kafka_sasl_password=SASL_PASSWORD)), secrets) == []
