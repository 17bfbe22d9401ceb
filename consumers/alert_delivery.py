"""Pushing alerts to on-call: Prometheus Alertmanager (v2 API) and generic webhooks.

Delivery never blocks the rule consumer: alerts go into a bounded queue that one thread drains,
retrying each target with back-off. The durable record of an alert is the `collection.alerts`
topic (and `audit.alerts`); a push that fails for good is counted, not retried forever.

Suppression: Alertmanager identifies an alert by its labels (alertname, rule, severity, agency,
jurisdiction), so one ongoing violation pattern is one alert there however many events feed it,
and its own grouping decides who is paged when. We push a label set at most once per
`resend_s` (enough to keep it firing) and count the rest as suppressed.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger(__name__)


def alertmanager_payload(alert: dict[str, Any], firing_for: timedelta) -> dict[str, Any]:
    detected = alert["detected_at"]
    return {
        "labels": {"alertname": alert["rule_id"], "rule": alert["rule_id"], "severity": alert["severity"].lower(),
                   "agency": alert.get("agency_id") or "none", "jurisdiction": alert["jurisdiction"]},
        "annotations": {"summary": alert["summary"], "citation": alert["citation"],
                        "event_ids": ",".join(alert["event_ids"]), "alert_id": alert["alert_id"],
                        "debtor_id": alert["debtor_id"], "late": str(alert["late"]).lower()},
        "startsAt": detected.astimezone(UTC).isoformat(),
        "endsAt": (detected + firing_for).astimezone(UTC).isoformat(),
    }


def webhook_payload(alert: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in alert.items()}


class AlertDelivery:
    def __init__(self, alertmanager_url: str, webhook_urls: list[str], registry: CollectorRegistry, *,
                 resend_s: float = 60.0, max_queue: int = 10_000, attempts: int = 4,
                 firing_for: timedelta = timedelta(hours=1)) -> None:
        self.alertmanager_url = alertmanager_url.rstrip("/")
        self.webhook_urls = webhook_urls
        self.resend_s = resend_s
        self.attempts = attempts
        self.firing_for = firing_for
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queue)
        self._last_push: dict[tuple[str, ...], float] = {}
        self.pushed = Counter("collection_audit_alert_pushes_total", "Alert pushes by target and outcome",
                              ["target", "outcome"], registry=registry)
        self.suppressed = Counter("collection_audit_alerts_suppressed_total",
                                  "Alerts not pushed because their label set was pushed recently", ["rule"],
                                  registry=registry)
        self._thread = threading.Thread(target=self._run, name="alert-delivery", daemon=True)
        self.enabled = bool(self.alertmanager_url or self.webhook_urls)
        if self.enabled:
            self._thread.start()

    def submit(self, alert: dict[str, Any]) -> None:
        if not self.enabled:
            return
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.pushed.labels("queue", "dropped").inc()
            log.warning("alert delivery queue full: %s not pushed (it is in collection.alerts)", alert["alert_id"])

    def close(self, timeout_s: float = 10.0) -> None:
        if self.enabled:
            self._queue.put(None)
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is None:
                return
            if self.alertmanager_url:
                labels = alertmanager_payload(alert, self.firing_for)["labels"]
                key = tuple(sorted(labels.values()))
                now = time.monotonic()
                if now - self._last_push.get(key, -1e18) < self.resend_s:
                    self.suppressed.labels(alert["rule_id"]).inc()
                else:
                    self._last_push[key] = now
                    self._post("alertmanager", f"{self.alertmanager_url}/api/v2/alerts",
                               [alertmanager_payload(alert, self.firing_for)])
            for url in self.webhook_urls:
                self._post("webhook", url, webhook_payload(alert))

    def _post(self, target: str, url: str, body: Any) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        delay = 0.5
        for attempt in range(1, self.attempts + 1):
            request = urllib.request.Request(url, data=data, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if 200 <= response.status < 300:
                        self.pushed.labels(target, "ok").inc()
                        return
            except (urllib.error.URLError, OSError) as exc:
                log.warning("push to %s failed (attempt %d/%d): %s", url, attempt, self.attempts, exc)
            time.sleep(delay)
            delay = min(delay * 2, 10)
        self.pushed.labels(target, "failed").inc()
