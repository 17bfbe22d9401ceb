"""A realistic simulator of collection activity, with labelled violations.

Agencies, collectors and debtors in several time zones and jurisdictions; reference events first
(profiles, licences, certifications); then, in event-time order, a mix of channels and outcomes
whose texts are Simplified Chinese, Traditional Chinese or English.

Baseline traffic is compliant by construction: every debtor's schedule respects local hours,
daily caps, call frequency and the post-conversation pause, and every message carries its debt
information. Violations come from *scenarios*: with probability `violation_rate` the next item is a
scenario for one rule (played on a debtor of its own so it cannot disturb baseline state), whose
events are labelled with the rule that must fire on exactly one of them. Scenarios that must NOT
alert (the negative examples of ../shared/RULES.md) are mixed in too, labelled with no rule.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import time as wallclock
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from schemas.contract import format_rfc3339, to_micros

ZONES = {  # zone -> (jurisdiction, phone region, share of debtors)
    "Asia/Shanghai": ("CN", "CN", 0.55),
    "Asia/Urumqi": ("CN", "CN", 0.05),
    "Asia/Hong_Kong": ("CN", "HK", 0.05),
    "America/New_York": ("US", "US", 0.15),
    "America/Chicago": ("US", "US", 0.05),
    "America/Los_Angeles": ("US", "US", 0.1),
    "Europe/London": ("UK", "GB", 0.05),
}
CURRENCY = {"CN": "CNY", "US": "USD", "UK": "GBP"}

# Rules a scenario can violate, and in which jurisdiction their scenario plays.
CORE_RULES = {
    "QUIET_HOURS": ("CN", "US"), "DAILY_CONTACT_CAP": ("CN",), "CALL_FREQUENCY_7_IN_7": ("US",),
    "CALL_AFTER_CONVERSATION": ("US",), "THIRD_PARTY_CONTACT": ("CN",), "THIRD_PARTY_DISCLOSURE": ("CN", "US"),
    "THREAT": ("CN", "US"), "INSULT_OBSCENITY": ("CN", "US"), "IMPERSONATION": ("CN", "US"),
    "UNOFFICIAL_PAYMENT": ("CN",), "DEBT_INFO_MISSING": ("CN",), "CEASE_CONTACT": ("CN", "US"),
    "ATTORNEY_REPRESENTED": ("US",), "PAYMENT_PLAN_ACTIVE": ("CN",), "COMPLAINT_SLA": ("CN",),
    "FIELD_VISIT_CONTROLS": ("CN",), "CALL_NOT_RECORDED": ("CN", "US"), "UNQUALIFIED_COLLECTOR": ("CN", "US"),
}

# Compliant texts: {amount} and {due} are filled in. Per jurisdiction: (script, text).
_SMS_TEXTS = {
    "CN": [
        "【{creditor}】您尾号{tail}的贷款应还{amount}元，到期日{due}，请通过App或官方对公账户还款。",
        "【{creditor}】您本期應還款{amount}元，到期日{due}，請通過官方App還款，如有疑問請致電客服。",
        "{creditor}提醒：您的账单{amount}元将于{due}到期，可在App内申请分期。",
    ],
    "US": [
        "{creditor}: your balance of ${amount} was due {due}. Pay in the app or call us. Reply STOP to opt out.",
        "This is {creditor} about your account ending {tail}: ${amount} due {due}. Text STOP to opt out.",
    ],
    "UK": ["{creditor}: £{amount} was due on {due}. Please contact us to discuss options. Reply STOP to opt out."],
}
_CALL_TEXTS = {
    "CN": [
        "您好，我是{creditor}委托的{agency}催收员，工号{badge}。您的贷款{amount}元已于{due}到期，请问何时方便还款？",
        "您好，我是{creditor}委託的{agency}工作人員，工號{badge}。您有一筆{amount}元的欠款於{due}到期，請問是否需要分期？",
    ],
    "US": ["Hi, this is {badge} with {agency}, a debt collector, calling on behalf of {creditor} about a balance "
           "of ${amount} due {due}. Can we set up a payment?"],
    "UK": ["Hello, this is {agency} on behalf of {creditor} about £{amount} due {due}. We can agree a plan."],
}
_LETTER_TEXTS = {
    "CN": ["债权人：{creditor}。您的欠款{amount}元已于{due}到期。如有异议，请于30日内致电{creditor}客服或书面提出。"],
    "US": ["Creditor: {creditor}. Amount due: ${amount} as of {due}. You may dispute this debt in writing "
           "within 30 days; we will then obtain verification."],
    "UK": ["Creditor: {creditor}. Amount due £{amount} as of {due}. If you dispute this debt, write to us."],
}
_DEBTOR_WORDS = ["再打我就报警", "我下周发工资就还", "我現在沒錢，能不能分期？", "Stop calling me, I'll pay Friday.",
                 "你们再骚扰我我就投诉"]
_CREDITORS = {"CN": ["招商银行", "平安普惠", "微众银行"], "US": ["Acme Bank", "River Credit"], "UK": ["Thames Lending"]}

# Violating phrases (Simplified, Traditional, English), per rule.
VIOLATION_TEXTS = {
    "THREAT": ["不还钱就弄死你", "小心你全家", "我知道你家住哪", "不還錢小心你全家出事", "We know where you live.",
               "Pay up or something bad will happen to your car."],
    "INSULT_OBSCENITY": ["你这个老赖，真是废物", "欠钱不还的老賴", "傻b，赶紧还钱", "cnm快还钱",
                         "You deadbeat, pay now.",
                         "他妈的你到底还不还"],
    "IMPERSONATION": ["我是朝阳区公安局经侦的，你涉嫌诈骗", "这是法院传票，明天来领", "我們是法院執行局的",
                      "This is a court summons, you must appear.", "I'm calling from the police department."],
    "UNOFFICIAL_PAYMENT": ["钱转我个人微信就行", "转我个人支付宝，今天必须到账", "另收上门费500元", "錢轉我個人微信"],
    "THIRD_PARTY_DISCLOSURE": ["您儿子欠款5000元已逾期三个月", "你朋友张三欠我们五千逾期三个月", "您兒子欠款已逾期",
                               "Your coworker owes us $2,000 and won't repay us."],
}


@dataclass(frozen=True)
class SimConfig:
    seed: int = 7
    start: datetime = field(default_factory=lambda: datetime.now(UTC).replace(
        hour=0, minute=0, second=0, microsecond=0) - timedelta(days=120))
    debtors: int = 2000
    agencies: int = 6
    collectors_per_agency: int = 8
    violation_rate: float = 0.01
    negative_rate: float = 0.005
    rules: tuple[str, ...] = tuple(CORE_RULES)


@dataclass(frozen=True)
class SimEvent:
    """One event as sent (contract JSON) and the rule it must trigger, if any."""

    event: dict[str, Any]
    expected_rule: str | None = None
    scenario: str | None = None


@dataclass
class _Debtor:
    debtor_id: str
    account_id: str
    zone: ZoneInfo
    jurisdiction: str
    agency_id: str
    phone: str
    amount_minor: int
    due: date
    creditor: str
    contacts: int = 0
    last_conversation_day: date | None = None


def _phone(region: str, rng: random.Random) -> str:
    if region in ("CN",):
        return f"+86 1{rng.choice('3589')}{rng.randrange(10**8, 10**9):09d}"
    if region == "HK":
        return f"+852 {rng.choice('569')}{rng.randrange(10**6, 10**7):07d}"
    if region == "US":
        return f"+1 {rng.randrange(201, 989)}-{rng.randrange(200, 999)}-{rng.randrange(1000, 9999)}"
    return f"+44 7{rng.randrange(10**8, 10**9):09d}"


class Simulation:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self._seq = itertools.count()
        self._scenario_ids = itertools.count(1)
        self._heap: list[tuple[datetime, int, Callable[[], list[SimEvent]]]] = []
        self.agencies = [f"AG{i:03d}" for i in range(1, config.agencies + 1)]
        self.collectors = {a: [f"{a}-C{j:03d}" for j in range(1, config.collectors_per_agency + 1)]
                           for a in self.agencies}
        self.debtors = [self._new_debtor(f"D{i:06d}") for i in range(1, config.debtors + 1)]
        self.now = config.start

    # -- the population -------------------------------------------------------------------------

    def _new_debtor(self, debtor_id: str, jurisdiction: str | None = None) -> _Debtor:
        rng = self.rng
        zones = [z for z, (j, _, _) in ZONES.items() if jurisdiction in (None, j)]
        zone = rng.choices(zones, weights=[ZONES[z][2] for z in zones])[0]
        juris, region, _ = ZONES[zone]
        return _Debtor(
            debtor_id=debtor_id, account_id=f"ACC-{debtor_id}", zone=ZoneInfo(zone), jurisdiction=juris,
            agency_id=rng.choice(self.agencies), phone=_phone(region, rng),
            amount_minor=rng.randrange(50_000, 5_000_000, 100),
            due=(self.config.start - timedelta(days=rng.randrange(5, 90))).date(),
            creditor=rng.choice(_CREDITORS[juris]),
        )

    def _stamp(self, moment: datetime, zone: tzinfo) -> str:
        local = moment.astimezone(zone)
        offset = local.utcoffset()
        assert offset is not None
        return format_rfc3339(to_micros(moment), int(offset.total_seconds() // 60))

    def _profile(self, d: _Debtor, at: datetime) -> dict[str, Any]:
        return {"kind": "DEBTOR_PROFILE", "occurred_at": self._stamp(at, d.zone), "debtor_id": d.debtor_id,
                "account_id": d.account_id, "timezone": str(d.zone), "jurisdiction": d.jurisdiction,
                "phone_region": ZONES[str(d.zone)][1], "source_system": "crm"}

    def reference_events(self) -> list[SimEvent]:
        """Profiles, agency licences and collector certifications, all effective before the start."""
        start, rng, out = self.config.start, self.rng, []
        for agency in self.agencies:
            out.append(SimEvent({"kind": "AGENCY_LICENSE", "occurred_at": self._stamp(start - timedelta(days=400), UTC),
                                 "agency_id": agency, "status": "VALID",
                                 "valid_from": self._stamp(start - timedelta(days=400), UTC),
                                 "valid_to": self._stamp(start + timedelta(days=3650), UTC)}))
            for collector in self.collectors[agency]:
                trained = start - timedelta(days=rng.randrange(1, 60))
                out.append(SimEvent(self._certification(collector, agency, trained)))
        for d in self.debtors:
            out.append(SimEvent(self._profile(d, start - timedelta(days=rng.randrange(1, 30)))))
        return out

    def _certification(self, collector: str, agency: str, trained: datetime) -> dict[str, Any]:
        return {"kind": "COLLECTOR_CERTIFICATION", "occurred_at": self._stamp(trained, UTC),
                "collector_id": collector, "agency_id": agency, "valid_from": self._stamp(trained, UTC),
                "valid_to": self._stamp(trained + timedelta(days=365), UTC)}

    # -- event-time scheduling ------------------------------------------------------------------

    def _push(self, when: datetime, make: Callable[[], list[SimEvent]]) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), make))

    def _local(self, d: _Debtor, day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
        return datetime.combine(day, time(hour, minute, second), tzinfo=d.zone).astimezone(UTC)

    def _next_contact(self, d: _Debtor, after: datetime) -> datetime:
        """The debtor's next baseline contact: 1-3 local days later, between 09:00 and 19:59 local."""
        day = after.astimezone(d.zone).date() + timedelta(days=self.rng.choice((1, 1, 2, 3)))
        return self._local(d, day, self.rng.randrange(9, 20), self.rng.randrange(60), self.rng.randrange(60))

    def events(self) -> Iterator[SimEvent]:
        """Reference events, then actions in event-time order, forever (the caller stops)."""
        for item in self.reference_events():
            item.event["event_id"] = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
            yield item
        for d in self.debtors:
            day = self.config.start.date() + timedelta(days=self.rng.randrange(3))
            first = self._local(d, day, self.rng.randrange(9, 20), self.rng.randrange(60))
            self._push(first, self._baseline(d, first))
        while self._heap:
            when, _, make = heapq.heappop(self._heap)
            self.now = max(self.now, when)
            for item in make():
                item.event.setdefault("event_id", str(uuid.UUID(int=self.rng.getrandbits(128), version=4)))
                yield item
            roll = self.rng.random()
            if roll < self.config.violation_rate and self.config.rules:
                self._schedule_scenario(self.rng.choice(self.config.rules), self.now, positive=True)
            elif roll < self.config.violation_rate + self.config.negative_rate:
                self._schedule_scenario(self.rng.choice(list(NEGATIVE_SCENARIOS)), self.now, positive=False)

    # -- baseline traffic -----------------------------------------------------------------------

    def _fill(self, text: str, d: _Debtor, badge: str = "") -> str:
        amount = f"{d.amount_minor / 100:,.2f}"
        return text.format(creditor=d.creditor, tail=d.account_id[-4:], amount=amount, due=d.due.isoformat(),
                           agency=f"{d.agency_id}公司" if d.jurisdiction == "CN" else f"Agency {d.agency_id}",
                           badge=badge or "A123")

    def _action(self, d: _Debtor, at: datetime, action_type: str, **fields: Any) -> dict[str, Any]:
        source = "dialer" if "CALL" in action_type else "messaging"
        event: dict[str, Any] = {
                 "occurred_at": self._stamp(at, d.zone), "source_system": source,
                 "agency_id": d.agency_id, "debtor_id": d.debtor_id,
                 "account_id": d.account_id, "collector_id": self.rng.choice(self.collectors[d.agency_id]),
                 "action_type": action_type, "direction": "OUTBOUND", "counterparty": "DEBTOR",
                 "contact_address": d.phone}
        if action_type in ("SMS", "EMAIL", "IM_MESSAGE", "LETTER", "LEGAL_NOTICE", "PAYMENT_PLAN_OFFER"):
            event.update(amount_due_minor=d.amount_minor, currency=CURRENCY[d.jurisdiction],
                         due_date=d.due.isoformat())
        event.update(fields)
        return {k: v for k, v in event.items() if v is not None}

    def _baseline(self, d: _Debtor, at: datetime) -> Callable[[], list[SimEvent]]:
        def make() -> list[SimEvent]:
            event = self._baseline_action(d, at)
            d.contacts += 1
            following = self._next_contact(d, at)
            self._push(following, self._baseline(d, following))
            return [SimEvent(event)] if event else []
        return make

    def _baseline_action(self, d: _Debtor, at: datetime) -> dict[str, Any] | None:
        """The debtor's contact at `at`, or None when it was scheduled for later (a night call-in)."""
        rng, day = self.rng, at.astimezone(d.zone).date()
        # US: no call within 7 days after a conversation (day 1 = conversation day) -> send a message.
        calls_paused = d.jurisdiction == "US" and d.last_conversation_day is not None \
            and (day - d.last_conversation_day).days < 8
        if d.contacts == 0:  # first contact: a letter with the full debt information (US validation notice)
            return self._action(d, at, "LETTER", message_text=self._fill(rng.choice(_LETTER_TEXTS[d.jurisdiction]), d),
                                contact_address=None, collector_id=None, automated=True)
        kind = rng.choices(["CALL_ATTEMPT", "CALL_CONNECTED", "VOICEMAIL", "SMS", "EMAIL", "IM_MESSAGE", "INBOUND",
                            "PAYMENT_PLAN_OFFER", "FIELD_VISIT"], [34, 14, 5, 22, 8, 8, 5, 3, 1])[0]
        if calls_paused and kind in ("CALL_ATTEMPT", "CALL_CONNECTED", "VOICEMAIL", "FIELD_VISIT"):
            kind = rng.choice(["SMS", "EMAIL"])
        if kind == "FIELD_VISIT" and d.jurisdiction != "CN":
            kind = "SMS"
        badge = f"{rng.randrange(100, 999)}"
        texts = _SMS_TEXTS[d.jurisdiction]
        if kind == "CALL_ATTEMPT":
            return self._action(d, at, kind, call_result=rng.choices(["NO_ANSWER", "BUSY", "FAILED"], [6, 3, 1])[0])
        if kind in ("CALL_CONNECTED", "INBOUND"):
            d.last_conversation_day = day
            if kind == "INBOUND":
                inbound = self._action(d, at, "CALL_CONNECTED", direction="INBOUND",
                                       message_text=rng.choice(_DEBTOR_WORDS),
                                       recording_id=f"REC-{rng.getrandbits(48):x}",
                                       duration_seconds=rng.randrange(30, 600))
                if rng.random() < 0.3:  # a debtor may call in at night: not a proactive contact
                    night = self._local(d, day, 22, rng.randrange(60))
                    inbound["occurred_at"] = self._stamp(night, d.zone)
                    self._push(night, lambda: [SimEvent(inbound)])
                    return None
                return inbound
            return self._action(d, at, kind, message_text=self._fill(rng.choice(_CALL_TEXTS[d.jurisdiction]), d, badge),
                                recording_id=f"REC-{rng.getrandbits(48):x}", duration_seconds=rng.randrange(30, 900))
        if kind == "VOICEMAIL":
            return self._action(d, at, kind, recording_id=f"REC-{rng.getrandbits(48):x}", duration_seconds=25,
                                message_text=self._fill(rng.choice(_CALL_TEXTS[d.jurisdiction]), d, badge))
        if kind == "FIELD_VISIT":
            return self._action(d, at, kind, staff_count=2, credentials_shown=True,
                                recording_id=f"REC-{rng.getrandbits(48):x}", contact_address="家庭住址（已登记）",
                                message_text="我们是受托上门沟通还款事宜的工作人员，这是我们的工作证。")
        if kind == "PAYMENT_PLAN_OFFER":
            return self._action(d, at, kind, message_text=self._fill(rng.choice(texts), d))
        automated = kind == "SMS" and rng.random() < 0.5
        return self._action(d, at, kind, message_text=self._fill(rng.choice(texts), d),
                            collector_id=None if automated else self.rng.choice(self.collectors[d.agency_id]),
                            automated=automated or None)

    # -- scenarios ------------------------------------------------------------------------------

    def _schedule_scenario(self, name: str, now: datetime, positive: bool) -> None:
        builders = POSITIVE_SCENARIOS if positive else NEGATIVE_SCENARIOS
        juris = self.rng.choice(CORE_RULES.get(name, ("CN",)) if positive else NEGATIVE_JURISDICTION[name])
        number = next(self._scenario_ids)
        d = self._new_debtor(f"S{number:06d}", juris)
        label = f"{'+' if positive else '-'}{name}#{number}"
        day = (now + timedelta(days=1)).astimezone(d.zone).date()
        profile_at = now
        steps = builders[name](self, d, day)
        self._push(profile_at, lambda: [SimEvent(self._profile(d, profile_at), scenario=label)])
        if juris == "US":  # the validation notice every US debtor gets first (Reg F 1006.34)
            notice_at = profile_at + timedelta(seconds=1)
            notice = self._action(d, notice_at, "LETTER", message_text=self._fill(_LETTER_TEXTS["US"][0], d),
                                  contact_address=None, collector_id=None, automated=True)
            self._push(notice_at, lambda: [SimEvent(notice, scenario=label)])
        for at, event, alerts in steps:
            def make(event: dict[str, Any] = event, alerts: bool = alerts) -> list[SimEvent]:
                return [SimEvent(event, name if alerts and positive else None, label)]
            self._push(at, make)


