"""Rule case files: events in, expected alerts out, run on a fresh engine per case.

    rule: QUIET_HOURS            # the rule under test; only its alerts are compared
    defaults: {...}              # fields merged into every action of the file
    setup: [...]                 # reference events played before every case
    cases:
      - name: a call at 22:00:00 Shanghai time
        events:
          - {id: a1, action_type: CALL_ATTEMPT, occurred_at: "2024-05-01T22:00:00+08:00"}
        advance_to: "2024-06-01T00:00:00Z"   # optional: event time reaches this (timers)
        expect: [a1]             # ids of the events that must trigger an alert; [] = none
        late: [a1]               # optional: which of those alerts must be flagged late

Events are the integration contract's JSON (a reference event is one with `kind`); they go through
the same validation and Avro round trip as in production, so a case file cannot hold an event the
pipeline would reject.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from consumers.rules.engine import RuleEngine
from consumers.rules.ruleset import RULES_DIR, Ruleset
from consumers.rules.text_match import Lexicon
from schemas.codec import AvroCodec
from schemas.contract import EventRejected, parse_event, parse_rfc3339

CASES_DIR = RULES_DIR / "cases"
_CASE_KEYS = {"name", "events", "expect", "late", "advance_to"}


@dataclass(frozen=True)
class CaseResult:
    file: str
    rule: str
    name: str
    passed: bool
    expected: tuple[str, ...]
    got: tuple[str, ...]
    problem: str = ""


def case_paths(path: Path | None) -> list[Path]:
    path = path or CASES_DIR
    return sorted(path.glob("*.yaml")) if path.is_dir() else [path]


def run_case_files(paths: list[Path], ruleset: Ruleset, lexicon: Lexicon, codec: AvroCodec) -> Iterator[CaseResult]:
    for path in paths:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            yield CaseResult(str(path), "?", "(file)", False, (), (), f"not valid YAML: {exc}")
            continue
        rule_id = data.get("rule") if isinstance(data, dict) else None
        try:
            ruleset.rule(str(rule_id))
        except KeyError:
            yield CaseResult(str(path), str(rule_id), "(file)", False, (), (), f"unknown rule {rule_id!r}")
            continue
        for case in data.get("cases") or []:
            yield _run_case(path, str(rule_id), data, case, ruleset, lexicon, codec)


def _run_case(path: Path, rule_id: str, data: dict[str, Any], case: dict[str, Any], ruleset: Ruleset,
              lexicon: Lexicon, codec: AvroCodec) -> CaseResult:
    name = str(case.get("name", "?"))
    unknown = set(case) - _CASE_KEYS
    if unknown:
        return CaseResult(str(path), rule_id, name, False, (), (), f"unknown keys {sorted(unknown)}")
    expected = tuple(sorted(case.get("expect") or []))
    expected_late = set(case.get("late") or [])
    ids: dict[str, str] = {}
    engine = RuleEngine(ruleset, lexicon)
    alerts: list[dict[str, Any]] = []
    try:
        for raw in [*(data.get("setup") or []), *(case.get("events") or [])]:
            event = dict(raw)
            label = str(event.pop("id", f"_{len(ids)}"))
            event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{path.name}/{name}/{label}"))
            ids[event_id] = label
            if "kind" not in event:
                event = {**(data.get("defaults") or {}), **event}
            event["event_id"] = event_id
            validated = parse_event(event)
            record = codec.decode(validated.subject, codec.encode(validated.subject, validated.record)).record
            if "kind" in event:
                alerts.extend(engine.on_reference(record))
            else:
                alerts.extend(engine.on_action(record))
        if case.get("advance_to"):
            moment, _ = parse_rfc3339(str(case["advance_to"]))
            alerts.extend(engine.advance(moment))
    except EventRejected as exc:
        return CaseResult(str(path), rule_id, name, False, expected, (), f"event rejected by the contract: {exc}")
    mine = [a for a in alerts if a["rule_id"] == rule_id]
    got = tuple(sorted(ids.get(a["event_ids"][0], "?") for a in mine))
    late_got = {ids.get(a["event_ids"][0], "?") for a in mine if a["late"]}
    problem = ""
    if got != expected:
        problem = f"expected alerts on {list(expected)}, got {list(got)}"
    elif expected_late and not expected_late <= late_got:
        problem = f"expected late alerts on {sorted(expected_late)}, late: {sorted(late_got)}"
    return CaseResult(str(path), rule_id, name, not problem, expected, got, problem)

