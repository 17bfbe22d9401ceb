"""deploy/prometheus and deploy/alertmanager, checked by the real tools (Debian's promtool, amtool and
Alertmanager, installed by `make test`) and against the metrics the roles really export."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import deploy
from deploy.supervisor import EmbeddedStack
from tests.conftest import running_alertmanager, wait_until

PROMTOOL, AMTOOL = "/usr/bin/promtool", "/usr/bin/amtool"
DEPLOY = Path(deploy.__file__).parent
RULES = DEPLOY / "prometheus" / "rules" / "collection-audit.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"


def tool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-k8s.yml"])
def test_prometheus_configs_pass_promtool(config: str) -> None:
    result = tool(PROMTOOL, "check", "config", DEPLOY / "prometheus" / config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerting_rules_pass_promtool_and_their_unit_tests() -> None:
    checked = tool(PROMTOOL, "check", "rules", RULES)
    assert checked.returncode == 0 and "SUCCESS" in checked.stdout, checked.stdout + checked.stderr
    tested = tool(PROMTOOL, "test", "rules", *sorted((DEPLOY / "prometheus" / "tests").glob("*.yml")))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def metric_names_in(text: str) -> set[str]:
    return set(re.findall(r"\bcollection_audit_\w+", text))


def exported_sample_names(stack: EmbeddedStack) -> set[str]:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {metric.name + suffix for metric in stack.metrics.collect() for suffix in suffixes.get(metric.type, ("",))}


@pytest.mark.stack
def test_every_metric_the_alerting_rules_use_is_exported_by_a_role(stack: EmbeddedStack) -> None:
    used = metric_names_in(RULES.read_text())
    assert len(used) >= 10
    # the rule consumer registers its delivery metrics once its engine is built: wait for its first poll
    assert wait_until(lambda: (stack.metrics.get_sample_value(
        "collection_audit_rules_last_poll_timestamp_seconds") or 0) > 0, 60)
    assert used - exported_sample_names(stack) == set()


def test_alertmanager_config_passes_amtool_and_routes_critical_to_the_pager() -> None:
    checked = tool(AMTOOL, "check-config", ALERTMANAGER_CONFIG)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    cases = {"pager": ["severity=critical", "alertname=THREAT_VIOLENCE", "rule=THREAT_VIOLENCE", "agency=AG1"],
             "chat": ["severity=high", "alertname=DAILY_CONTACT_CAP", "rule=DAILY_CONTACT_CAP"]}
    cases_pipeline = ["severity=warning", "component=pipeline", "alertname=CollectionAuditDeadLetters"]
    for receiver, labels in [*cases.items(), ("chat", cases_pipeline)]:
        routed = tool(AMTOOL, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels)
        assert routed.stdout.strip() == receiver, (labels, routed.stdout, routed.stderr)


def api(url: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(f"{url}/api/v2/{path}", method="POST" if body is not None else "GET",
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def test_direct_violation_alerts_silence_prometheus_summary_of_the_same_rule_only(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "pagerduty-routing-key").write_text("0" * 32)
    (secrets / "slack-webhook-url").write_text("http://127.0.0.1:9/nowhere")
    config = ALERTMANAGER_CONFIG.read_text().replace("/etc/alertmanager/secrets", str(secrets))
    direct = {"alertname": "THREAT_VIOLENCE", "rule": "THREAT_VIOLENCE", "severity": "critical", "agency": "AG1",
              "jurisdiction": "CN"}
    summaries = [{"alertname": "CollectionAuditCriticalComplianceAlerts", "rule": rule, "severity": "critical",
                  "component": "compliance"} for rule in ("THREAT_VIOLENCE", "INSULT_ABUSE")]
    with running_alertmanager(config, tmp_path) as url:
        api(url, "alerts", [{"labels": labels} for labels in [direct, *summaries]])
        deadline = time.monotonic() + 15
        while True:
            alerts = {a["labels"]["alertname"] + "/" + a["labels"]["rule"]: a["status"] for a in api(url, "alerts")}
            if len(alerts) == 3 and alerts["CollectionAuditCriticalComplianceAlerts/THREAT_VIOLENCE"]["inhibitedBy"]:
                break
            assert time.monotonic() < deadline, alerts
            time.sleep(0.2)
        assert alerts["CollectionAuditCriticalComplianceAlerts/THREAT_VIOLENCE"]["state"] == "suppressed"
        assert alerts["CollectionAuditCriticalComplianceAlerts/INSULT_ABUSE"]["inhibitedBy"] == []
        assert alerts["THREAT_VIOLENCE/THREAT_VIOLENCE"]["inhibitedBy"] == []
        groups = {g["receiver"]["name"] for g in api(url, "alerts/groups")}
        assert groups == {"pager"}