Step = tuple[datetime, dict[str, Any], bool]  # (when it is sent, the event, must it alert?)
Scenario = Callable[[Simulation, _Debtor, date], list[Step]]


def _sms(sim: Simulation, d: _Debtor, at: datetime, **fields: Any) -> dict[str, Any]:
    return sim._action(d, at, "SMS", message_text=sim._fill(sim.rng.choice(_SMS_TEXTS[d.jurisdiction]), d), **fields)


def _connected(sim: Simulation, d: _Debtor, at: datetime, **fields: Any) -> dict[str, Any]:
    text = sim._fill(sim.rng.choice(_CALL_TEXTS[d.jurisdiction]), d, "207")
    return sim._action(d, at, "CALL_CONNECTED", message_text=text, recording_id=f"REC-{sim.rng.getrandbits(40):x}",
                       duration_seconds=120, **fields)


def _attempt(sim: Simulation, d: _Debtor, at: datetime, result: str = "NO_ANSWER") -> dict[str, Any]:
    return sim._action(d, at, "CALL_ATTEMPT", call_result=result)


def _ref(sim: Simulation, d: _Debtor, at: datetime, kind: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "occurred_at": sim._stamp(at, d.zone), "debtor_id": d.debtor_id, **fields}


def _quiet_hours(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
    hour, minute = (22, 0) if d.jurisdiction == "CN" else (21, 30)
    if sim.rng.random() < 0.5:
        hour, minute = 6, 40
    return [(sim._local(d, day, hour, minute), _attempt(sim, d, sim._local(d, day, hour, minute)), True)]


def _daily_cap(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
    times = [sim._local(d, day, h) for h in (9, 11, 14, 16)]
    return [(t, _connected(sim, d, t, automated=(i == 3) or None, collector_id=None if i == 3 else
                           sim.collectors[d.agency_id][i]), i == 3) for i, t in enumerate(times)]


def _seven_in_seven(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
    times = [sim._local(d, day + timedelta(days=i), 10) for i in range(7)]
    times.append(sim._local(d, day + timedelta(days=6), 15))
    return [(t, _attempt(sim, d, t), i == 7) for i, t in enumerate(times)]


def _call_after_conversation(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
    first, second = sim._local(d, day, 10), sim._local(d, day + timedelta(days=6), 10)
    return [(first, _connected(sim, d, first), False), (second, _attempt(sim, d, second), True)]


def _third_party_contact(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
    first, second = sim._local(d, day, 10), sim._local(d, day + timedelta(days=1), 11)
    return [(first, _connected(sim, d, first), False),
            (second, sim._action(d, second, "CALL_CONNECTED", counterparty="FAMILY", contact_address="+86 13900001111",
                                 message_text="您好，麻烦您转告他给我们回个电话。", recording_id="REC-3p",
                                 duration_seconds=40), True)]


def _content(rule: str, action_type: str = "IM_MESSAGE") -> Scenario:
    def build(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
        at = sim._local(d, day, 15)
        text = sim.rng.choice(VIOLATION_TEXTS[rule])
        if rule == "THIRD_PARTY_DISCLOSURE":
            return [(at, sim._action(d, at, "SMS", counterparty="FAMILY", contact_address="+86 13900002222",
                                     message_text=text, amount_due_minor=None, currency=None, due_date=None), True)]
        recording = f"REC-{sim.rng.getrandbits(40):x}" if action_type == "CALL_CONNECTED" else None
        return [(at, sim._action(d, at, action_type, message_text=text, amount_due_minor=d.amount_minor,
                                 currency=CURRENCY[d.jurisdiction], due_date=d.due.isoformat(),
                                 recording_id=recording), True)]
    return build


def _debt_info_missing(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
    at = sim._local(d, day, 10)
    return [(at, sim._action(d, at, "SMS", message_text=sim.rng.choice(["请尽快还款", "請盡快還款，謝謝"]),
                             amount_due_minor=None, currency=None, due_date=None), True)]


def _cease(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
    received, sms_at = sim._local(d, day, 9), sim._local(d, day + timedelta(days=1), 10)
    request = _ref(sim, d, received, "CEASE_REQUEST", counterparty="DEBTOR")
    if sim.rng.random() < 0.3:  # late: the request was received first but reaches us after the SMS
        return [(sms_at, _sms(sim, d, sms_at), True), (sms_at + timedelta(hours=2), request, False)]
    return [(received, request, False), (sms_at, _sms(sim, d, sms_at), True)]


def _attorney(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
    known, call_at = sim._local(d, day, 9), sim._local(d, day + timedelta(days=2), 10)
    return [(known, _ref(sim, d, known, "ATTORNEY_REPRESENTATION", contact_address="Law Office of J. Doe"), False),
            (call_at, _attempt(sim, d, call_at), True)]


def _payment_plan(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
    signed, sms_at = sim._local(d, day, 9), sim._local(d, day + timedelta(days=9), 10)
    return [(signed, _ref(sim, d, signed, "PAYMENT_PLAN", status="ACTIVE", plan_id=f"P-{d.debtor_id}"), False),
            (sms_at, _sms(sim, d, sms_at), True)]


def _complaint_sla(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
    filed = sim._local(d, day, 9)
    return [(filed, _ref(sim, d, filed, "COMPLAINT_FILED", complaint_id=f"CMP-{d.debtor_id}",
                         agency_id=d.agency_id), True)]


def _field_visit(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
    at = sim._local(d, day, 10)
    return [(at, sim._action(d, at, "FIELD_VISIT", staff_count=1, credentials_shown=True, recording_id="REC-fv",
                             contact_address="家庭住址（已登记）"), True)]


def _not_recorded(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
    at = sim._local(d, day, 11)
    event = _connected(sim, d, at)
    del event["recording_id"]
    return [(at, event, True)]


def _unqualified(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
    if d.jurisdiction == "US":  # the US profile checks the agency licence only: an agency whose licence lapsed
        agency, at = f"AGX{d.debtor_id}", sim._local(d, day, 10)
        licence = {"kind": "AGENCY_LICENSE", "occurred_at": sim._stamp(at - timedelta(days=400), UTC),
                   "agency_id": agency, "status": "VALID",
                   "valid_from": sim._stamp(at - timedelta(days=400), UTC),
                   "valid_to": sim._stamp(at - timedelta(days=1), UTC)}
        call = _attempt(sim, d, at) | {"agency_id": agency, "collector_id": None}
        return [(at - timedelta(hours=1), licence, False), (at, call, True)]
    collector = f"{d.agency_id}-X{d.debtor_id}"
    trained = sim._local(d, day, 9) - timedelta(days=366)
    at = sim._local(d, day, 10)
    cert = sim._certification(collector, d.agency_id, trained)
    return [(at - timedelta(hours=1), cert, False), (at, _attempt(sim, d, at) | {"collector_id": collector}, True)]


POSITIVE_SCENARIOS: dict[str, Scenario] = {
    "QUIET_HOURS": _quiet_hours, "DAILY_CONTACT_CAP": _daily_cap, "CALL_FREQUENCY_7_IN_7": _seven_in_seven,
    "CALL_AFTER_CONVERSATION": _call_after_conversation, "THIRD_PARTY_CONTACT": _third_party_contact,
    "THIRD_PARTY_DISCLOSURE": _content("THIRD_PARTY_DISCLOSURE"), "THREAT": _content("THREAT"),
    "INSULT_OBSCENITY": _content("INSULT_OBSCENITY"), "IMPERSONATION": _content("IMPERSONATION", "CALL_CONNECTED"),
    "UNOFFICIAL_PAYMENT": _content("UNOFFICIAL_PAYMENT"), "DEBT_INFO_MISSING": _debt_info_missing,
    "CEASE_CONTACT": _cease, "ATTORNEY_REPRESENTED": _attorney, "PAYMENT_PLAN_ACTIVE": _payment_plan,
    "COMPLAINT_SLA": _complaint_sla, "FIELD_VISIT_CONTROLS": _field_visit, "CALL_NOT_RECORDED": _not_recorded,
    "UNQUALIFIED_COLLECTOR": _unqualified,
}


# Negative examples of RULES.md: events that look close to a violation and must not alert.
def _neg_quiet_edges(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
    early, late = sim._local(d, day, 8), sim._local(d, day, 21, 59, 59)
    return [(early, _attempt(sim, d, early, "BUSY"), False), (late, _sms(sim, d, late), False)]


def _neg_cap_midnight(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
    times = [sim._local(d, day, 9), sim._local(d, day, 12), sim._local(d, day, 20)]
    times.append(sim._local(d, day + timedelta(days=1), 9))
    return [(t, _connected(sim, d, t), False) for t in times]


def _neg_seven_busy(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
    steps = [(sim._local(d, day + timedelta(days=i), 10), "NO_ANSWER") for i in range(7)]
    steps += [(sim._local(d, day + timedelta(days=i), 16), "BUSY") for i in (2, 4)]
    return [(t, _attempt(sim, d, t, result), False) for t, result in sorted(steps)]


def _neg_after_conversation(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
    first, second = sim._local(d, day, 10), sim._local(d, day + timedelta(days=7), 10)
    return [(first, _connected(sim, d, first), False), (second, _attempt(sim, d, second), False)]


def _neg_debtor_quotes(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
    at = sim._local(d, day, 14)
    return [(at, sim._action(d, at, "CALL_CONNECTED", direction="INBOUND", recording_id="REC-in",
                             message_text="你们说什么'不还钱就弄死你'，再打我就报警", duration_seconds=60), False)]


def _neg_complaint_resolved(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
    filed = sim._local(d, day, 9)
    resolved = sim._local(d, day + timedelta(days=14), 23, 59)  # day 15, the filing day being day 1
    cid = f"CMP-{d.debtor_id}"
    return [(filed, _ref(sim, d, filed, "COMPLAINT_FILED", complaint_id=cid), False),
            (resolved, _ref(sim, d, resolved, "COMPLAINT_RESOLVED", complaint_id=cid), False)]


def _neg_plan_breached(sim: Simulation, d: _Debtor, day: date) -> list[Step]:
    signed, breached = sim._local(d, day, 9), sim._local(d, day + timedelta(days=30), 9)
    sms_at = sim._local(d, day + timedelta(days=34), 10)
    plan = f"P-{d.debtor_id}"
    return [(signed, _ref(sim, d, signed, "PAYMENT_PLAN", status="ACTIVE", plan_id=plan), False),
            (breached, _ref(sim, d, breached, "PAYMENT_PLAN", status="BREACHED", plan_id=plan), False),
            (sms_at, _sms(sim, d, sms_at), False)]


NEGATIVE_SCENARIOS: dict[str, Scenario] = {
    "QUIET_HOURS_EDGES": _neg_quiet_edges, "CAP_ACROSS_MIDNIGHT": _neg_cap_midnight,
    "SEVEN_WITH_BUSY": _neg_seven_busy, "CALL_ON_DAY_8": _neg_after_conversation,
    "DEBTOR_QUOTES": _neg_debtor_quotes, "COMPLAINT_RESOLVED_DAY_15": _neg_complaint_resolved,
    "PLAN_BREACHED": _neg_plan_breached,
}
NEGATIVE_JURISDICTION = {
    "QUIET_HOURS_EDGES": ("CN",), "CAP_ACROSS_MIDNIGHT": ("CN",), "SEVEN_WITH_BUSY": ("US",),
    "CALL_ON_DAY_8": ("US",), "DEBTOR_QUOTES": ("CN",), "COMPLAINT_RESOLVED_DAY_15": ("CN",),
    "PLAN_BREACHED": ("CN",),
}


@dataclass
class SimProgress:
    sent: int = 0
    labelled: int = 0
    sim_time: datetime | None = None


def run_simulation(sim: Simulation, send: Callable[[list[dict[str, Any]]], object], *, rate: float,
                   duration_s: float | None, labels: Any = None, progress: SimProgress | None = None,
                   should_stop: Callable[[], bool] = lambda: False,
                   clock: Callable[[], float] = wallclock.monotonic,
                   sleep: Callable[[float], None] = wallclock.sleep) -> SimProgress:
    """Send simulated events at `rate` per second for `duration_s` (None: until stopped or until the
    simulation reaches the present). `labels`, a text file, receives one JSON line per labelled event."""
    progress = progress or SimProgress()
    batch_size = max(1, min(500, int(rate / 20) or 1))  # ~20 sends a second keeps the pace smooth
    started = clock()
    horizon = datetime.now(UTC) + timedelta(hours=12)
    batch: list[SimEvent] = []
    for item in sim.events():
        if should_stop() or (duration_s is not None and clock() - started >= duration_s) or sim.now > horizon:
            break
        batch.append(item)
        if len(batch) < batch_size:
            continue
        _flush_batch(batch, send, labels, progress)
        progress.sim_time = sim.now
        batch = []
        ahead = progress.sent / rate - (clock() - started)
        if ahead > 0:
            sleep(ahead)
    if batch:
        _flush_batch(batch, send, labels, progress)
    return progress


def _flush_batch(batch: list[SimEvent], send: Callable[[list[dict[str, Any]]], object], labels: Any,
                 progress: SimProgress) -> None:
    send([item.event for item in batch])
    progress.sent += len(batch)
    for item in batch:
        if item.scenario:
            progress.labelled += item.expected_rule is not None
            if labels is not None:
                labels.write(json.dumps({"event_id": item.event["event_id"], "expected_rule": item.expected_rule,
                                         "scenario": item.scenario}, ensure_ascii=False) + "\n")
