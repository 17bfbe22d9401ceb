"""Reference state the store enriches with: debtor profiles, agency licences, collector certifications.

A licence or certification is judged *at the action's occurred_at*: the newest record received at
or before that moment decides, and its validity window must cover the moment. A certification
without `valid_to` lapses 365 days after `valid_from` (training older than a year is stale).
A state keeps licences and certifications in the unit it was made for and is asked in it: aware
datetimes (the rule engine, which decodes instants so), or microseconds since the epoch (the store,
whose actions carry their instants so; `in_micros`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from schemas.contract import as_micros

CERTIFICATION_LIFETIME = timedelta(days=365)
_LIFETIME_US = CERTIFICATION_LIFETIME // timedelta(microseconds=1)
Instant = Any  # an aware datetime, or microseconds since the epoch: the unit the state keeps (in_micros)
AFTER_ANY_ID = "\U0010ffff"  # sorts after every event id: (t, it) follows every (t, id) in a sorted list


@dataclass(frozen=True)
class Profile:
    timezone: str | None
    phone_region: str | None
    jurisdiction: str | None
    received_at: Instant


@dataclass(frozen=True)
class Grant:
    """A licence or a certification as received."""

    received_at: Instant
    event_id: str
    status: str
    valid_from: Instant | None
    valid_to: Instant | None


@dataclass
class _History:
    grants: list[Grant] = field(default_factory=list)
    order: list[tuple[Instant, str]] = field(default_factory=list)  # (received_at, event_id) of grants
    seen: set[str] = field(default_factory=set)
    # the last answer and the moments [start, end) it holds for (None: unbounded); most actions of an
    # agency or collector fall where the one before did, so most questions end here
    span: tuple[Instant | None, Instant | None, str] | None = None

    def add(self, grant: Grant) -> None:
        if grant.event_id in self.seen:
            return
        self.seen.add(grant.event_id)
        key = (grant.received_at, grant.event_id)
        at = bisect.bisect(self.order, key)
        self.order.insert(at, key)
        self.grants.insert(at, grant)
        self.span = None

    def status_at(self, moment: Instant) -> str:
        span = self.span
        if span is not None and (span[0] is None or span[0] <= moment) and (span[1] is None or moment < span[1]):
            return span[2]
        self.span = span = self._span_at(moment)
        return span[2]

    def _span_at(self, moment: Instant) -> tuple[Instant | None, Instant | None, str]:
        known = bisect.bisect_right(self.order, (moment, AFTER_ANY_ID))
        end = self.order[known][0] if known < len(self.order) else None  # the next grant decides from then on
        if not known:
            return None, end, "UNKNOWN"
        grant, start = self.grants[known - 1], self.order[known - 1][0]
        if grant.status != "VALID":
            return start, end, grant.status
        if grant.valid_from is not None and moment < grant.valid_from:
            return start, _earlier(end, grant.valid_from), "NOT_YET_VALID"
        if grant.valid_to is not None and moment >= grant.valid_to:
            return max(start, grant.valid_to), end, "EXPIRED"
        return (start if grant.valid_from is None else max(start, grant.valid_from),
                _earlier(end, grant.valid_to), "VALID")


def _earlier(a: Instant | None, b: Instant | None) -> Instant | None:
    return b if a is None else a if b is None else min(a, b)


class ReferenceState:
    def __init__(self, in_micros: bool = False) -> None:
        self.in_micros = in_micros
        # records hold datetimes (decoded), or microseconds (the store decodes references plain; ClickHouse
        # gives datetimes back when the state is loaded from it)
        self._unit: Callable[[Any], Instant] = as_micros if in_micros else _as_it_is
        self._lifetime: Instant = _LIFETIME_US if in_micros else CERTIFICATION_LIFETIME
        self.profiles: dict[str, Profile] = {}
        self._licences: dict[str, _History] = {}
        self._certifications: dict[str, _History] = {}

    def apply(self, record: dict[str, Any]) -> None:
        """Take in a decoded reference record (other kinds are ignored here)."""
        kind = record["kind"]
        received = self._unit(record["occurred_at"])
        if kind == "DEBTOR_PROFILE":
            current = self.profiles.get(record["debtor_id"])
            if current is None or current.received_at <= received:
                self.profiles[record["debtor_id"]] = Profile(record["timezone"], record["phone_region"],
                                                             record["jurisdiction"], received)
        elif kind in ("AGENCY_LICENSE", "COLLECTOR_CERTIFICATION"):
            unit, valid_from, valid_to = self._unit, record["valid_from"], record["valid_to"]
            valid_from = None if valid_from is None else unit(valid_from)
            valid_to = None if valid_to is None else unit(valid_to)
            if kind == "AGENCY_LICENSE":
                self._licences.setdefault(record["agency_id"], _History()).add(Grant(
                    received, str(record["event_id"]), record["status"], valid_from, valid_to))
                return
            if valid_to is None and valid_from is not None:
                valid_to = valid_from + self._lifetime
            self._certifications.setdefault(record["collector_id"], _History()).add(Grant(
                received, str(record["event_id"]), "VALID", valid_from, valid_to))

    def qualification(self, agency_id: str, collector_id: str | None, moment: Instant) -> tuple[str, str]:
        """(licence status, certification status) at `moment`: what every action is judged with."""
        licence, certification = self._licences.get(agency_id), self._certifications.get(collector_id or "")
        return (licence.status_at(moment) if licence else "UNKNOWN",
                "NOT_APPLICABLE" if collector_id is None else
                certification.status_at(moment) if certification else "UNKNOWN")

    def licence_status(self, agency_id: str, moment: Instant) -> str:
        history = self._licences.get(agency_id)
        return history.status_at(moment) if history else "UNKNOWN"

    def certification_status(self, collector_id: str | None, moment: Instant) -> str:
        if collector_id is None:
            return "NOT_APPLICABLE"
        history = self._certifications.get(collector_id)
        return history.status_at(moment) if history else "UNKNOWN"


def _as_it_is(moment: datetime) -> datetime:
    return moment
