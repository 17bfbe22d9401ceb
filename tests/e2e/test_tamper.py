"""Tamper test: after the store consumer has chained a debtor's actions, one row is altered, one
deleted and one forged directly in ClickHouse; `collection-audit verify` (through the API, with a
token) names exactly those three."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from typer.testing import CliRunner

from consumers.hash_chain import content_hash, link
from consumers.trail_writer import ACTIONS
from deploy.auditor.tokens import TokenStore
from deploy.cli import app
from deploy.supervisor import EmbeddedStack
from tests.conftest import action, unique_token, wait_until

pytestmark = pytest.mark.stack


def test_verify_names_exactly_the_altered_removed_and_inserted_rows(
        stack: EmbeddedStack, clickhouse: Client) -> None:
    debtor = f"D-TAMPER-{unique_token(8)}"
    assert stack.producer is not None
    ids = [stack.producer.emit(action(debtor_id=debtor, occurred_at=f"2024-07-{day:02d}T10:00:00+08:00",
                                      message_text=f"第{day}次提醒：您的贷款已逾期"))
           for day in range(1, 9)]
    stack.producer.flush(10)

    def rows() -> list[dict[str, Any]]:
        result = clickhouse.query(f"SELECT {', '.join(ACTIONS.columns)} FROM audit.actions "
                                  "WHERE debtor_id = {d:String} ORDER BY chain_seq", parameters={"d": debtor})
        return [dict(zip(result.column_names, r, strict=True)) for r in result.result_rows]

    assert wait_until(lambda: len(rows()) == 8, timeout_s=60)
    stored = {str(r["event_id"]): r for r in rows()}
    seq = {i: stored[i]["chain_seq"] for i in ids}
    altered, removed = ids[1], ids[5]  # chain positions 2 and 6

    runner = CliRunner()
    token = TokenStore(stack.settings.tokens_path).create(f"tamper-{debtor[-8:]}", "auditor")
    env = {"COLLECTION_AUDIT_API_URL": f"http://{stack.settings.http_host}:{stack.settings.http_port}",
           "COLLECTION_AUDIT_API_TOKEN": token}
    verify = ["verify", "--debtor", debtor, "--from", "2024-07-01", "--to", "2024-08-01", "--output", "json"]
    before = runner.invoke(app, verify, env=env)
    assert before.exit_code == 0, before.output
    assert json.loads(before.stdout)["tables"]["audit.actions"] == {"chains": 1, "rows": 8, "problems": 0}

    clickhouse.command("ALTER TABLE audit.actions UPDATE message_text = '已结清' WHERE event_id = {e:UUID} "
                       "SETTINGS mutations_sync = 2", parameters={"e": altered})
    clickhouse.command("ALTER TABLE audit.actions DELETE WHERE event_id = {e:UUID} SETTINGS mutations_sync = 2",
                       parameters={"e": removed})
    intruder = {**stored[ids[3]], "event_id": uuid.uuid4(), "message_text": "您已同意私下转账还款"}
    intruder["row_hash"] = link(intruder["prev_hash"], content_hash(intruder, ACTIONS.columns))
    clickhouse.insert("audit.actions", [[intruder[c] for c in ACTIONS.columns]], column_names=ACTIONS.columns)

    after = runner.invoke(app, verify, env=env)
    assert after.exit_code == 1, after.output
    problems = {(p["kind"], p["chain_seq"], p["row_id"]) for p in json.loads(after.stdout)["problems"]}
    assert problems == {("ALTERED", seq[altered], altered), ("REMOVED", seq[removed], None),
                        ("INSERTED", seq[ids[3]], str(intruder["event_id"]))}
    table = runner.invoke(app, verify[:-2], env=env)
    assert table.exit_code == 1 and "3 problem(s)" in table.output
