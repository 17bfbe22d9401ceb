"""Reference state the store enriches with: debtor profiles, agency licences, collector certifications.

A licence or certification is judged *at the action's occurred_at*: the newest record received at
or before that moment decides, and its validity window must cover the moment. A certification
without `valid_to` lapses 365 days after `valid_from` (training older than a year is stale).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

CERTIFICATION_LIFETIME = timedelta(days=365)
AFTER_ANY_ID = "\U0010ffff"  # sorts after every event id: (t, it) follows every (t, id) in a sorted list


@dataclass(frozen=True)
class Profile:
    timezone: str | None
    phone_region: str | None
    jurisdiction: str | None
    received_at: datetime


@dataclass(frozen=True)
class Grant:
    """A licence or a certification as received."""

    received_at: datetime
    event_id: str
    status: str
    valid_from: datetime | None
    valid_to: datetime | None


@dataclass
class _History:
    grants: list[Grant] = field(default_factory=list)
    order: list[tuple[datetime, str]] = field(default_factory=list)  # (received_at, event_id) of grants
    seen: set[str] = field(default_factory=set)

    def add(self, grant: Grant) -> None:
        if grant.event_id in self.seen:
            return
        self.seen.add(grant.event_id)
        key = (grant.received_at, grant.event_id)
        at = bisect.bisect(self.order, key)
        self.order.insert(at, key)
        self.grants.insert(at, grant)

    def status_at(self, moment: datetime) -> str:
        known = bisect.bisect_right(self.order, (moment, AFTER_ANY_ID))
        if not known:
            return "UNKNOWN"
        grant = self.grants[known - 1]
        if grant.status != "VALID":
            return grant.status
        if grant.valid_from is not None and moment < grant.valid_from:
            return "NOT_YET_VALID"
        if grant.valid_to is not None and moment >= grant.valid_to:
            return "EXPIRED"
        return "VALID"


class ReferenceState:
    def __init__(self) -> None:
        self.profiles: dict[str, Profile] = {}
        self._licences: dict[str, _History] = {}
        self._certifications: dict[str, _History] = {}

    def apply(self, record: dict[str, Any]) -> None:
        """Take in a decoded reference record (other kinds are ignored here)."""
        kind = record["kind"]
        received = record["occurred_at"]
        if kind == "DEBTOR_PROFILE":
            current = self.profiles.get(record["debtor_id"])
            if current is None or current.received_at <= received:
                self.profiles[record["debtor_id"]] = Profile(record["timezone"], record["phone_region"],
                                                             record["jurisdiction"], received)
        elif kind == "AGENCY_LICENSE":
            self._licences.setdefault(record["agency_id"], _History()).add(Grant(
                received, str(record["event_id"]), record["status"], record["valid_from"], record["valid_to"]))
        elif kind == "COLLECTOR_CERTIFICATION":
            valid_from = record["valid_from"]
            valid_to = record["valid_to"] or (valid_from + CERTIFICATION_LIFETIME if valid_from else None)
            self._certifications.setdefault(record["collector_id"], _History()).add(Grant(
                received, str(record["event_id"]), "VALID", valid_from, valid_to))

    def licence_status(self, agency_id: str, moment: datetime) -> str:
        history = self._licences.get(agency_id)
        return history.status_at(moment) if history else "UNKNOWN"

    def certification_status(self, collector_id: str | None, moment: datetime) -> str:
        if collector_id is None:
            return "NOT_APPLICABLE"
        history = self._certifications.get(collector_id)
        return history.status_at(moment) if history else "UNKNOWN"
