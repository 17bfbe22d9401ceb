import io
import itertools
import json
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from producers.simulator import CORE_RULES, NEGATIVE_SCENARIOS, SimConfig, SimEvent, Simulation, run_simulation
from schemas.contract import parse_event


@pytest.fixture(scope="module")
def sample() -> list[SimEvent]:
    sim = Simulation(SimConfig(seed=11, debtors=200, violation_rate=0.05, negative_rate=0.03))
    return list(itertools.islice(sim.events(), 15_000))


def test_every_simulated_event_satisfies_the_contract(sample: list[SimEvent]) -> None:
    for item in sample:
        parse_event(item.event)


def test_the_same_seed_gives_the_same_events_and_ids() -> None:
    def first(seed: int) -> list[dict[str, object]]:
        return [e.event for e in itertools.islice(Simulation(SimConfig(seed=seed, debtors=50)).events(), 500)]
    assert first(3) == first(3)
    assert first(3) != first(4)


def test_reference_events_come_first(sample: list[SimEvent]) -> None:
    kinds = [item.event.get("kind") for item in sample[:300]]
    assert set(kinds[:100]) <= {"AGENCY_LICENSE", "COLLECTOR_CERTIFICATION", "DEBTOR_PROFILE"}
    assert {"AGENCY_LICENSE", "COLLECTOR_CERTIFICATION", "DEBTOR_PROFILE"} <= set(kinds)


def test_a_realistic_mix_of_channels_scripts_and_zones(sample: list[SimEvent]) -> None:
    types = Counter(item.event.get("action_type") for item in sample if "action_type" in item.event)
    assert {"CALL_ATTEMPT", "CALL_CONNECTED", "VOICEMAIL", "SMS", "EMAIL", "IM_MESSAGE", "LETTER", "FIELD_VISIT",
            "PAYMENT_PLAN_OFFER"} <= set(types)
    texts = " ".join(item.event.get("message_text", "") for item in sample)
    assert "贷款" in texts and "還款" in texts and "balance" in texts  # Simplified, Traditional, English
    zones = {item.event["timezone"] for item in sample if item.event.get("kind") == "DEBTOR_PROFILE"}
    assert {"Asia/Shanghai", "America/New_York", "Europe/London"} <= zones


def test_every_core_rule_gets_labelled_violations_each_on_exactly_one_event(sample: list[SimEvent]) -> None:
    by_scenario: dict[str, list[SimEvent]] = defaultdict(list)
    for item in sample:
        if item.scenario:
            by_scenario[item.scenario].append(item)
    assert {item.expected_rule for item in sample if item.expected_rule} == set(CORE_RULES)
    end = datetime.fromisoformat(sample[-1].event["occurred_at"])
    complete = 0
    for label, items in by_scenario.items():
        alerting = [i for i in items if i.expected_rule]
        if label.startswith("-"):
            assert alerting == [], label
            assert label.split("#")[0][1:] in NEGATIVE_SCENARIOS
            continue
        assert len(alerting) <= 1, label
        started = datetime.fromisoformat(items[0].event["occurred_at"])
        if end - started > timedelta(days=20):  # scenarios span at most 10 days: this one has ended
            assert len(alerting) == 1, label
            assert alerting[0].expected_rule == label.split("#")[0][1:]
            complete += 1
    assert complete > 100


def test_baseline_traffic_is_compliant_by_construction(sample: list[SimEvent]) -> None:
    """Outside scenarios: proactive contact only 09:00-19:59 local, only with the debtor, with debt
    information on every message, and (US) no call within 7 days after a conversation."""
    zones = {i.event["debtor_id"]: ZoneInfo(i.event["timezone"]) for i in sample
             if i.event.get("kind") == "DEBTOR_PROFILE"}
    last_conversation: dict[str, datetime] = {}
    for item in sample:
        event = item.event
        if item.scenario or "action_type" not in event:
            continue
        local = datetime.fromisoformat(event["occurred_at"]).astimezone(zones[event["debtor_id"]])
        assert event["counterparty"] == "DEBTOR"
        if event["direction"] == "OUTBOUND":
            assert 9 <= local.hour < 20, event
        if event["action_type"] in ("SMS", "EMAIL", "IM_MESSAGE", "LETTER"):
            assert {"amount_due_minor", "currency", "due_date"} <= set(event), event
        if event["action_type"] == "CALL_CONNECTED":
            assert event.get("recording_id"), event
        us = str(zones[event["debtor_id"]]).startswith("America/")
        is_call = event["action_type"] in ("CALL_ATTEMPT", "VOICEMAIL", "CALL_CONNECTED")
        if us and is_call and event["direction"] == "OUTBOUND" and event["debtor_id"] in last_conversation:
            assert (local.date() - last_conversation[event["debtor_id"]].date()).days >= 8, event
        if event["action_type"] == "CALL_CONNECTED":
            last_conversation[event["debtor_id"]] = local


def test_actions_are_emitted_in_event_time_order(sample: list[SimEvent]) -> None:
    """Actions come in event-time order; only the late cease request (a reference event) is out of it."""
    stamps = [datetime.fromisoformat(i.event["occurred_at"]) for i in sample if "action_type" in i.event]
    assert all(b >= a for a, b in itertools.pairwise(stamps))


def test_run_simulation_paces_and_writes_labels() -> None:
    sent: list[dict[str, object]] = []
    now = [0.0]
    labels = io.StringIO()
    progress = run_simulation(Simulation(SimConfig(seed=5, debtors=100, violation_rate=0.2)), sent.extend,
                              rate=1000, duration_s=3, labels=labels,
                              clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert progress.sent == len(sent)
    assert 2900 <= len(sent) <= 3100  # 3 simulated seconds at 1,000 events/s
    rows = [json.loads(line) for line in labels.getvalue().splitlines()]
    assert progress.labelled == sum(1 for r in rows if r["expected_rule"]) > 0
    sent_ids = {e["event_id"] for e in sent}
    assert all(r["event_id"] in sent_ids for r in rows)
