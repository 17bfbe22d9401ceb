"""The rule engine: decoded events in, alerts out; pure, no Kafka, no ClickHouse.

Event time throughout: windows, days and deadlines come from `occurred_at` and the debtor's local
zone (profile zone -> phone region -> jurisdiction default, DST-aware). State is per debtor, so
the engine runs on the partitions a consumer owns (actions are keyed by debtor). Reference events
take effect at their own `occurred_at`; one that arrives after actions it concerns re-judges them
(their alerts are `late`). Timers (absence rules) fire when the event-time watermark passes their
deadline plus the allowed lateness, or `tick()` when the stream is idle, for the debtors the
instance owns at that moment. The watermark follows the events when one ordered stream feeds the
engine; a consumer of several partitions sets it itself (`advance`, see the rule consumer).

An alert's id is derived from rule id, rule version and the id of the event that triggered it,
so a replay derives the same alert again; the engine never emits one id twice (`raised`).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, lru_cache
from typing import Any

from consumers.local_time import resolve_zone, zone
from consumers.reference_state import ReferenceState
from consumers.rules.debtor_state import DebtorState, View, contact_key
from consumers.rules.ruleset import Clause, Condition, Filter, Rule, Ruleset
from consumers.rules.text_match import Lexicon, TextReader

_NO_FILTER = Filter()
_DISPATCH_FIELDS = ("action_type", "direction", "counterparty", "call_result")
_QUALIFICATION = ("agency_licence", "collector_certification")
_SWEEP_EVERY = 20_000  # actions between two sweeps of expired state
LATE_REFERENCE_HORIZON = timedelta(days=8)  # how far back a late reference event re-judges actions


def state_horizon(ruleset: Ruleset) -> timedelta:
    """How far back per-debtor state must reach: the longest rule window plus the late-reference
    horizon. The rule consumer rebuilds state by replaying collection.actions, so the topic's
    retention must be at least this (tests/deploy/test_topics.py checks deploy/kafka/topics.toml)."""
    longest = timedelta(days=1)
    for rule in ruleset.rules:
        for clauses in rule.profiles.values():
            for c in clauses:
                longest = max(longest, timedelta(days=c.window_local_days + 1), timedelta(hours=c.within_hours),
                              timedelta(days=c.within_local_days + 1))
    return longest + LATE_REFERENCE_HORIZON


@dataclass(frozen=True)
class Finding:
    trigger: View | dict[str, Any]  # the event the alert is about
    detail: str
    evidence: tuple[str, ...] = ()  # other event ids that make the violation
    facts: tuple[tuple[str, str], ...] = ()
    late: bool = False
    occurred_at: datetime | None = None  # default: the trigger's


_Judge = Callable[[Rule, Clause, View, DebtorState], Iterable[Finding]]
_Candidate = tuple[Rule, Clause, Filter | None, _Judge]


@dataclass(frozen=True)
class _Dispatch:
    decided: dict[str, bool]  # the classes the dispatch key decides alone (shared by views: read only)
    variants: tuple[list[_Candidate], ...]  # [2 * has reference events + collector's words match]
    reads_words: bool
    reads_references: bool
    absences: list[tuple[Rule, Clause, str | None, str | None]]  # absence clauses the action may start
    # or satisfy: (rule, clause, start class, satisfied-by class), a class None when actions cannot


@dataclass(order=True)
class _Timer:
    deadline: datetime
    seq: int
    rule: Rule = field(compare=False)
    clause: Clause = field(compare=False)
    debtor_id: str = field(compare=False)
    trigger: dict[str, Any] = field(compare=False)
    match_value: str | None = field(compare=False, default=None)
    satisfied: bool = field(compare=False, default=False)


class RuleEngine:
    def __init__(self, ruleset: Ruleset, lexicon: Lexicon, *, default_jurisdiction: str = "CN",
                 allowed_lateness: timedelta = timedelta(hours=1), owns: Callable[[str], bool] = lambda d: True,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), watermark_from_events: bool = True) -> None:
        self.ruleset = ruleset
        self.lexicon = lexicon
        self.default_jurisdiction = default_jurisdiction
        self.allowed_lateness = allowed_lateness
        self.owns = owns
        self.clock = clock
        self.watermark_from_events = watermark_from_events  # False: the caller advances (several inputs)
        self.references = ReferenceState()
        self.debtors: dict[str, DebtorState] = {}
        self.collector_roles: dict[str, str] = {}
        self.raised: set[str] = set()
        self.watermark: datetime | None = None
        self._timers: list[_Timer] = []
        self._open: dict[tuple[str, str, str | None], list[_Timer]] = {}
        self._seq = itertools.count()
        self._class_filters = ruleset.classes
        # the classes that test more than the dispatch key: every other one is in every view's "_classes"
        self._class_rests = {name: self._residual(f) for name, f in ruleset.classes.items()}
        self._lazy_classes = {name for name, rest in self._class_rests.items() if rest != _NO_FILTER}
        self._retention = state_horizon(ruleset)
        self._allow = {r.id: Lexicon((("allow", p) for p in r.allow_phrases), lexicon.normalize)
                       for r in ruleset.rules if r.allow_phrases}
        self._since_sweep = 0
        self._latest_action: datetime | None = None
        self._disorder = timedelta(0)  # the most an action arrived behind the latest one before it
        # actions per agency and per collector, in arrival order
        self._by_actor: dict[str, dict[str, list[View]]] = {"agency_id": {}, "collector_id": {}}
        self._dispatch: dict[tuple[Any, ...], _Dispatch] = {}
        self._compiled: dict[tuple[str, Clause], _Judge] = {}  # (rule id, clause) -> the clause's judge
        self._texts = TextReader(lexicon, digits_matter=lexicon.reads_digits or any(
            allow.reads_digits for allow in self._allow.values()))

    # -- public ------------------------------------------------------------------------------------

    def on_action(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        debtor_id = record["debtor_id"]
        state = self.debtors.get(debtor_id)
        if state is None:
            state = self.debtors[debtor_id] = DebtorState()
        event_id = str(record["event_id"])
        if event_id in state.ids:
            return []  # a redelivered event: already judged
        view = self._view(record, state, event_id)
        at: datetime = view["_at"]
        findings: list[tuple[Rule, Finding]] = []
        exempt: set[str] = set()
        in_class = self._in_class
        key = (record.get("action_type"), record.get("direction"), record.get("counterparty"),
               record.get("call_result"), view["jurisdiction"], bool(record.get("message_text")))
        dispatch = self._dispatch.get(key)
        if dispatch is None:
            dispatch = self._dispatch[key] = self._dispatch_for(key)
        view["_classes"] = dispatch.decided  # name -> is the action in it; `_in_class` adds what the key leaves open
        variant = 2 if dispatch.reads_references and state.references else 0
        if dispatch.reads_words and self._texts.collector_said(view["_text"], view["direction"])[1]:
            variant += 1  # lexicon clauses judge only when the collector's words match some phrase
        for rule, clause, check, judge in dispatch.variants[variant]:
            if rule.exempt and (rule.id in exempt or self._exempt(rule, view)):
                exempt.add(rule.id)
                continue
            if check is not None and not _matches(check, view, in_class):
                continue
            for finding in judge(rule, clause, view, state):
                findings.append((rule, finding))
        if dispatch.absences:
            self._track_absence(view, state, dispatch.absences)
        view["_keep_until"] = at + self._retention
        view.pop("message_text", None)
        view.pop("_text", None)
        state.add(view)
        if state.latest is None or at > state.latest:
            state.latest = at
        latest = self._latest_action
        if latest is None or at > latest:
            self._latest_action = at
        elif latest - at > self._disorder:
            self._disorder = latest - at
        by_actor = self._by_actor
        if agency_id := view.get("agency_id"):
            by_actor["agency_id"].setdefault(agency_id, []).append(view)
        if collector_id := view.get("collector_id"):
            by_actor["collector_id"].setdefault(collector_id, []).append(view)
        alerts = self._alerts(findings) if findings else []
        if self.watermark_from_events:
            if self.watermark is None or at > self.watermark:
                self.watermark = at
            if self._timers and self._timers[0].deadline + self.allowed_lateness <= self.watermark:
                alerts.extend(self._advance(at))
        self._since_sweep += 1
        if self._since_sweep >= _SWEEP_EVERY:
            self._sweep()
        return alerts

    def on_reference(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        self.references.apply(record)
        kind = record["kind"]
        if kind == "COLLECTOR_CERTIFICATION" and record.get("collector_id"):
            role = (record.get("attributes") or {}).get("role")
            if role:
                self.collector_roles[record["collector_id"]] = role
        findings: list[tuple[Rule, Finding]] = []
        if kind in ("AGENCY_LICENSE", "COLLECTOR_CERTIFICATION"):
            findings.extend(self._rejudge_qualification(record))
        debtor_id = record.get("debtor_id")
        if debtor_id and kind in ("CEASE_REQUEST", "CEASE_WITHDRAWN", "ATTORNEY_REPRESENTATION", "PAYMENT_PLAN",
                                  "COMPLAINT_FILED", "COMPLAINT_RESOLVED"):
            state = self.debtors.setdefault(debtor_id, DebtorState())
            if any(str(r["event_id"]) == str(record["event_id"]) for r in state.references):
                return []
            state.add_reference(record)
            if self.owns(debtor_id):
                findings.extend(self._rejudge(state, record))
            self._track_reference_absence(record, state)  # whoever owns the debtor when it fires alerts
        alerts = self._alerts(findings)
        return alerts + self._advance(record["occurred_at"]) if self.watermark_from_events else alerts

    def advance(self, moment: datetime) -> list[dict[str, Any]]:
        """Event time has reached `moment` (fires the timers due)."""
        return self._advance(moment)

    def pending_triggers(self) -> set[tuple[str, str]]:
        """(trigger event id, rule id) of the timers that have not fired yet."""
        return {(str(t.trigger["event_id"]), t.rule.id) for t in self._timers if not t.satisfied}

    def tick(self, now: datetime) -> list[dict[str, Any]]:
        """The stream is idle: let wall-clock time stand in for event time."""
        return self._advance(now - self.allowed_lateness)

    # -- views -------------------------------------------------------------------------------------

    def _view(self, record: dict[str, Any], state: DebtorState, event_id: str) -> View:
        at: datetime = record["occurred_at"]
        profile = self.references.profiles.get(record["debtor_id"])
        if state.profile is not profile:  # a new profile: the debtor's addresses are placed again
            state.profile, state.places = profile, {}
        address = record.get("contact_address")
        place = state.places.get(address)
        if place is None:
            jurisdiction = (profile.jurisdiction if profile else None) or self.default_jurisdiction
            zone_name, _ = resolve_zone(profile.timezone if profile else None, address,
                                        profile.phone_region if profile else None, jurisdiction)
            place = state.places[address] = (jurisdiction, zone_name, zone(zone_name), contact_key(address))
        jurisdiction, zone_name, tz, key = place
        local = at.astimezone(tz)
        view = dict(record)  # assigned one by one: a third faster than update() with keywords
        view["event_id"] = event_id
        view["_at"] = at
        view["_local"] = local
        view["_zone"] = zone_name
        view["jurisdiction"] = jurisdiction
        view["local_date"] = local.date()
        view["local_weekday"] = local.isoweekday()
        view["contact_key"] = key
        view["late"] = state.latest is not None and at < state.latest
        view["agency_licence"], view["collector_certification"] = self.references.qualification(
            record["agency_id"], record.get("collector_id"), at)
        amount, due = record.get("amount_due_minor") is not None, record.get("due_date") is not None
        text = record.get("message_text")
        if text:
            view["_text"] = shape = self._texts.key(text)
            if not (amount and due):  # the text is a fallback only when the fields are absent
                states_amount, states_due = self._texts.debt_facts(shape)
                amount, due = amount or states_amount, due or states_due
        view["debt_amount_disclosed"], view["due_date_disclosed"] = amount, due
        return view

    def _dispatch_for(self, key: tuple[Any, ...]) -> _Dispatch:
        """The clauses the action's fixed fields (the dispatch key) do not rule out: each with the rest
        of its filter (None when nothing is left to check) and its judge, in four variants: (debtor
        has reference events?, collector's words match the lexicon?)."""
        probe = dict(zip(_DISPATCH_FIELDS, key, strict=False))
        decided = {name: self._may_match(f, probe) for name, f in self._class_filters.items()
                   if name not in self._lazy_classes or not self._may_match(f, probe)}
        found: list[tuple[_Candidate, str | None]] = []
        absences = []
        for rule in self.ruleset.rules:
            for clause in rule.clauses_for(str(key[4])):
                if clause.kind == "absence":  # the classes of actions that may start or satisfy its timer
                    start, satisfied = (c if not c.startswith("reference:") and decided.get(c, True) else None
                                        for c in (clause.start, clause.satisfied_by))
                    if start or satisfied:
                        absences.append((rule, clause, start, satisfied))
                    continue
                if not self._may_match(clause.when, probe):
                    continue
                if clause.kind == "lexicon" and not key[5] and not clause.or_debt_fields:
                    continue  # nothing said, nothing to match
                gates = [c for c in (clause.events, clause.after, clause.then) if c]
                if gates and not any(decided.get(c, True) for c in gates):
                    continue  # not an action this clause counts or compares
                residual = self._residual(clause.when)
                needs = "words" if clause.kind == "lexicon" and not clause.or_debt_fields else \
                    "references" if clause.kind == "state" else None
                found.append(((rule, clause, None if residual == _NO_FILTER else residual,
                               self._judge_for(rule, clause)), needs))
        variants = tuple([c for c, needs in found if needs is None or (needs == "words" and words)
                          or (needs == "references" and references)]
                         for references in (False, True) for words in (False, True))
        return _Dispatch(decided, variants, any(needs == "words" for _, needs in found),
                         any(needs == "references" for _, needs in found), absences)

    def _residual(self, f: Filter) -> Filter:
        """What is left of a filter once its fixed-field parts have been checked by the dispatch."""
        return Filter(tuple(i for i in f.include if i[0] not in _DISPATCH_FIELDS),
                      tuple(e for e in f.exclude if e[0] not in _DISPATCH_FIELDS), f.present, f.absent,
                      tuple(c for c in f.classes if self._residual(self._class_filters[c]) != Filter()))

    def _may_match(self, f: Filter, probe: dict[str, Any]) -> bool:
        for name, values in f.include:
            if name in probe and probe[name] not in values:
                return False
        for name, values in f.exclude:
            if name in probe and probe[name] in values:
                return False
        return all(self._may_match(self._class_filters[c], probe) for c in f.classes)

    def _in_class(self, view: View, name: str) -> bool:
        classes = view["_classes"]
        known = classes.get(name)
        if known is None:  # a class the dispatch key leaves open: the rest checked once, in the view's own copy
            known = _matches(self._class_rests[name], view, self._in_class)
            view["_classes"] = {**classes, name: known}
        return bool(known)

    def _exempt(self, rule: Rule, view: View) -> bool:
        return any(_matches(f, view, self._in_class) for f in rule.exempt)

    # -- clause kinds ------------------------------------------------------------------------------

    def _predicate(self, rule: Rule, clause: Clause, view: View, state: DebtorState) -> Iterable[Finding]:
        return self._judge_for(rule, clause)(rule, clause, view, state)

    def _judge_for(self, rule: Rule, clause: Clause) -> _Judge:
        """The judge of a clause: each kind but state compiled once into a closure over its parameters."""
        judge = self._compiled.get((rule.id, clause))
        if judge is None:
            kind = clause.kind
            judge = self._compiled[rule.id, clause] = self._predicate_judge(clause) if kind == "predicate" \
                else self._lexicon_judge(rule, clause) if kind == "lexicon" \
                else self._count_judge(clause) if kind == "count" \
                else self._sequence_judge(clause) if kind == "sequence" else self._state
        return judge

    def _predicate_judge(self, clause: Clause) -> _Judge:
        checks = tuple(self._condition(c) for c in clause.any)
        if len(checks) == 1:
            only = checks[0]

            def judge_one(rule: Rule, clause: Clause, view: View, state: DebtorState) -> Iterable[Finding]:
                detail = only(view)
                return (Finding(view, detail),) if detail else ()
            return judge_one

        def judge(rule: Rule, clause: Clause, view: View, state: DebtorState) -> Iterable[Finding]:
            for check in checks:
                detail = check(view)
                if detail:
                    return (Finding(view, detail),)
            return ()
        return judge

    def _condition(self, c: Condition) -> Callable[[View], str | None]:
        """A condition as a function of the view: what is wrong, or None."""
        name, expected = c.field, c.value
        if c.kind == "local_time_between":
            assert c.start is not None and c.end is not None
            start, end, wraps = c.start, c.end, c.start > c.end
            after_start = operator.ge if c.include_start else operator.gt
            before_end = operator.le if c.include_end else operator.lt
            window = f"{start:%H:%M}-{end:%H:%M}"

            def inside_window(view: View) -> str | None:
                moment = view["_local"].time()  # naive: time() leaves the zone out
                inside = (after_start(moment, start) or before_end(moment, end)) if wraps else \
                    (after_start(moment, start) and before_end(moment, end))
                return f"local time {moment.isoformat(timespec='seconds')} ({view['_zone']}) is inside the " \
                       f"forbidden window {window}" if inside else None
            return inside_window
        if c.kind == "mentions":
            said, wanting = self._texts.all_said, f"does not state the {name.replace('_', ' ')}"

            def mentions(view: View) -> str | None:
                mentioned = any(m.category == name for m in said(view.get("_text", b"")))
                return None if mentioned == expected else wanting
            return mentions
        value_of: Callable[[View], Any] = operator.methodcaller("get", name) if not name.startswith("attributes.") \
            else lambda view: _value(view, name)
        if c.kind == "missing":
            return lambda view: f"no {name}" if value_of(view) in (None, "") else None
        if c.kind == "below":
            def below(view: View) -> str | None:
                value = value_of(view)
                return f"{name} is {value}, below {expected}" if value is not None and value < expected else None
            return below
        if c.kind == "is_not":
            def is_not(view: View) -> str | None:
                value = value_of(view)
                return None if value == expected else f"{name} is {_show(value)}"
            return is_not
        if c.kind == "not_in":
            def not_in(view: View) -> str | None:
                value = value_of(view)
                return None if value in expected else f"{name} is {_show(value)}"
            return not_in
        raise ValueError(c.kind)

    def _lexicon_judge(self, rule: Rule, clause: Clause) -> _Judge:
        said, normalize, allow = self._texts.collector_said, self.lexicon.normalize, self._allow.get(rule.id)
        roles, unless_roles, categories = self.collector_roles, clause.unless_collector_role, clause.categories

        @lru_cache(maxsize=4096)  # what the clause finds depends on the text's shape and direction alone
        def spoken(shape: bytes, direction: str) -> tuple[str, tuple[tuple[str, str], ...]] | None:
            text, found = said(shape, direction)
            if not found:
                return None
            allowed = [(m.position, m.position + len(normalize(m.phrase))) for m in allow.find(text)] \
                if allow else []
            matches = [m for m in found if m.category in categories and not any(
                s <= m.position < e for s, e in allowed)]
            if not matches:
                return None
            first = matches[0]
            return (f"said '{first.phrase}' ({first.category}, position {first.position})",
                    (("matched", first.phrase), ("category", first.category), ("position", str(first.position)),
                     ("matches", "; ".join(m.describe() for m in matches[:10]))))

        def lexicon(rule: Rule, clause: Clause, view: View, state: DebtorState) -> Iterable[Finding]:
            if unless_roles and roles.get(view.get("collector_id") or "") in unless_roles:
                return ()
            words = spoken(view.get("_text", b""), view["direction"])
            if words is not None:
                return (Finding(view, words[0], facts=words[1]),)
            if clause.or_debt_fields and (view.get("amount_due_minor") is not None or view.get("due_date") is not None):
                return (Finding(view, "the message states the amount due or the due date"),)
            return ()
        return lexicon

    def _count_judge(self, clause: Clause) -> _Judge:
        events, per, span, limit = clause.events, clause.per, clause.window_local_days, clause.max
        reach = timedelta(days=span - 1)
        margin = timedelta(days=span + 2)  # local dates lie within a day of UTC ones
        one_field = per[0] if len(per) == 1 and not _reads_attributes(per) else None
        per_debtor = per == ("debtor_id",)  # the state is the debtor's: every action it holds is the debtor's
        in_class, open_class = self._in_class, events in self._lazy_classes

        def count(rule: Rule, clause: Clause, view: View, state: DebtorState) -> Iterable[Finding]:
            if not in_class(view, events):
                return ()
            day, at = view["local_date"], view["_at"]
            first_day, last_day = day - reach, day + reach
            near = state.between(at - margin, at + margin)
            if open_class:  # not in every view's "_classes": ask each
                near = [h for h in near if in_class(h, events)]
            if per_debtor:
                same = [h for h in near if h["_classes"][events] and first_day <= h["local_date"] <= last_day]
            elif one_field is not None:
                value = view.get(one_field)
                if value is None:
                    return ()
                same = [h for h in near if h["_classes"][events] and first_day <= h["local_date"] <= last_day
                        and h.get(one_field) == value]
            else:
                key = _key(view, per)
                if None in key:
                    return ()
                same = [h for h in near if h["_classes"][events] and first_day <= h["local_date"] <= last_day
                        and _key(h, per) == key]
            if len(same) < limit:
                return ()  # with this action, no window holds more than the limit
            return self._over_limit(clause, view, same)
        return count

    @staticmethod
    def _over_limit(clause: Clause, view: View, same: list[View]) -> Iterable[Finding]:
        """The first window of `window_local_days` around the action that holds more than the limit."""
        span = clause.window_local_days
        first_day = view["local_date"] - timedelta(days=span - 1)
        same.append(view)
        for offset in range(span):
            start = first_day + timedelta(days=offset)
            end = start + timedelta(days=span - 1)
            window = [h for h in same if start <= h["local_date"] <= end]
            if len(window) > clause.max:
                window.sort(key=lambda h: h["_at"])
                where = f"on {start}" if span == 1 else f"from {start} to {end}"
                return (Finding(view, f"{len(window)} {clause.events.replace('_', ' ')}s {where} "
                                      f"(limit {clause.max})",
                                evidence=tuple(h["event_id"] for h in window if h is not view)),)
        return ()

    def _sequence_judge(self, clause: Clause) -> _Judge:
        after, then, per, in_class = clause.after, clause.then, clause.per, self._in_class
        reach = timedelta(hours=clause.within_hours) if clause.within_hours else \
            timedelta(days=clause.within_local_days + 2)  # local dates lie within a day of UTC ones
        one_field = per[0] if len(per) == 1 and not _reads_attributes(per) else None
        same_key: Callable[[View, View], bool] = \
            (lambda h, view: True) if per == ("debtor_id",) else \
            (lambda h, view: h.get(one_field) == view.get(one_field)) if one_field is not None else \
            (lambda h, view: _key(h, per) == _key(view, per))  # the state is the debtor's: see count
        within, what = self._within, after.replace("_", " ")

        def sequence(rule: Rule, clause: Clause, view: View, state: DebtorState) -> Iterable[Finding]:
            found: list[Finding] = []
            at = view["_at"]
            if in_class(view, then):
                earlier = [h for h in state.between(at - reach, at) if h["_at"] < at and same_key(h, view)
                           and in_class(h, after) and within(clause, h, view)]
                if earlier:
                    first = earlier[-1]
                    found.append(Finding(view, f"{what} at {first['_local'].isoformat(timespec='seconds')} came "
                                               f"{_gap(clause, first, view)} before", evidence=(first["event_id"],)))
            if in_class(view, after):  # a late 'after' event: later actions it makes violations
                for h in state.between(at, at + reach):
                    if h["_at"] > at and same_key(h, view) and in_class(h, then) and within(clause, view, h):
                        found.append(Finding(h, f"{what} at {view['_local'].isoformat(timespec='seconds')} "
                                                f"(reported late) came {_gap(clause, view, h)} before",
                                             evidence=(view["event_id"],), late=True))
            return found
        return sequence

    @staticmethod
    def _within(clause: Clause, first: View, then: View) -> bool:
        if clause.within_hours:
            return bool(then["_at"] - first["_at"] <= timedelta(hours=clause.within_hours))
        return bool((then["local_date"] - first["local_date"]).days <= clause.within_local_days - 1)

    def _state(self, rule: Rule, clause: Clause, view: View, state: DebtorState) -> Iterable[Finding]:
        if not self._in_class(view, clause.then):
            return ()
        blocker = state.blocker(clause.blocked_by, view)
        if blocker is None:
            return ()
        received = blocker["occurred_at"].astimezone(view["_local"].tzinfo).isoformat(timespec="seconds")
        return (Finding(view, f"{blocker['kind'].lower().replace('_', ' ')} received {received}",
                        evidence=(str(blocker["event_id"]),), facts=(("blocked_by", clause.blocked_by),)),)

    def _rejudge(self, state: DebtorState, record: dict[str, Any]) -> list[tuple[Rule, Finding]]:
        """A reference event arrived: judge again the actions at or after its occurred_at."""
        findings: list[tuple[Rule, Finding]] = []
        for view in state.history:
            if view["_at"] < record["occurred_at"]:
                continue
            for rule in self.ruleset.rules:
                if self._exempt(rule, view):
                    continue
                for clause in rule.clauses_for(view["jurisdiction"]):
                    if clause.kind == "state" and _matches(clause.when, view, self._in_class):
                        findings.extend((rule, Finding(f.trigger, f.detail, f.evidence, f.facts, late=True))
                                        for f in self._state(rule, clause, view, state))
        return findings

    def _rejudge_qualification(self, record: dict[str, Any]) -> list[tuple[Rule, Finding]]:
        """A licence or certification arrived: actions at or after its occurred_at by that agency or
        collector get their status again, and the clauses that judge only the status judge again."""
        if self._latest_action is None or record["occurred_at"] > self._latest_action:
            return []  # in time: no action judged yet is at or after it
        field_name, status = ("agency_id", "agency_licence") if record["kind"] == "AGENCY_LICENSE" \
            else ("collector_id", "collector_certification")
        findings: list[tuple[Rule, Finding]] = []
        since = record["occurred_at"]
        for view in reversed(self._by_actor[field_name].get(record[field_name], [])):
            if view["_at"] < since - self._disorder:
                break  # no action that arrived before this one can be at or after `since`
            state = self.debtors.get(view["debtor_id"])
            if view["_at"] >= since and state is not None and self.owns(view["debtor_id"]):
                view[status] = self.references.licence_status(view["agency_id"], view["_at"]) \
                    if status == "agency_licence" else \
                    self.references.certification_status(view.get("collector_id"), view["_at"])
                for rule in self.ruleset.rules:
                    for clause in rule.clauses_for(view["jurisdiction"]):
                        if clause.kind == "predicate" and all(c.field in _QUALIFICATION for c in clause.any) \
                                and _matches(clause.when, view, self._in_class) and not self._exempt(rule, view):
                            findings.extend((rule, replace(f, late=True))
                                            for f in self._predicate(rule, clause, view, state))
        return findings

    # -- absence timers ----------------------------------------------------------------------------

    def _track_absence(self, view: View, state: DebtorState,
                       absences: list[tuple[Rule, Clause, str | None, str | None]]) -> None:
        for rule, clause, start, satisfied_by in absences:
            satisfies = satisfied_by is not None and self._in_class(view, satisfied_by)
            if satisfies:
                for timer in self._open.get((view["debtor_id"], rule.id, None), []):
                    if timer.trigger["occurred_at"] <= view["_at"] <= timer.deadline:
                        timer.satisfied = True
            if start is not None and not (clause.first_only and rule.id in state.first_started) \
                    and self._in_class(view, start):
                if clause.first_only:
                    state.first_started.add(rule.id)
                deadline = self._deadline(clause, view["_at"], view["_zone"], False)
                self._schedule(rule, clause, view["debtor_id"], view, deadline, None, satisfies)

    def _track_reference_absence(self, record: dict[str, Any], state: DebtorState) -> None:
        debtor_id = record["debtor_id"]
        profile = self.references.profiles.get(debtor_id)
        jurisdiction = (profile.jurisdiction if profile else None) or self.default_jurisdiction
        zone_name, _ = resolve_zone(profile.timezone if profile else None, None,
                                    profile.phone_region if profile else None, jurisdiction)
        for rule in self.ruleset.rules:
            for clause in rule.clauses_for(jurisdiction):
                if clause.kind != "absence":
                    continue
                match_value = str(record.get(clause.match)) if clause.match else None
                if clause.satisfied_by == f"reference:{record['kind']}":
                    for timer in self._open.get((debtor_id, rule.id, match_value), []):
                        if record["occurred_at"] < timer.deadline:
                            timer.satisfied = True
                if clause.start == f"reference:{record['kind']}":
                    deadline = self._deadline(clause, record["occurred_at"], zone_name, bool(record.get("complex")))
                    trigger = dict(record, event_id=str(record["event_id"]), jurisdiction=jurisdiction,
                                   _local=record["occurred_at"].astimezone(zone(zone_name)))
                    self._schedule(rule, clause, debtor_id, trigger, deadline, match_value, False)

    def _deadline(self, clause: Clause, start: datetime, zone_name: str, complex_case: bool) -> datetime:
        if clause.within_hours:
            return start + timedelta(hours=clause.within_hours)
        days = clause.complex_deadline_local_days if complex_case and clause.complex_deadline_local_days \
            else clause.deadline_local_days
        local_day: date = start.astimezone(zone(zone_name)).date() + timedelta(days=days)
        return datetime.combine(local_day, time(0), tzinfo=zone(zone_name)).astimezone(UTC)

    def _schedule(self, rule: Rule, clause: Clause, debtor_id: str, trigger: dict[str, Any], deadline: datetime,
                  match_value: str | None, satisfied: bool) -> None:
        timer = _Timer(deadline, next(self._seq), rule, clause, debtor_id, trigger, match_value, satisfied)
        heapq.heappush(self._timers, timer)
        self._open.setdefault((debtor_id, rule.id, match_value), []).append(timer)

    def _advance(self, moment: datetime) -> list[dict[str, Any]]:
        if self.watermark is None or moment > self.watermark:
            self.watermark = moment
        findings: list[tuple[Rule, Finding]] = []
        while self._timers and self._timers[0].deadline + self.allowed_lateness <= self.watermark:
            timer = heapq.heappop(self._timers)
            waiting = self._open.get((timer.debtor_id, timer.rule.id, timer.match_value), [])
            if timer in waiting:
                waiting.remove(timer)
                if not waiting:
                    self._open.pop((timer.debtor_id, timer.rule.id, timer.match_value), None)
            if timer.satisfied or not self.owns(timer.debtor_id):
                continue  # an instance fires the timers of the debtors it owns at that moment
            local_deadline = timer.deadline.astimezone(timer.trigger["_local"].tzinfo)
            what = timer.clause.satisfied_by.removeprefix("reference:").lower().replace("_", " ")
            findings.append((timer.rule, Finding(
                timer.trigger, f"no {what} by {local_deadline.isoformat(timespec='seconds')}",
                occurred_at=timer.deadline)))
        return self._alerts(findings) if findings else []

    # -- alerts ------------------------------------------------------------------------------------

    def _alerts(self, findings: list[tuple[Rule, Finding]]) -> list[dict[str, Any]]:
        alerts = []
        for rule, finding in findings:
            trigger = finding.trigger
            alert_id = alert_id_for(rule.id, rule.version, trigger["event_id"])
            if alert_id in self.raised:
                continue
            self.raised.add(alert_id)
            late = finding.late or bool(trigger.get("late"))
            local = trigger.get("_local")
            evidence = {"detail": finding.detail, **dict(finding.facts)}
            if local is not None:
                evidence["local_time"] = local.isoformat(timespec="seconds")
            fields = {k: v for k, v in trigger.items() if not k.startswith("_")}
            fields.update(detail=finding.detail, local_time=evidence.get("local_time", "?"))
            alerts.append({
                "alert_id": alert_id, "rule_id": rule.id, "rule_version": rule.version, "severity": rule.severity,
                "jurisdiction": trigger.get("jurisdiction") or self.default_jurisdiction,
                "debtor_id": trigger.get("debtor_id") or "", "agency_id": trigger.get("agency_id"),
                "collector_id": trigger.get("collector_id"),
                "event_ids": [trigger["event_id"], *finding.evidence], "summary": _format(rule.summary, fields),
                "citation": rule.citation, "late": late,
                "occurred_at": finding.occurred_at or trigger["occurred_at"], "detected_at": self.clock(),
                "evidence": evidence,
            })
        return alerts

    # -- housekeeping ------------------------------------------------------------------------------

    def _sweep(self) -> None:
        """Forget what no rule can read any more (every _SWEEP_EVERY actions)."""
        if self.watermark is None:
            return
        self._since_sweep = 0
        for debtor_id in list(self.debtors):
            state = self.debtors[debtor_id]
            state.prune(self.watermark)
            if not state.history and not state.references and not state.first_started:
                del self.debtors[debtor_id]
        for actors in self._by_actor.values():
            for actor, views in list(actors.items()):
                cut = 0  # in arrival order: what arrived late stays until the views before it go
                while cut < len(views) and views[cut]["_keep_until"] < self.watermark:
                    cut += 1
                if cut == len(views):
                    del actors[actor]
                elif cut:
                    del views[:cut]


def alert_id_for(rule_id: str, version: int, trigger_event_id: str) -> str:
    return hashlib.sha256(f"{rule_id}|{version}|{trigger_event_id}".encode()).hexdigest()[:32]


def _value(view: View, name: str) -> Any:
    value = view.get(name, _ABSENT)
    if value is _ABSENT:
        return (view.get("attributes") or {}).get(name[11:]) if name.startswith("attributes.") else None
    return value


_ABSENT = object()


def _key(view: View, fields: tuple[str, ...]) -> tuple[Any, ...]:
    """The values of `fields` in the view (what a count or sequence is kept per)."""
    if _reads_attributes(fields):
        return tuple(_value(view, f) for f in fields)
    return tuple(map(view.get, fields))


@cache
def _reads_attributes(fields: tuple[str, ...]) -> bool:
    return any(f.startswith("attributes.") for f in fields)


def _matches(f: Filter, view: View, in_class: Callable[[View, str], bool]) -> bool:
    for name in f.classes:
        if not in_class(view, name):
            return False
    get = view.get
    for name, values in f.include:
        value = get(name, _ABSENT)
        if (_value(view, name) if value is _ABSENT else value) not in values:
            return False
    for name, values in f.exclude:
        value = get(name, _ABSENT)
        if (_value(view, name) if value is _ABSENT else value) in values:
            return False
    for name in f.present:
        if _value(view, name) in (None, ""):
            return False
    return not f.absent or all(_value(view, name) in (None, "") for name in f.absent)


def _gap(clause: Clause, first: View, then: View) -> str:
    if clause.within_hours:
        hours = (then["_at"] - first["_at"]).total_seconds() / 3600
        return f"{hours:.1f} h (limit {clause.within_hours:g} h)"
    day = (then["local_date"] - first["local_date"]).days + 1
    return f"on day {day} (limit day {clause.within_local_days})"


def _show(value: Any) -> str:
    return "missing" if value is None else str(value)


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def _format(template: str, fields: dict[str, Any]) -> str:
    try:
        return template.format_map(_Blank({k: ("-" if v is None else v) for k, v in fields.items()}))
    except (ValueError, IndexError):
        return template
