"""A produced event raises an alert that reaches collection.alerts, audit.alerts and a real Alertmanager."""

import json
import urllib.parse
import urllib.request
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from deploy.supervisor import EmbeddedStack
from tests.conftest import action, read_topic, references_read, unique_token, wait_until

pytestmark = pytest.mark.stack


def alertmanager_alerts(url: str, agency: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"filter": f'agency="{agency}"'})
    with urllib.request.urlopen(f"{url}/api/v2/alerts?{query}", timeout=5) as response:
        return list(json.load(response))


def test_a_threat_reaches_the_topic_the_store_and_alertmanager(stack: EmbeddedStack, clickhouse: Client,
                                                                alertmanager_url: str) -> None:
    run = unique_token(8)
    debtor, agency = f"D-AL-{run}", f"AG-AL-{run}"
    assert stack.producer is not None
    references_before = references_read(stack)
    stack.producer.emit({"kind": "DEBTOR_PROFILE", "occurred_at": "2024-01-01T00:00:00Z", "debtor_id": debtor,
                         "timezone": "Asia/Shanghai", "jurisdiction": "CN"})
    stack.producer.emit({"kind": "AGENCY_LICENSE", "occurred_at": "2023-01-01T00:00:00Z", "agency_id": agency,
                         "status": "VALID", "valid_from": "2023-01-01T00:00:00Z"})
    # Kafka orders nothing across topics: an action judged before its agency's licence was read raises
    # UNQUALIFIED_COLLECTOR (licence unknown). Here the licence is on file first, as in production.
    assert wait_until(lambda: references_read(stack) >= references_before + 2, timeout_s=30)
    threat = action(debtor_id=debtor, agency_id=agency, collector_id=None, automated=True, action_type="IM_MESSAGE",
                    occurred_at="2024-05-01T15:00:00+08:00", message_text="不還錢小心你全家出事")
    threat_id = stack.producer.emit(threat)
    quiet = action(debtor_id=debtor, agency_id=agency, collector_id=None, automated=True, action_type="IM_MESSAGE",
                   occurred_at="2024-05-01T15:05:00+08:00")
    stack.producer.emit(quiet)

    alerts = read_topic(stack.settings.bootstrap_servers, "collection.alerts", {debtor}, expected=1)
    assert [(a["rule_id"], a["event_ids"][0]) for _, a in alerts] == [("THREAT", threat_id)]
    alert = alerts[0][1]
    assert alert["severity"] == "CRITICAL" and alert["jurisdiction"] == "CN" and alert["agency_id"] == agency
    assert alert["evidence"]["matched"] == "小心你全家" and "NIFA 2018" in alert["citation"]

    assert wait_until(lambda: bool(alertmanager_alerts(alertmanager_url, agency)), timeout_s=30)
    [pushed] = alertmanager_alerts(alertmanager_url, agency)
    assert pushed["labels"] == {"alertname": "THREAT", "rule": "THREAT", "severity": "critical", "agency": agency,
                                "jurisdiction": "CN"}
    assert pushed["annotations"]["event_ids"] == threat_id
    assert pushed["annotations"]["alert_id"] == alert["alert_id"]

    assert wait_until(lambda: clickhouse.query(
        "SELECT count() FROM audit.alerts FINAL WHERE debtor_id = {d:String}", parameters={"d": debtor}
    ).result_rows[0][0] == 1, timeout_s=30)
