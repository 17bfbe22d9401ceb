"""Every shipped case file passes; a case file with a wrong expectation fails and says why."""

from pathlib import Path

import pytest

from consumers.rules.case_files import CASES_DIR, case_paths, run_case_files
from consumers.rules.ruleset import Ruleset, load_ruleset
from consumers.rules.text_match import Lexicon
from schemas.catalog import Catalog
from schemas.codec import AvroCodec
from schemas.registry import CatalogRegistry

LEXICON = Lexicon.from_directory()
RULESET: Ruleset = load_ruleset(categories=LEXICON.categories)
CODEC = AvroCodec(CatalogRegistry(Catalog.load()))


@pytest.mark.parametrize("path", case_paths(CASES_DIR), ids=lambda p: p.stem)
def test_shipped_case_file_passes(path: Path) -> None:
    results = list(run_case_files([path], RULESET, LEXICON, CODEC))
    assert len(results) >= 2
    assert [r.problem for r in results if not r.passed] == []


def test_every_core_rule_has_a_case_file() -> None:
    assert {p.stem for p in case_paths(CASES_DIR)} == {r.id for r in RULESET.rules if r.core}


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    case = tmp_path / "wrong.yaml"
    case.write_text("""rule: QUIET_HOURS
defaults: {source_system: t, agency_id: A, debtor_id: D, account_id: X, direction: OUTBOUND, counterparty: DEBTOR}
setup: [{kind: DEBTOR_PROFILE, occurred_at: "2024-01-01T00:00:00Z", debtor_id: D, timezone: Asia/Shanghai}]
cases:
  - name: says no alert but there is one
    events: [{id: a, action_type: CALL_ATTEMPT, call_result: NO_ANSWER, occurred_at: "2024-05-01T23:00:00+08:00"}]
    expect: []
  - name: an event the contract rejects
    events: [{id: a, action_type: TELEGRAM, occurred_at: "2024-05-01T23:00:00+08:00"}]
    expect: []
""")
    first, second = run_case_files([case], RULESET, LEXICON, CODEC)
    assert not first.passed and first.problem == "expected alerts on [], got ['a']"
    assert not second.passed and "action_type" in second.problem
