"""Loading the rule catalog: rule files, action classes and lexicons, checked before anything runs.

A rule file (`catalog/<RULE>.yaml`) says: rule, version, core, desc, severity, citation, summary,
profiles, exceptions. `profiles` maps a jurisdiction (CN, US, UK) to `off` or to a list of
clauses; each clause has a `kind` (predicate, lexicon, count, sequence, state, absence) and that
kind's parameters. An alert is raised when any clause of the debtor's profile fires. CN is the
default profile: a jurisdiction a rule does not list uses the CN clauses.

Unknown keys, unknown classes, fields, categories and bad values are errors that name the file,
the line and the reason; the loader reports all of them at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any

import yaml

RULES_DIR = Path(__file__).parent
JURISDICTIONS = ("CN", "US", "UK")
DEFAULT_PROFILE = "CN"
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
KINDS = ("predicate", "lexicon", "count", "sequence", "state", "absence")
BLOCKERS = ("cease", "attorney", "payment_plan", "contact_cease")
REFERENCE_KINDS = ("CEASE_REQUEST", "CEASE_WITHDRAWN", "ATTORNEY_REPRESENTATION", "COMPLAINT_FILED",
                   "COMPLAINT_RESOLVED", "PAYMENT_PLAN")

# Fields a filter or a condition may name: the action's own fields and what the engine derives.
ACTION_FIELDS = frozenset({
    "event_id", "source_system", "agency_id", "debtor_id", "account_id", "collector_id", "action_type", "direction",
    "counterparty", "contact_address", "message_text", "recording_id", "duration_seconds", "call_result",
    "automated", "staff_count", "credentials_shown", "amount_due_minor", "currency", "due_date"})
DERIVED_FIELDS = frozenset({
    "jurisdiction", "local_date", "local_weekday", "contact_key", "agency_licence", "collector_certification",
    "debt_amount_disclosed", "due_date_disclosed", "late"})
FIELDS = ACTION_FIELDS | DERIVED_FIELDS


class RuleFileError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# -- YAML with line numbers ------------------------------------------------------------------------

class _Map(dict[str, Any]):
    line: int = 0
    key_lines: dict[str, int]


class _Seq(list[Any]):
    line: int = 0


def _read_yaml(path: Path) -> Any:
    node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    constructor = yaml.SafeLoader("")
    return _plain(node, constructor) if node is not None else None


def _plain(node: yaml.Node, constructor: yaml.SafeLoader) -> Any:
    if isinstance(node, yaml.MappingNode):
        mapping = _Map()
        mapping.line, mapping.key_lines = node.start_mark.line + 1, {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node)
            mapping[str(key)] = _plain(value_node, constructor)
            mapping.key_lines[str(key)] = key_node.start_mark.line + 1
        return mapping
    if isinstance(node, yaml.SequenceNode):
        sequence = _Seq(_plain(item, constructor) for item in node.value)
        sequence.line = node.start_mark.line + 1
        return sequence
    return constructor.construct_object(node)


class _Problems:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[str] = []

    def add(self, where: Any, reason: str, key: str | None = None) -> None:
        line = getattr(where, "key_lines", {}).get(key) if key is not None else None
        line = line or getattr(where, "line", 0)
        self.items.append(f"{self.path}:{line}: {reason}")


# -- what a rule is, once loaded -------------------------------------------------------------------

@dataclass(frozen=True)
class Filter:
    """`field: [values]`, `field_not: [values]`, `present: [...]`, `absent: [...]`, `class: name`."""

    include: tuple[tuple[str, frozenset[Any]], ...] = ()
    exclude: tuple[tuple[str, frozenset[Any]], ...] = ()
    present: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Condition:
    kind: str  # missing | below | is_not | not_in | local_time_between | mentions
    field: str = ""
    value: Any = None
    start: time | None = None
    end: time | None = None
    include_start: bool = True
    include_end: bool = False


@dataclass(frozen=True)
class Clause:
    kind: str
    when: Filter = Filter()
    any: tuple[Condition, ...] = ()
    categories: tuple[str, ...] = ()
    or_debt_fields: bool = False
    unless_collector_role: tuple[str, ...] = ()
    events: str = ""
    per: tuple[str, ...] = ()
    window_local_days: int = 0
    max: int = 0
    after: str = ""
    then: str = ""
    within_hours: float = 0.0
    within_local_days: int = 0
    blocked_by: str = ""
    start: str = ""
    satisfied_by: str = ""
    first_only: bool = False
    match: str = ""
    deadline_local_days: int = 0
    complex_deadline_local_days: int = 0


@dataclass(frozen=True)
class Rule:
    id: str
    version: int
    core: bool
    desc: str
    severity: str
    citation: str
    summary: str
    profiles: dict[str, tuple[Clause, ...]]  # jurisdiction -> clauses; empty tuple = off
    allow_phrases: tuple[str, ...] = ()
    exempt: tuple[Filter, ...] = ()
    path: str = ""

    def clauses_for(self, jurisdiction: str) -> tuple[Clause, ...]:
        if jurisdiction in self.profiles:
            return self.profiles[jurisdiction]
        return self.profiles.get(DEFAULT_PROFILE, ())


@dataclass
class Ruleset:
    rules: list[Rule]
    classes: dict[str, Filter]
    categories: set[str] = field(default_factory=set)

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


# -- parsing ---------------------------------------------------------------------------------------

_RULE_KEYS = ("rule", "version", "core", "desc", "severity", "citation", "summary", "profiles", "exceptions")
_KIND_KEYS = {
    "predicate": {"when", "any"},
    "lexicon": {"when", "categories", "or_debt_fields", "unless_collector_role"},
    "count": {"when", "events", "per", "window_local_days", "max"},
    "sequence": {"when", "after", "then", "within_hours", "within_local_days", "per"},
    "state": {"when", "blocked_by", "then"},
    "absence": {"start", "satisfied_by", "first_only", "match", "within_hours", "deadline_local_days",
                "complex_deadline_local_days"},
}
_REQUIRED = {
    "predicate": {"any"}, "lexicon": {"categories"}, "count": {"events", "window_local_days", "max"},
    "sequence": {"after", "then"}, "state": {"blocked_by", "then"}, "absence": {"start", "satisfied_by"},
}
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


def load_ruleset(rules_dir: Path = RULES_DIR, categories: set[str] | None = None) -> Ruleset:
    """Every rule file under `rules_dir/catalog`, with the classes they use; raises RuleFileError."""
    problems: list[str] = []
    classes = _load_classes(rules_dir / "classes.yaml", problems)
    rules = []
    seen: dict[str, str] = {}
    for path in sorted((rules_dir / "catalog").glob("*.yaml")):
        rule = _load_rule(path, classes, categories, problems)
        if rule is None:
            continue
        if rule.id in seen:
            problems.append(f"{path}:1: rule id {rule.id} already defined in {seen[rule.id]}")
        seen[rule.id] = str(path)
        rules.append(rule)
    if problems:
        raise RuleFileError(problems)
    return Ruleset(rules, classes, set(categories or ()))


def _load_classes(path: Path, problems: list[str]) -> dict[str, Filter]:
    report = _Problems(path)
    try:
        data = _read_yaml(path)
    except yaml.YAMLError as exc:
        problems.append(f"{path}: {exc}")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path}:1: expected a mapping of class name -> filter")
        return {}
    classes = {}
    for name, spec in data.items():
        classes[name] = _filter(spec, data, name, report, known_classes=None)
    problems.extend(report.items)
    return classes


def _load_rule(path: Path, classes: dict[str, Filter], categories: set[str] | None,
               problems: list[str]) -> Rule | None:
    report = _Problems(path)
    try:
        data = _read_yaml(path)
    except yaml.YAMLError as exc:
        problems.append(f"{path}: {exc}")
        return None
    if not isinstance(data, _Map):
        problems.append(f"{path}:1: expected a mapping with keys {', '.join(_RULE_KEYS)}")
        return None
    for key in data:
        if key not in _RULE_KEYS:
            report.add(data, f"unknown key '{key}' (allowed: {', '.join(_RULE_KEYS)})", key)
    for key in _RULE_KEYS:
        if key not in data and key != "exceptions":
            report.add(data, f"missing key '{key}'")
    rule_id = data.get("rule")
    if not isinstance(rule_id, str) or not re.fullmatch(r"[A-Z][A-Z0-9_]*", rule_id):
        report.add(data, "rule: an UPPER_SNAKE_CASE id is required", "rule")
    elif path.stem != rule_id:
        report.add(data, f"rule: id {rule_id} must match the file name {path.name}", "rule")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        report.add(data, "version: a positive integer is required", "version")
    if not isinstance(data.get("core"), bool):
        report.add(data, "core: true or false", "core")
    severity = data.get("severity")
    if severity not in SEVERITIES:
        report.add(data, f"severity: one of {', '.join(SEVERITIES)}, got {severity!r}", "severity")
    for key in ("desc", "citation", "summary"):
        if not isinstance(data.get(key), str) or not data.get(key):
            report.add(data, f"{key}: a non-empty text is required", key)
    profiles: dict[str, tuple[Clause, ...]] = {}
    raw_profiles = data.get("profiles")
    if not isinstance(raw_profiles, _Map):
        report.add(data, "profiles: a mapping of jurisdiction -> clauses or off", "profiles")
    else:
        for juris, spec in raw_profiles.items():
            if juris not in JURISDICTIONS:
                report.add(raw_profiles, f"profiles: unknown jurisdiction '{juris}' ({', '.join(JURISDICTIONS)})",
                           juris)
                continue
            if spec is False or spec == "off":
                profiles[juris] = ()
            elif isinstance(spec, _Seq) and spec:
                profiles[juris] = tuple(c for c in (_clause(item, classes, categories, report) for item in spec)
                                        if c is not None)
            else:
                report.add(raw_profiles, f"profiles.{juris}: a list of clauses, or off", juris)
        if DEFAULT_PROFILE not in raw_profiles:
            report.add(raw_profiles, f"profiles: the default profile {DEFAULT_PROFILE} must be given (clauses or off)")
    allow: list[str] = []
    exempt: list[Filter] = []
    raw_exceptions = data.get("exceptions") or []
    if not isinstance(raw_exceptions, list):
        report.add(data, "exceptions: a list", "exceptions")
        raw_exceptions = []
    for item in raw_exceptions:
        if not isinstance(item, _Map) or "name" not in item:
            report.add(raw_exceptions, "exceptions: each item needs a name and allow_phrases or when")
            continue
        for key in item:
            if key not in ("name", "allow_phrases", "when"):
                report.add(item, f"exceptions: unknown key '{key}' (name, allow_phrases, when)", key)
        if "allow_phrases" in item:
            phrases = item["allow_phrases"]
            if not isinstance(phrases, list) or not all(isinstance(p, str) and p for p in phrases):
                report.add(item, "allow_phrases: a list of phrases", "allow_phrases")
            else:
                allow.extend(phrases)
        if "when" in item:
            exempt.append(_filter(item["when"], item, "when", report, classes))
    problems.extend(report.items)
    if report.items:
        return None
    return Rule(rule_id, version, data["core"], data["desc"], severity, data["citation"], data["summary"],  # type: ignore[arg-type]
                profiles, tuple(allow), tuple(exempt), str(path))


def _filter(spec: Any, parent: Any, key: str, report: _Problems, known_classes: dict[str, Filter] | None) -> Filter:
    if not isinstance(spec, _Map):
        report.add(parent, f"{key}: a filter mapping (field: [values], field_not: [...], present, absent, class)", key)
        return Filter()
    include: list[tuple[str, frozenset[Any]]] = []
    exclude: list[tuple[str, frozenset[Any]]] = []
    present: list[str] = []
    absent: list[str] = []
    classes: list[str] = []
    for name, values in spec.items():
        if name in ("present", "absent"):
            fields = values if isinstance(values, list) else [values]
            for f in fields:
                if not _known_field(f):
                    report.add(spec, f"{key}.{name}: unknown field '{f}'", name)
            (present if name == "present" else absent).extend(fields)
            continue
        if name == "class":
            if known_classes is None:
                report.add(spec, "a class cannot refer to another class", name)
            elif values not in known_classes:
                report.add(spec, f"{key}.class: unknown class '{values}' (see classes.yaml)", name)
            classes.append(values)
            continue
        negate = name.endswith("_not")
        field_name = name[:-4] if negate else name
        if not _known_field(field_name):
            report.add(spec, f"{key}: unknown field '{field_name}'", name)
        if not isinstance(values, list) or not values:
            report.add(spec, f"{key}.{name}: a non-empty list of values", name)
            continue
        (exclude if negate else include).append((field_name, frozenset(values)))
    return Filter(tuple(include), tuple(exclude), tuple(present), tuple(absent), tuple(classes))


def _known_field(name: Any) -> bool:
    return isinstance(name, str) and (name in FIELDS or (name.startswith("attributes.") and len(name) > 11))


def _clause(spec: Any, classes: dict[str, Filter], categories: set[str] | None, report: _Problems) -> Clause | None:
    if not isinstance(spec, _Map):
        report.add(spec, "a clause is a mapping with a kind")
        return None
    kind = spec.get("kind")
    if kind not in KINDS:
        report.add(spec, f"kind: one of {', '.join(KINDS)}, got {kind!r}", "kind")
        return None
    allowed = _KIND_KEYS[kind] | {"kind"}
    before = len(report.items)
    for key in spec:
        if key not in allowed:
            report.add(spec, f"{kind}: unknown key '{key}' (allowed: {', '.join(sorted(allowed))})", key)
    for key in _REQUIRED[kind]:
        if key not in spec:
            report.add(spec, f"{kind}: missing key '{key}'")
    values: dict[str, Any] = {"kind": kind}
    if "when" in spec:
        values["when"] = _filter(spec["when"], spec, "when", report, classes)
    for key in ("events", "after", "then", "start", "satisfied_by"):
        if key in spec:
            name = spec[key]
            ref = isinstance(name, str) and name.startswith("reference:")
            if ref and name[len("reference:"):] not in REFERENCE_KINDS:
                report.add(spec, f"{key}: unknown reference kind in '{name}'", key)
            elif not ref and name not in classes:
                report.add(spec, f"{key}: unknown class '{name}' (see classes.yaml)", key)
            elif ref and key not in ("start", "satisfied_by"):
                report.add(spec, f"{key}: a class of actions is required here", key)
            values[key] = name
    for key in ("window_local_days", "max", "within_local_days", "deadline_local_days",
                "complex_deadline_local_days"):
        if key in spec:
            number = spec[key]
            if not isinstance(number, int) or isinstance(number, bool) or number < (0 if key == "max" else 1):
                report.add(spec, f"{key}: a {'non-negative' if key == 'max' else 'positive'} integer", key)
            values[key] = number
    if "within_hours" in spec:
        hours = spec["within_hours"]
        if not isinstance(hours, int | float) or isinstance(hours, bool) or hours <= 0:
            report.add(spec, "within_hours: a positive number", "within_hours")
        values["within_hours"] = float(hours) if isinstance(hours, int | float) else 0.0
    for key in ("or_debt_fields", "first_only"):
        if key in spec:
            if not isinstance(spec[key], bool):
                report.add(spec, f"{key}: true or false", key)
            values[key] = spec[key]
    if "per" in spec:
        per = spec["per"]
        if not isinstance(per, list) or not all(_known_field(p) for p in per):
            report.add(spec, f"per: a list of known fields, got {per!r}", "per")
        values["per"] = tuple(per) if isinstance(per, list) else ()
    if "categories" in spec:
        cats = spec["categories"]
        if not isinstance(cats, list) or not cats:
            report.add(spec, "categories: a non-empty list of lexicon categories", "categories")
        elif categories is not None:
            for cat in cats:
                if cat not in categories:
                    report.add(spec, f"categories: no lexicon files for '{cat}' (lexicons/{cat}.<lang>.txt)",
                               "categories")
        values["categories"] = tuple(cats) if isinstance(cats, list) else ()
    if "unless_collector_role" in spec:
        roles = spec["unless_collector_role"]
        values["unless_collector_role"] = tuple(roles) if isinstance(roles, list) else ()
    if "blocked_by" in spec:
        if spec["blocked_by"] not in BLOCKERS:
            report.add(spec, f"blocked_by: one of {', '.join(BLOCKERS)}", "blocked_by")
        values["blocked_by"] = spec["blocked_by"]
    if "match" in spec:
        values["match"] = str(spec["match"])
    if kind == "sequence" and ("within_hours" in spec) == ("within_local_days" in spec):
        report.add(spec, "sequence: give exactly one of within_hours, within_local_days")
    if kind == "absence" and ("within_hours" in spec) == ("deadline_local_days" in spec):
        report.add(spec, "absence: give exactly one of within_hours, deadline_local_days")
    if "any" in spec:
        conditions = spec["any"]
        if not isinstance(conditions, _Seq) or not conditions:
            report.add(spec, "any: a non-empty list of conditions", "any")
        else:
            values["any"] = tuple(c for c in (_condition(item, report, categories) for item in conditions) if c)
    if len(report.items) > before:
        return None
    return Clause(**values)


def _condition(spec: Any, report: _Problems, categories: set[str] | None) -> Condition | None:
    if not isinstance(spec, _Map):
        report.add(spec, "a condition is a mapping")
        return None
    keys = set(spec)
    if "local_time_between" in spec:
        extra = keys - {"local_time_between", "include_start", "include_end"}
        window = spec["local_time_between"]
        if extra:
            report.add(spec, f"local_time_between: unknown keys {sorted(extra)}")
            return None
        if not isinstance(window, list) or len(window) != 2 or not all(
                isinstance(t, str) and _HHMM.match(t) for t in window):
            report.add(spec, "local_time_between: [\"HH:MM\", \"HH:MM\"]", "local_time_between")
            return None
        start, end = (_parse_time(t) for t in window)
        return Condition("local_time_between", start=start, end=end,
                         include_start=bool(spec.get("include_start", True)),
                         include_end=bool(spec.get("include_end", False)))
    if "mentions" in spec:
        if keys != {"mentions", "is_not"}:
            report.add(spec, "mentions: {mentions: category, is_not: true|false}")
            return None
        if categories is not None and spec["mentions"] not in categories:
            report.add(spec, f"mentions: no lexicon files for '{spec['mentions']}'", "mentions")
        return Condition("mentions", field=spec["mentions"], value=spec["is_not"])
    if "field" in spec:
        tests = keys - {"field"}
        if len(tests) != 1 or next(iter(tests)) not in ("missing", "below", "is_not", "not_in"):
            report.add(spec, "a field condition has exactly one of missing, below, is_not, not_in")
            return None
        if not _known_field(spec["field"]):
            report.add(spec, f"field: unknown field '{spec['field']}'", "field")
            return None
        test = next(iter(tests))
        value = spec[test]
        if test == "not_in":
            if not isinstance(value, list):
                report.add(spec, "not_in: a list", "not_in")
                return None
            value = frozenset(value)
        if test == "below" and (not isinstance(value, int | float) or isinstance(value, bool)):
            report.add(spec, "below: a number", "below")
            return None
        return Condition(test, field=spec["field"], value=value)
    report.add(spec, "unknown condition (field, local_time_between, mentions)")
    return None


def _parse_time(text: str) -> time:
    match = _HHMM.match(text)
    assert match is not None
    return time(int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))
