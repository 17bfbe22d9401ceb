"""deploy/grafana: provisioning that matches the dashboards, ClickHouse panels that return rows from a
simulated trail on chDB, PromQL panels that promtool parses and whose metrics the roles export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import deploy
from deploy.supervisor import EmbeddedStack
from tests.conftest import wait_until
from tests.deploy.test_monitoring import PROMTOOL, exported_sample_names, metric_names_in, tool

GRAFANA = Path(deploy.__file__).parent / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))


def targets() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            found += [(f"{dashboard['uid']}: {panel['title']}", {**t, "panel": panel}) for t in panel["targets"]]
    return found


def test_dashboards_are_provisioned_and_use_only_provisioned_datasources() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "datasources.yml").read_text())
    provisioned = {s["uid"]: s["type"] for s in sources["datasources"]}
    assert "password" not in json.dumps(sources["datasources"][1].get("jsonData", {}))
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "dashboards.yml").read_text())
    assert providers["providers"][0]["options"]["path"]
    assert {p.stem for p in DASHBOARDS} == {"pipeline-health", "compliance-overview"}
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    for title, target in targets():
        for source in (target["datasource"], target["panel"]["datasource"]):
            assert provisioned.get(source["uid"]) == source["type"], title


def test_every_clickhouse_panel_returns_rows_from_a_simulated_trail(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "tests.deploy.dashboard_queries", f"chdb://{tmp_path / 'ch'}"],
                            capture_output=True, text=True, timeout=300, env={**os.environ})
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["variables"]["agency"] and set(found["variables"]["jurisdiction"]) >= {"CN", "US"}
    clickhouse_panels = {title for title, t in targets() if "rawSql" in t}
    assert set(found["panels"]) == clickhouse_panels and len(clickhouse_panels) >= 6
    for title, (rows_all, rows_filtered) in found["panels"].items():
        assert rows_all > 0, title
        assert 0 <= rows_filtered <= max(rows_all, 1), title


def test_promql_panels_parse_with_promtool(tmp_path: Path) -> None:
    expressions = [t["expr"] for _, t in targets() if "expr" in t]
    assert len(expressions) >= 10
    recorded = [{"record": f"dashboard:expression_{i}", "expr": e} for i, e in enumerate(expressions)]
    rules = {"groups": [{"name": "dashboard-expressions", "rules": recorded}]}
    (tmp_path / "expressions.yml").write_text(yaml.safe_dump(rules))
    checked = tool(PROMTOOL, "check", "rules", tmp_path / "expressions.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.stack
def test_every_metric_a_dashboard_plots_is_exported_by_a_role(stack: EmbeddedStack) -> None:
    assert wait_until(lambda: (stack.metrics.get_sample_value(
        "collection_audit_rules_last_poll_timestamp_seconds") or 0) > 0, 60)
    used = metric_names_in(" ".join(t["expr"] for _, t in targets() if "expr" in t))
    assert len(used) >= 10
    assert used - exported_sample_names(stack) == set()
