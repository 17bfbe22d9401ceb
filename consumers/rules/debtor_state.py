"""What the rule engine remembers about one debtor: recent actions in event-time order and the
debtor's reference events (cease requests, attorney, payment plans), each effective from its own
`occurred_at`."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Any

from consumers.reference_state import AFTER_ANY_ID, Profile

View = dict[str, Any]  # an action as the rules see it: its fields plus derived ones (see engine)
_DIGITS = re.compile(r"\D+")


@lru_cache(maxsize=100_000)  # a debtor is contacted on the same few addresses again and again
def contact_key(address: str | None) -> str | None:
    """Addresses compared across events: phone numbers by their last 11 digits, others lower-cased."""
    if not address:
        return None
    digits = _DIGITS.sub("", address)
    if len(digits) >= 7 and len(digits) * 2 >= len(address.replace(" ", "")):
        return digits[-11:]
    return address.strip().casefold()


@dataclass
class DebtorState:
    history: list[View] = field(default_factory=list)  # sorted by (occurred_at, event_id)
    order: list[tuple[datetime, str]] = field(default_factory=list)  # (occurred_at, event_id) of history
    ids: set[str] = field(default_factory=set)
    latest: datetime | None = None
    references: list[dict[str, Any]] = field(default_factory=list)  # sorted by occurred_at
    first_started: set[str] = field(default_factory=set)  # absence rules with first_only: already started
    # where the debtor's addresses put an action, under the debtor's current profile:
    # address -> (jurisdiction, zone name, zone, contact key)
    profile: Profile | None = None
    places: dict[str | None, tuple[str, str, tzinfo, str | None]] = field(default_factory=dict)

    def add(self, view: View) -> None:
        key = (view["_at"], view["event_id"])
        if not self.order or key > self.order[-1]:  # most actions come in event-time order
            self.order.append(key)
            self.history.append(view)
        else:
            at = bisect.bisect(self.order, key)
            self.order.insert(at, key)
            self.history.insert(at, view)
        self.ids.add(view["event_id"])

    def between(self, start: datetime, end: datetime) -> list[View]:
        """The actions that occurred in [start, end]."""
        low = bisect.bisect_left(self.order, (start,))
        return self.history[low:bisect.bisect_right(self.order, (end, AFTER_ANY_ID), lo=low)]

    def prune(self, before: datetime) -> None:
        cut = 0
        while cut < len(self.history) and self.history[cut]["_keep_until"] < before:
            cut += 1
        if cut:
            for view in self.history[:cut]:
                self.ids.discard(view["event_id"])
            del self.history[:cut]
            del self.order[:cut]

    def add_reference(self, record: dict[str, Any]) -> None:
        bisect.insort(self.references, record, key=lambda r: (r["occurred_at"], str(r["event_id"])))

    # -- what blocks a contact at a moment ---------------------------------------------------------

    def blocker(self, kind: str, view: View) -> dict[str, Any] | None:
        """The reference event that forbids this contact at its occurred_at, if any."""
        if not self.references:
            return None
        at = view["_at"]
        known = [r for r in self.references if r["occurred_at"] <= at]
        if kind == "attorney":
            return next((r for r in reversed(known) if r["kind"] == "ATTORNEY_REPRESENTATION"), None)
        if kind == "payment_plan":
            latest: dict[str, dict[str, Any]] = {}
            for r in known:
                if r["kind"] == "PAYMENT_PLAN":
                    latest[r.get("plan_id") or ""] = r
            return next((r for r in latest.values() if r.get("status") == "ACTIVE"), None)
        if kind in ("cease", "contact_cease"):
            return self._cease(known, view, third_party=kind == "contact_cease")
        raise ValueError(kind)

    @staticmethod
    def _cease(known: list[dict[str, Any]], view: View, third_party: bool) -> dict[str, Any] | None:
        action_type = view["action_type"]
        active: dict[str, Any] | None = None
        for r in known:
            from_debtor = r.get("counterparty") in (None, "", "DEBTOR")
            if from_debtor == third_party:
                continue
            if third_party and contact_key(r.get("contact_address")) != view["contact_key"]:
                continue
            channels = r.get("channels") or []
            covers = not channels or action_type in channels
            if r["kind"] == "CEASE_REQUEST" and covers:
                active = r
            elif r["kind"] == "CEASE_WITHDRAWN" and covers:
                active = None
        return active
