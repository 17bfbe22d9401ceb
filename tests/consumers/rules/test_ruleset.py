"""The rule loader: the shipped catalog loads; bad files are rejected with file, line and reason."""

import shutil
from pathlib import Path

import pytest

from consumers.rules.ruleset import RULES_DIR, RuleFileError, load_ruleset
from consumers.rules.text_match import Lexicon

CORE = {"QUIET_HOURS", "DAILY_CONTACT_CAP", "CALL_FREQUENCY_7_IN_7", "CALL_AFTER_CONVERSATION", "THIRD_PARTY_CONTACT",
        "THIRD_PARTY_DISCLOSURE", "THREAT", "INSULT_OBSCENITY", "IMPERSONATION", "UNOFFICIAL_PAYMENT",
        "DEBT_INFO_MISSING", "CEASE_CONTACT", "ATTORNEY_REPRESENTED", "PAYMENT_PLAN_ACTIVE", "COMPLAINT_SLA",
        "FIELD_VISIT_CONTROLS", "CALL_NOT_RECORDED", "UNQUALIFIED_COLLECTOR"}


def test_every_core_rule_loads_with_a_cn_and_a_us_profile() -> None:
    ruleset = load_ruleset(categories=Lexicon.from_directory().categories)
    assert {r.id for r in ruleset.rules if r.core} == CORE
    for rule in ruleset.rules:
        assert "CN" in rule.profiles and rule.citation and rule.severity in ("LOW", "MEDIUM", "HIGH", "CRITICAL")


def test_each_lexicon_category_has_fifteen_phrases_per_language() -> None:
    for category in ("threat", "insult", "obscenity", "impersonation", "third_party_disclosure", "unofficial_payment"):
        for language in ("zh", "en"):
            lines = (RULES_DIR / "lexicons" / f"{category}.{language}.txt").read_text(encoding="utf-8").splitlines()
            assert len([x for x in lines if x.strip() and not x.startswith("#")]) >= 15, (category, language)


@pytest.fixture()
def rules_copy(tmp_path: Path) -> Path:
    shutil.copytree(RULES_DIR / "catalog", tmp_path / "catalog")
    shutil.copy(RULES_DIR / "classes.yaml", tmp_path / "classes.yaml")
    return tmp_path


def test_unknown_keys_bad_values_and_unknown_classes_name_file_and_line(rules_copy: Path) -> None:
    path = rules_copy / "catalog" / "FIELD_VISIT_CONTROLS.yaml"
    text = path.read_text().replace("severity: HIGH", "severity: URGENT\npriority: 3")
    text = text.replace("{field: staff_count, below: 2}", "{field: staf_count, below: 2}")
    path.write_text(text)
    lines = text.splitlines()
    (rules_copy / "catalog" / "QUIET_HOURS.yaml").write_text(
        (rules_copy / "catalog" / "QUIET_HOURS.yaml").read_text().replace("class: proactive_contact", "class: nope", 1))
    with pytest.raises(RuleFileError) as caught:
        load_ruleset(rules_copy)
    problems = caught.value.problems
    severity_line = next(i for i, line in enumerate(lines, 1) if line.startswith("severity"))
    assert f"{path}:{severity_line}: severity: one of LOW, MEDIUM, HIGH, CRITICAL, got 'URGENT'" in problems
    assert f"{path}:{severity_line + 1}: unknown key 'priority' (allowed: rule, version, core, desc, severity, " \
           "citation, summary, profiles, exceptions)" in problems
    assert any(p.startswith(str(path)) and "unknown field 'staf_count'" in p for p in problems)
    assert any("QUIET_HOURS.yaml" in p and "unknown class 'nope'" in p for p in problems)


def test_a_clause_with_a_key_of_another_kind_is_rejected(rules_copy: Path) -> None:
    path = rules_copy / "catalog" / "CALL_NOT_RECORDED.yaml"
    path.write_text(path.read_text().replace("kind: predicate", "kind: predicate\n      max: 3"))
    with pytest.raises(RuleFileError, match=r"CALL_NOT_RECORDED.yaml:\d+: predicate: unknown key 'max'"):
        load_ruleset(rules_copy)
