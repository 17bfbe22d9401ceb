"""The auditor API over a real stack: every endpoint, the role matrix, injection attempts, limits,
exports, and the access log that records every call."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from clickhouse_connect.driver.client import Client

from deploy.auditor import queries
from deploy.auditor.tokens import TokenStore
from deploy.supervisor import EmbeddedStack
from tests.conftest import unique_token
from tests.e2e.auditor_data import RANGE, Trail, seed

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def trail(stack: EmbeddedStack, clickhouse: Client) -> Trail:
    return seed(stack, clickhouse)


@pytest.fixture(scope="module")
def tokens(stack: EmbeddedStack) -> dict[str, str]:
    store = TokenStore(stack.settings.tokens_path)
    run = unique_token(6)
    made = {role: store.create(f"test-{role}-{run}", role) for role in ("auditor", "on-call", "admin")}
    made["expired"] = store.create(f"test-expired-{run}", "admin", timedelta(seconds=-1))
    return made


@pytest.fixture(scope="module")
def api(stack: EmbeddedStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{stack.settings.http_host}:{stack.settings.http_port}/api/v1",
                      timeout=60) as client:
        yield client


def get(api: httpx.Client, token: str | None, path: str, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return api.get(path, params=params, headers=headers)


def ok(api: httpx.Client, token: str, path: str, **params: Any) -> Any:
    response = get(api, token, path, **params)
    assert response.status_code == 200, response.text
    return response.json()


def sql_ids(clickhouse: Client, sql: str, **parameters: Any) -> list[str]:
    return [str(r[0]) for r in clickhouse.query(sql, parameters=parameters).result_rows]


def test_tokens_are_required_checked_and_expire(api: httpx.Client, tokens: dict[str, str], trail: Trail) -> None:
    missing = get(api, None, "/actions")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert get(api, "ca_not-a-token", "/actions").status_code == 401
    expired = get(api, tokens["expired"], "/actions")
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    assert ok(api, tokens["on-call"], "/me")["role"] == "on-call"


ROLE_MATRIX = [  # (path, params, {role: status})
    ("/actions", {}, {"auditor": 200, "on-call": 200, "admin": 200}),
    ("/actions", {"format": "csv"}, {"auditor": 200, "on-call": 403, "admin": 200}),
    ("/alerts", {"format": "parquet"}, {"auditor": 200, "on-call": 403, "admin": 200}),
    ("/reports/quiet-hours", {"format": "csv"}, {"auditor": 200, "on-call": 403, "admin": 200}),
    ("/verify", {}, {"auditor": 200, "on-call": 403, "admin": 200}),
    ("/access-log", {}, {"auditor": 403, "on-call": 403, "admin": 200}),
    ("/dead-letters", {}, {"auditor": 200, "on-call": 200, "admin": 200}),
    ("/dead-letters", {"payloads": "true"}, {"auditor": 403, "on-call": 403, "admin": 200}),
]


@pytest.mark.parametrize(("path", "params", "expected"), ROLE_MATRIX)
def test_role_matrix(api: httpx.Client, tokens: dict[str, str], trail: Trail, path: str, params: dict[str, str],
                     expected: dict[str, int]) -> None:
    scoped = {"agency": trail.agency, "debtor": trail.debtor} if path == "/verify" else {"agency": trail.agency}
    if path == "/dead-letters":
        scoped = {}
    for role, status in expected.items():
        response = get(api, tokens[role], path, **RANGE if path not in ("/dead-letters", "/access-log") else {},
                       **scoped, **params)
        assert response.status_code == status, (role, path, params, response.text)


def test_actions_filter_and_page_by_cursor(api: httpx.Client, tokens: dict[str, str], trail: Trail,
                                           clickhouse: Client) -> None:
    expected = sql_ids(clickhouse, "SELECT event_id FROM audit.actions FINAL WHERE agency_id = {a:String} "
                       "ORDER BY occurred_at, event_id", a=trail.agency)
    assert sorted(expected) == sorted(trail.action_ids)
    seen, cursor, pages = [], None, 0
    while True:
        body = ok(api, tokens["auditor"], "/actions", agency=trail.agency, limit=3, **RANGE,
                  **({"cursor": cursor} if cursor else {}))
        seen += [r["event_id"] for r in body["rows"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected and pages == 3  # 8 actions: 3 + 3 + 2
    threat = ok(api, tokens["auditor"], "/actions", debtor=trail.debtor, action_type="IM_MESSAGE", **RANGE)["rows"]
    assert [r["event_id"] for r in threat] == [trail.quiet_id, trail.threat_id]
    assert threat[0]["local_time"].startswith("2024-05-02T23:30:00+08:00")
    assert threat[1]["message_text"] == "不還錢小心你全家出事"


def test_timeline_merges_actions_reference_events_and_alerts_in_local_time(
        api: httpx.Client, tokens: dict[str, str], trail: Trail) -> None:
    body = ok(api, tokens["on-call"], f"/debtors/{trail.debtor}/timeline", **RANGE)
    rows = body["rows"]
    times = [r["occurred_at"] for r in rows]
    assert times == sorted(times)
    kinds = {(r["kind"], r["type"]) for r in rows}
    assert {("action", "CALL_CONNECTED"), ("action", "IM_MESSAGE"), ("reference", "COMPLAINT_FILED"),
            ("reference", "COMPLAINT_RESOLVED"), ("alert", "THREAT"), ("alert", "QUIET_HOURS"),
            ("alert", "DAILY_CONTACT_CAP")} <= kinds
    quiet = [r for r in rows if r["kind"] == "alert" and r["type"] == "QUIET_HOURS"]
    assert quiet[0]["local_time"] == "2024-05-02 23:30:00" and quiet[0]["severity"] == "HIGH"
    filed = next(r for r in rows if r["type"] == "COMPLAINT_FILED")
    assert filed["local_time"] == "2024-05-04 09:00:00"  # the debtor's zone, not UTC
    us = ok(api, tokens["auditor"], f"/debtors/{trail.us_debtor}/timeline", **RANGE)["rows"]
    assert [r["local_time"] for r in us if r["kind"] == "action"] == ["2024-03-08 10:00:00", "2024-03-11 11:00:00"]
    paged = ok(api, tokens["auditor"], f"/debtors/{trail.debtor}/timeline", limit=4, **RANGE)
    rest = ok(api, tokens["auditor"], f"/debtors/{trail.debtor}/timeline", cursor=paged["next_cursor"], **RANGE)
    assert [r["id"] for r in paged["rows"] + rest["rows"]] == [r["id"] for r in rows]


def test_alerts_and_dead_letters(api: httpx.Client, tokens: dict[str, str], trail: Trail, clickhouse: Client) -> None:
    expected = sql_ids(clickhouse, "SELECT alert_id FROM audit.alerts FINAL WHERE agency_id = {a:String} "
                       "ORDER BY occurred_at, alert_id", a=trail.agency)
    body = ok(api, tokens["on-call"], "/alerts", agency=trail.agency, **RANGE)
    assert [r["alert_id"] for r in body["rows"]] == expected
    critical = ok(api, tokens["on-call"], "/alerts", agency=trail.agency, severity="CRITICAL", **RANGE)["rows"]
    assert [(r["rule_id"], r["event_ids"][0]) for r in critical] == [("THREAT", trail.threat_id)]
    assert ok(api, tokens["on-call"], "/alerts", agency=trail.agency, rule="QUIET_HOURS", **RANGE)["rows"][0][
        "event_ids"][0] == trail.quiet_id
    letters = ok(api, tokens["on-call"], "/dead-letters", limit=1000)["rows"]
    assert "raw_value_base64" not in letters[0]
    with_payload = ok(api, tokens["admin"], "/dead-letters", payloads="true", limit=1000)["rows"]
    ours = [r for r in with_payload if r["raw_value_base64"] == "bm90IGF2cm8gYXQgYWxs"]  # b"not avro at all"
    assert len(ours) == 1 and ours[0]["source_topic"] == "collection.actions"


def test_reports(api: httpx.Client, tokens: dict[str, str], trail: Trail, clickhouse: Client) -> None:
    def report(name: str, **params: str) -> list[dict[str, Any]]:
        body = ok(api, tokens["auditor"], f"/reports/{name}", **RANGE, **params)
        return [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]

    busiest = report("contacts-per-day", debtor=trail.debtor)[0]
    assert (busiest["local_date"], busiest["conversations"], busiest["cap"], busiest["over_cap"]) == \
        ("2024-05-02", 4, 3, True)
    by_rule = {r["rule_id"]: r["alerts"] for r in report("alerts-by-rule", agency=trail.agency)}
    expected = dict(clickhouse.query("SELECT rule_id, count() FROM audit.alerts FINAL WHERE agency_id = {a:String} "
                                     "GROUP BY rule_id", parameters={"a": trail.agency}).result_rows)
    assert by_rule == expected and by_rule["THREAT"] == 1
    [league] = report("collector-league", agency=trail.agency)
    # the collector's alerts: a complaint timer's alert (COMPLAINT_SLA) names none, and one fires here when the
    # shared stack's watermark, years ahead from other tests, passes the deadline before the resolution is read
    collectors = clickhouse.query("SELECT count() FROM audit.alerts FINAL WHERE agency_id = {a:String} AND "
                                  "collector_id = {c:String}", parameters={"a": trail.agency, "c": trail.collector})
    assert (league["collector_id"], league["actions"], league["alerts"]) == \
        (trail.collector, 8, collectors.result_rows[0][0])
    assert league["alerts"] >= 3  # the day over the cap, the quiet-hours message, the threat
    assert league["alerts_per_1000_actions"] == round(1000 * league["alerts"] / 8, 2)
    [complaint] = report("complaint-sla", debtor=trail.debtor)
    assert (complaint["complaint_id"], complaint["status"]) == (trail.complaint, "RESOLVED_IN_TIME")
    cells = {(r["weekday"], r["hour"]): r for r in report("quiet-hours", agency=trail.agency)}
    assert cells[(4, 23)]["contacts"] == 1 and cells[(4, 23)]["quiet_hours_alerts"] == 1  # Thursday 23:30
    assert sum(r["contacts"] for r in cells.values()) == 8
    missing = get(api, tokens["auditor"], "/reports/nope", **RANGE)
    assert missing.status_code == 404 and "contacts-per-day" in missing.json()["detail"]


def test_exports_stream_csv_and_parquet(api: httpx.Client, tokens: dict[str, str], trail: Trail,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    listed = ok(api, tokens["auditor"], "/actions", agency=trail.agency, **RANGE)["rows"]
    response = get(api, tokens["auditor"], "/actions", agency=trail.agency, format="csv", **RANGE)
    assert response.status_code == 200 and response.headers["x-total-rows"] == "8"
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["event_id"] for r in rows] == [r["event_id"] for r in listed]
    assert "不還錢小心你全家出事" in {r["message_text"] for r in rows}
    parquet = get(api, tokens["admin"], "/debtors/" + trail.debtor + "/timeline", format="parquet", **RANGE)
    table = pq.read_table(io.BytesIO(parquet.content))
    timeline = ok(api, tokens["admin"], f"/debtors/{trail.debtor}/timeline", **RANGE)["rows"]
    assert table.column("id").to_pylist() == [r["id"] for r in timeline]
    report = pq.read_table(io.BytesIO(get(api, tokens["auditor"], "/reports/alerts-by-rule", agency=trail.agency,
                                          format="parquet", **RANGE).content))
    assert "rule_id" in report.column_names and report.num_rows >= 3
    monkeypatch.setattr(queries, "MAX_EXPORT_ROWS", 5)
    too_big = get(api, tokens["auditor"], "/actions", agency=trail.agency, format="csv", **RANGE)
    assert too_big.status_code == 422 and "8 rows" in too_big.json()["detail"]


def test_limits_are_enforced_with_clear_errors(api: httpx.Client, tokens: dict[str, str], trail: Trail) -> None:
    long = get(api, tokens["auditor"], "/actions", **{"from": "2020-01-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"})
    assert long.status_code == 422 and "at most 400 days" in long.json()["detail"]
    backwards = get(api, tokens["auditor"], "/alerts", **{"from": "2024-05-01", "to": "2024-04-01"})
    assert backwards.status_code == 422 and "before" in backwards.json()["detail"]
    assert get(api, tokens["auditor"], "/actions", limit=5000).status_code == 422
    assert get(api, tokens["auditor"], "/actions", cursor="garbage!").status_code == 422
    assert get(api, tokens["auditor"], "/alerts", severity="EXTREME").status_code == 422
    assert get(api, tokens["auditor"], "/actions", format="xml").status_code == 422
    assert get(api, tokens["auditor"], "/actions", agency="x" * 200).status_code == 422


INJECTIONS = ["' OR 1=1 --", "x'); DROP TABLE audit.actions; --", "\\' OR \\'1\\'=\\'1", "{agency:String}",
              "a' UNION SELECT * FROM audit.access_log --"]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_in_every_filter_matches_nothing(api: httpx.Client, tokens: dict[str, str], trail: Trail,
                                                   clickhouse: Client, payload: str) -> None:
    admin = tokens["admin"]
    for path, names in (("/actions", ("agency", "collector", "debtor", "action_type")),
                        ("/alerts", ("agency", "collector", "debtor", "rule")),
                        ("/dead-letters", ("reason",)),
                        ("/reports/contacts-per-day", ("agency", "debtor")),
                        ("/reports/alerts-by-rule", ("agency", "rule")),
                        ("/reports/collector-league", ("agency",)),
                        ("/reports/complaint-sla", ("agency", "debtor")),
                        ("/reports/quiet-hours", ("agency",)),
                        ("/verify", ("agency", "debtor"))):
        for name in names:
            body = ok(api, admin, path, **RANGE, **{name: payload})
            if path == "/verify":
                assert body["ok"] and sum(t["rows"] for t in body["tables"].values()) == 0
            else:
                assert body["rows"] == [], (path, name)
    timeline = ok(api, admin, "/debtors/" + payload.replace("/", "_") + "/timeline", **RANGE)
    assert timeline["rows"] == []
    assert clickhouse.query("SELECT count() FROM audit.actions FINAL WHERE agency_id = {a:String}",
                            parameters={"a": trail.agency}).result_rows[0][0] == 8


def test_every_call_lands_in_the_access_log(api: httpx.Client, stack: EmbeddedStack, trail: Trail,
                                            clickhouse: Client) -> None:
    store = TokenStore(stack.settings.tokens_path)
    name = f"logged-{unique_token(6)}"
    token = store.create(name, "auditor")
    calls = [("/actions", {"agency": trail.agency, **RANGE}, 200, 8),
             (f"/debtors/{trail.debtor}/timeline", RANGE, 200, None),
             ("/reports/quiet-hours", {"agency": trail.agency, **RANGE}, 200, None),
             ("/actions", {"agency": trail.agency, "format": "csv", **RANGE}, 200, 8),
             ("/access-log", {}, 403, 0),
             ("/actions", {"limit": "5000"}, 422, 0)]
    for path, params, status, _ in calls:
        assert get(api, token, path, **params).status_code == status
    logged = clickhouse.query("SELECT path, query, status, rows, role FROM audit.access_log WHERE token_name = "
                              "{n:String} ORDER BY at", parameters={"n": name}).result_rows
    assert [(p, s) for p, _, s, _, _ in logged] == [("/api/v1" + p, s) for p, _, s, _ in calls]
    assert all(role == "auditor" for *_, role in logged)
    assert logged[0][3] == 8 and logged[3][3] == 8  # the CSV's rows are counted as they stream
    assert trail.agency in logged[0][1]
    anonymous = clickhouse.query("SELECT count() FROM audit.access_log WHERE token_name = '(no token)' "
                                 "AND status = 401").result_rows[0][0]
    assert anonymous >= 1
    admin = store.create(f"{name}-admin", "admin")
    seen = ok(api, admin, "/access-log", limit=1000)["rows"]
    assert {r["token_name"] for r in seen} >= {name}


def test_verify_reports_an_intact_trail(api: httpx.Client, tokens: dict[str, str], trail: Trail) -> None:
    body = ok(api, tokens["auditor"], "/verify", debtor=trail.debtor, **RANGE)
    assert body["ok"] and body["problems"] == []
    assert body["tables"]["audit.actions"] == {"chains": 1, "rows": 6, "problems": 0}
    assert body["tables"]["audit.alerts"]["rows"] >= 3
    assert body["tables"]["audit.reference_events"]["rows"] == 2  # the complaint and its resolution (May)
    agency = ok(api, tokens["auditor"], "/verify", agency=trail.agency, **RANGE)
    assert agency["ok"] and agency["tables"]["audit.actions"]["rows"] == 8


def test_overview_and_the_report_list(api: httpx.Client, tokens: dict[str, str], trail: Trail) -> None:
    overview = ok(api, tokens["on-call"], "/overview")
    assert overview["actions"] >= 8 and overview["debtors"] >= 2 and overview["daily_caps"] == {"CN": 3}
    listed = ok(api, tokens["on-call"], "/reports")
    assert [r["name"] for r in listed] == list(queries.REPORTS) == [r["name"] for r in overview["reports"]]


def test_the_query_cli_goes_through_the_api(stack: EmbeddedStack, tokens: dict[str, str], trail: Trail,
                                           clickhouse: Client) -> None:
    import json

    from typer.testing import CliRunner

    from deploy.cli import app

    env = {"COLLECTION_AUDIT_API_URL": f"http://{stack.settings.http_host}:{stack.settings.http_port}",
           "COLLECTION_AUDIT_API_TOKEN": tokens["on-call"]}
    runner = CliRunner()
    span = ["--from", RANGE["from"], "--to", RANGE["to"]]
    actions = runner.invoke(app, ["query", "actions", "--agency", trail.agency, *span, "-o", "json"], env=env)
    assert actions.exit_code == 0, actions.output
    assert sorted(json.loads(line)["event_id"] for line in actions.stdout.splitlines()) == sorted(trail.action_ids)
    heat = runner.invoke(app, ["query", "report", "quiet-hours", "--agency", trail.agency, *span, "-o", "csv"], env=env)
    assert heat.exit_code == 0 and "4,23,1,1" in heat.stdout.splitlines()
    timeline = runner.invoke(app, ["query", "timeline", trail.debtor, *span], env=env)
    assert timeline.exit_code == 0 and "THREAT" in timeline.stdout
    refused = runner.invoke(app, ["verify", "--debtor", trail.debtor, *span], env=env)  # on-call may not verify
    assert refused.exit_code == 1 and "403" in refused.output
    anonymous = runner.invoke(app, ["query", "alerts"], env={**env, "COLLECTION_AUDIT_API_TOKEN": ""})
    assert anonymous.exit_code == 2 and "COLLECTION_AUDIT_API_TOKEN" in anonymous.output
    logged = clickhouse.query("SELECT count() FROM audit.access_log WHERE token_name LIKE 'test-on-call-%' AND "
                              "path IN ('/api/v1/actions', '/api/v1/verify')").result_rows[0][0]
    assert logged >= 2
