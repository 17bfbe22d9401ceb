import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers.reference_state import ReferenceState
from schemas.contract import to_micros

T0 = datetime(2024, 5, 1, 10, tzinfo=UTC)


def ref(kind: str, at: datetime, **fields: Any) -> dict[str, Any]:
    base = {"kind": kind, "event_id": uuid.uuid4(), "occurred_at": at, "debtor_id": None, "agency_id": None,
            "collector_id": None, "timezone": None, "phone_region": None, "jurisdiction": None, "status": None,
            "valid_from": None, "valid_to": None}
    return base | fields


def test_licence_status_at_the_moment_of_the_action() -> None:
    state = ReferenceState()
    state.apply(ref("AGENCY_LICENSE", T0 - timedelta(days=30), agency_id="A", status="VALID",
                    valid_from=T0 - timedelta(days=30), valid_to=T0 + timedelta(days=30)))
    state.apply(ref("AGENCY_LICENSE", T0 + timedelta(days=10), agency_id="A", status="SUSPENDED"))
    assert state.licence_status("A", T0 - timedelta(days=31)) == "UNKNOWN"  # nothing known yet then
    assert state.licence_status("A", T0) == "VALID"
    assert state.licence_status("A", T0 + timedelta(days=11)) == "SUSPENDED"
    assert state.licence_status("B", T0) == "UNKNOWN"


def test_licence_expiry_and_not_yet_valid() -> None:
    state = ReferenceState()
    state.apply(ref("AGENCY_LICENSE", T0, agency_id="A", status="VALID", valid_from=T0 + timedelta(days=1),
                    valid_to=T0 + timedelta(days=2)))
    assert state.licence_status("A", T0) == "NOT_YET_VALID"
    assert state.licence_status("A", T0 + timedelta(days=1, hours=1)) == "VALID"
    assert state.licence_status("A", T0 + timedelta(days=2)) == "EXPIRED"  # valid_to is exclusive


@pytest.mark.parametrize("in_micros", [False, True])
def test_certification_lapses_365_days_after_training(in_micros: bool) -> None:
    state = ReferenceState(in_micros=in_micros)
    trained = T0 - timedelta(days=400)
    state.apply(ref("COLLECTOR_CERTIFICATION", trained, collector_id="C", agency_id="A", valid_from=trained))

    def at(moment: datetime) -> Any:
        return to_micros(moment) if in_micros else moment

    assert state.certification_status("C", at(trained + timedelta(days=365) - timedelta(microseconds=1))) == "VALID"
    assert state.certification_status("C", at(trained + timedelta(days=365))) == "EXPIRED"
    assert state.certification_status("C", at(trained + timedelta(days=364))) == "VALID"
    assert state.certification_status("C", at(trained + timedelta(days=366))) == "EXPIRED"
    assert state.certification_status(None, T0) == "NOT_APPLICABLE"
    assert state.certification_status("other", T0) == "UNKNOWN"


def test_applying_the_same_record_twice_changes_nothing() -> None:
    state = ReferenceState()
    record = ref("AGENCY_LICENSE", T0, agency_id="A", status="VALID", valid_from=T0)
    state.apply(record)
    state.apply(record)
    state.apply(ref("AGENCY_LICENSE", T0 + timedelta(days=1), agency_id="A", status="REVOKED"))
    assert state.licence_status("A", T0 + timedelta(days=2)) == "REVOKED"


def test_the_newest_profile_wins_whatever_the_arrival_order() -> None:
    state = ReferenceState()
    state.apply(ref("DEBTOR_PROFILE", T0, debtor_id="D", timezone="Asia/Shanghai"))
    state.apply(ref("DEBTOR_PROFILE", T0 - timedelta(days=1), debtor_id="D", timezone="Europe/London"))
    assert state.profiles["D"].timezone == "Asia/Shanghai"


def test_a_state_in_microseconds_takes_records_decoded_either_way() -> None:
    """The store's state is loaded from ClickHouse (datetimes) and then follows the topic (decoded plain:
    microseconds, ids as text); both kinds of record are compared with each other."""
    state = ReferenceState(in_micros=True)
    state.apply(ref("DEBTOR_PROFILE", T0, debtor_id="D", timezone="Asia/Shanghai"))
    state.apply(ref("DEBTOR_PROFILE", to_micros(T0 + timedelta(hours=1)), debtor_id="D", timezone="Europe/London",
                    event_id=str(uuid.uuid4())))
    state.apply(ref("DEBTOR_PROFILE", to_micros(T0 - timedelta(hours=1)), debtor_id="D", timezone="Asia/Tokyo"))
    assert state.profiles["D"].timezone == "Europe/London"
    state.apply(ref("AGENCY_LICENSE", T0, agency_id="A", status="VALID", valid_from=T0))
    state.apply(ref("AGENCY_LICENSE", to_micros(T0 + timedelta(days=1)), agency_id="A", status="REVOKED",
                    valid_from=to_micros(T0 + timedelta(days=1)), event_id=str(uuid.uuid4())))
    assert state.licence_status("A", to_micros(T0 + timedelta(hours=1))) == "VALID"
    assert state.licence_status("A", to_micros(T0 + timedelta(days=2))) == "REVOKED"


def status_from_scratch(grants: list[dict[str, Any]], moment: datetime) -> str:
    """The rule of the module docstring, read literally: the newest grant received at or before the moment."""
    known = [g for g in grants if g["occurred_at"] <= moment]
    if not known:
        return "UNKNOWN"
    grant = max(known, key=lambda g: (g["occurred_at"], str(g["event_id"])))
    if grant["status"] != "VALID":
        return str(grant["status"])
    if grant["valid_from"] is not None and moment < grant["valid_from"]:
        return "NOT_YET_VALID"
    if grant["valid_to"] is not None and moment >= grant["valid_to"]:
        return "EXPIRED"
    return "VALID"


@pytest.mark.parametrize("in_micros", [False, True])
def test_the_status_at_any_moment_is_the_newest_grant_received_by_then(in_micros: bool) -> None:
    """Random histories of grants (a receipt, a validity start and end, or none), asked on and around every
    boundary in any order as grants arrive: the history answers what the rule says, kept and asked in
    datetimes (the rule engine) or in microseconds (the store)."""
    rng = random.Random(5)
    for _ in range(200):
        state, grants = ReferenceState(in_micros=in_micros), []
        for _ in range(rng.randint(1, 5)):
            received = T0 + timedelta(days=rng.randint(0, 20))
            valid_from = rng.choice([None, received, received + timedelta(days=rng.randint(-5, 5))])
            valid_to = rng.choice([None, (valid_from or received) + timedelta(days=rng.randint(0, 10))])
            grant = ref("AGENCY_LICENSE", received, agency_id="A", valid_from=valid_from, valid_to=valid_to,
                        status=rng.choice(["VALID", "VALID", "SUSPENDED"]))
            grants.append(grant)
            state.apply(grant)
            edges = sorted({t for g in grants for t in (g["occurred_at"], g["valid_from"], g["valid_to"]) if t})
            moments = [t + d for t in edges for d in (-timedelta(microseconds=1), timedelta(0), timedelta(hours=1))]
            for order in (moments, moments[::-1], rng.sample(moments, len(moments))):
                for moment in order:
                    asked = to_micros(moment) if in_micros else moment
                    assert state.licence_status("A", asked) == status_from_scratch(grants, moment), moment
