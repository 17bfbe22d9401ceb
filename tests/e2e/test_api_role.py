"""`collection-audit api` as its own process over its own embedded ClickHouse: it migrates, serves
the API and the console, and refuses what the role does not allow."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from deploy.auditor.tokens import TokenStore
from tests.conftest import free_port


def test_the_api_role_serves_the_console_and_the_api(tmp_path: Path) -> None:
    port = free_port()
    token = TokenStore(tmp_path / "api-tokens.json").create("ops", "on-call")
    process = subprocess.Popen([sys.executable, "-m", "deploy.cli", "api", "--data-dir", str(tmp_path),
                                "--http-port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"api did not start: {process.stderr.read() if process.stderr else ''}")
                time.sleep(0.3)
        console = httpx.get(f"{base}/")
        assert console.status_code == 200 and "auditor console" in console.text
        assert httpx.get(f"{base}/console/../api-tokens.json").status_code == 404
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{base}/api/v1/me", headers=headers).json()["role"] == "on-call"
        assert httpx.get(f"{base}/api/v1/actions", headers=headers).json()["rows"] == []
        assert httpx.get(f"{base}/api/v1/verify", headers=headers).status_code == 403
        assert httpx.get(f"{base}/api/v1/actions").status_code == 401
    finally:
        process.terminate()
        process.wait(30)
