"""The project's HTTP server: ingest, the read-only schema registry, /healthz and /metrics."""

from __future__ import annotations

import threading
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from producers.http_ingest import ingest_router
from producers.sdk import AuditProducer
from schemas.catalog import Catalog
from schemas.registry_api import registry_router

HealthCheck = Callable[[], dict[str, bool]]


def create_app(catalog: Catalog, metrics: CollectorRegistry, *, producer: AuditProducer | None = None,
               max_body_bytes: int = 8 * 1024 * 1024, max_events: int = 10_000,
               health: HealthCheck | None = None) -> FastAPI:
    app = FastAPI(title="collection-audit", version="0.1.0",
                  description="Audit trail and compliance monitor for debt collection.")
    app.include_router(registry_router(catalog))
    if producer is not None:
        app.include_router(ingest_router(producer, max_body_bytes, max_events))

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
