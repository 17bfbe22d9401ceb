"""The project's HTTP server: ingest, the read-only schema registry, the auditor API and console,
/healthz and /metrics. Each role serves the parts it has: `up` all of them, `api` the auditor's."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from deploy.auditor.access_log import AccessLogMiddleware
from deploy.auditor.access_log import writer as access_log_writer
from deploy.auditor.api import auditor_router
from deploy.auditor.tokens import TokenStore
from deploy.clickhouse_client import ClientPool
from deploy.embedded_broker import port_open
from deploy.rate_limit import RateLimiter
from deploy.settings import Settings
from producers.http_ingest import ingest_router
from producers.sdk import AuditProducer
from schemas.catalog import Catalog
from schemas.registry_api import registry_router

HealthCheck = Callable[[], dict[str, bool]]
CONSOLE_DIR = Path(__file__).parent / "auditor" / "console"


def create_app(catalog: Catalog, metrics: CollectorRegistry, *, producer: AuditProducer | None = None,
               max_body_bytes: int = 8 * 1024 * 1024, max_events: int = 10_000,
               health: HealthCheck | None = None, trail: ClientPool | None = None,
               tokens: TokenStore | None = None, ingest_per_s: float = 0.0, api_per_s: float = 0.0) -> FastAPI:
    """The app; with `trail` and `tokens`, also the auditor API (/api/v1) and its console (/)."""
    app = FastAPI(title="collection-audit", version="0.1.0",
                  description="Audit trail and compliance monitor for debt collection.")
    app.include_router(registry_router(catalog))
    if producer is not None:
        app.include_router(ingest_router(producer, max_body_bytes, max_events, RateLimiter(ingest_per_s)))
    if trail is not None and tokens is not None:
        app.include_router(auditor_router(trail, tokens, RateLimiter(api_per_s)))
        app.add_middleware(AccessLogMiddleware, write=access_log_writer(trail.borrow))
        app.mount("/console", StaticFiles(directory=CONSOLE_DIR), name="console")

        @app.get("/", include_in_schema=False)
        def console() -> FileResponse:
            return FileResponse(CONSOLE_DIR / "index.html")

    @app.get("/healthz", tags=["operations"])
    def healthz(response: Response) -> dict[str, object]:
        checks = health() if health else {}
        healthy = all(checks.values())
        response.status_code = 200 if healthy else 503
        return {"status": "ok" if healthy else "unhealthy", "checks": checks}

    @app.get("/metrics", tags=["operations"])
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    return app


def kafka_reachable(bootstrap_servers: str) -> bool:
    """Whether any bootstrap server accepts a TCP connection (a cheap liveness signal, not a metadata call)."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if port.isdigit() and port_open(host or "127.0.0.1", int(port)):
            return True
    return False


def polling_health(metrics: CollectorRegistry, sample: str, labels: dict[str, str] | None = None,
                   startup_grace_s: float = 300.0, max_age_s: float = 120.0) -> HealthCheck:
    """/healthz of a consumer role: healthy while its loop keeps polling Kafka (it keeps polling while
    ClickHouse is down and it backs off, so an outage elsewhere does not get it restarted)."""
    started = time.time()

    def check() -> dict[str, bool]:
        last = metrics.get_sample_value(sample, labels or {})
        if last is None:
            return {"consumer_polling": time.time() - started < startup_grace_s}
        return {"consumer_polling": time.time() - last < max_age_s}
    return check


def serve_operations(settings: Settings, metrics: CollectorRegistry, port: int, health: HealthCheck) -> HttpServer:
    """/metrics and /healthz of a role without other HTTP duties (store, rules), on `port`."""
    server = HttpServer(create_app(Catalog.load(), metrics, health=health), settings.http_host, port)
    server.start()
    return server


class HttpServer:
    """uvicorn in a background thread, stoppable."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout_s / 0.05)):
            if self._server.started:
                return
            if not self._thread.is_alive():
                raise RuntimeError("the HTTP server failed to start (port in use?)")
            deadline.wait(0.05)
        raise RuntimeError(f"the HTTP server did not start within {timeout_s:.0f}s")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def serve(self, should_stop: Callable[[], bool], on_started: Callable[[], object] = lambda: None) -> None:
        """A role's main loop: start, serve until `should_stop()`, stop."""
        self.start()
        try:
            on_started()
            while not should_stop():
                time.sleep(0.5)
        finally:
            self.stop()
