import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.cli import app
from deploy.supervisor import EmbeddedStack
from producers.jsonl_import import ImportReport, validated_lines
from tests.conftest import action, read_topic

GOOD = json.dumps(action(debtor_id="D-file"), ensure_ascii=False)
REFERENCE = json.dumps({"kind": "CEASE_REQUEST", "occurred_at": "2024-05-01T09:00:00+08:00", "debtor_id": "D-file"})


def test_rejected_lines_are_reported_with_number_field_and_reason() -> None:
    text = "\n".join([GOOD, "", "{oops", json.dumps(action(counterparty="NEIGHBOUR")), REFERENCE, "[1, 2]"])
    report = ImportReport()
    events = list(validated_lines(io.BytesIO(text.encode()), report))
    assert [e.topic for e in events] == ["collection.actions", "collection.reference"]
    assert report.lines == 6 and report.accepted == 2 and report.blank == 1
    problems = {(r.line, e.field) for r in report.rejected for e in r.errors}
    assert problems == {(3, "(line)"), (4, "counterparty"), (6, "(event)")}


def test_event_ids_derived_from_content_make_reimport_idempotent() -> None:
    first = list(validated_lines(io.BytesIO(GOOD.encode()), ImportReport()))
    second = list(validated_lines(io.BytesIO(GOOD.encode()), ImportReport()))
    assert first[0].event_id == second[0].event_id
    other = list(validated_lines(io.BytesIO(json.dumps(action()).encode()), ImportReport()))
    assert other[0].event_id != first[0].event_id


def test_dry_run_validates_only_and_exits_non_zero_on_rejects(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(f"{GOOD}\n{json.dumps(action(direction='UP'))}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["produce", str(path), "--dry-run"])
    assert result.exit_code == 1
    assert "line 2: direction: 'UP' is not one of OUTBOUND, INBOUND" in result.stdout
    assert "2 lines: 1 valid, 1 rejected" in result.output


def test_dry_run_of_a_clean_file_exits_zero(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(f"{GOOD}\n{REFERENCE}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["produce", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["produce", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2 and "no such file" in result.output


@pytest.mark.stack
def test_produce_from_stdin_sends_valid_lines_in_file_order(stack: EmbeddedStack, tmp_path: Path) -> None:
    lines = [json.dumps(action(debtor_id="D-stdin", occurred_at=f"2024-05-01T10:00:0{i}+08:00")) for i in range(5)]
    lines.insert(2, json.dumps(action(debtor_id="D-stdin", agency_id=None)))
    env = {"KAFKA_BOOTSTRAP_SERVERS": stack.settings.bootstrap_servers,
           "COLLECTION_AUDIT_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "deploy.cli", "produce", "-"], input="\n".join(lines).encode(),
                          capture_output=True, env=env, timeout=60)
    assert done.returncode == 1, done.stderr.decode()
    assert b"line 3: agency_id: missing required field" in done.stdout
    found = read_topic(stack.settings.bootstrap_servers, "collection.actions", {"D-stdin"}, 5)
    assert [r["occurred_at"].second for _, r in found] == [0, 1, 2, 3, 4]
