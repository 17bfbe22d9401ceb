"""Rate limits: the token bucket itself on a fake clock, and the app's answers (429 + Retry-After per
token on the API, per client on ingest; refusals in the access log)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from deploy.http_server import create_app
from deploy.rate_limit import RateLimiter
from deploy.supervisor import EmbeddedStack
from schemas.catalog import Catalog


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate_and_counts_each_client_apart() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, burst=4, clock=clock)
    assert [limiter.retry_after("a") for _ in range(4)] == [0.0] * 4
    assert limiter.retry_after("a") == pytest.approx(0.5)
    assert limiter.retry_after("b") == 0.0  # another client has its own bucket
    clock.now = 0.5
    assert limiter.retry_after("a") == 0.0 and limiter.retry_after("a") > 0
    clock.now = 100.0
    assert [limiter.retry_after("a") for _ in range(5)].count(0.0) == 4  # refilled to the burst, no more
    assert all(RateLimiter(0).retry_after("x") == 0.0 for _ in range(1000))  # 0 disables


@pytest.mark.stack
def test_the_api_refuses_a_token_over_its_rate_logs_it_and_spares_other_tokens(stack: EmbeddedStack) -> None:
    from deploy.auditor.tokens import TokenStore
    from deploy.clickhouse_client import ClientPool

    tokens = TokenStore(stack.settings.tokens_path)
    busy, other = tokens.create("rate-busy", "auditor"), tokens.create("rate-other", "auditor")
    app = create_app(Catalog.load(), CollectorRegistry(), trail=ClientPool(stack.settings.clickhouse),
                     tokens=tokens, api_per_s=1.0)
    with TestClient(app) as client:
        answers = [client.get("/api/v1/me", headers={"Authorization": f"Bearer {busy}"}) for _ in range(5)]
        assert [a.status_code for a in answers[:2]] == [200, 200]  # the burst
        refused = [a for a in answers if a.status_code == 429]
        assert refused and int(refused[0].headers["retry-after"]) >= 1 and "per second" in refused[0].json()["detail"]
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {other}"}).status_code == 200
        assert client.get("/healthz").status_code == 200  # only /api/ and /v1/events are limited
    logged = ClientPool(stack.settings.clickhouse)
    with logged.borrow() as ch:
        statuses = [r[0] for r in ch.query("SELECT status FROM audit.access_log WHERE token_name = 'rate-busy'")
                    .result_rows]
    assert statuses.count(429) == len(refused)


@pytest.mark.stack
def test_ingest_refuses_a_client_over_its_rate(stack: EmbeddedStack) -> None:
    app = create_app(Catalog.load(), CollectorRegistry(), producer=stack.producer, ingest_per_s=1.0)
    with TestClient(app) as client:
        statuses = [client.post("/v1/events", content=b"[]").status_code for _ in range(4)]
    assert statuses[:2] == [202, 202] and 429 in statuses
