"""The short chaos run inside `make test`: one fault of every kind (`make chaos` injects twenty of each)
under a steady producer load, then every acknowledged event stored exactly once and exactly the alerts
of an uninterrupted judge."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.chaos.run import KINDS, ChaosConfig, ChaosRun

pytestmark = pytest.mark.stack


def test_one_fault_of_every_kind_loses_nothing_and_stores_nothing_twice(tmp_path: Path) -> None:
    outcome = ChaosRun(ChaosConfig(tmp_path / "work", faults_per_kind=1, outage_s=(5.0, 8.0), seed=2,
                                   logs_dir=tmp_path / "logs")).run()
    assert Counter(fault.kind for fault in outcome.faults) == dict.fromkeys(KINDS, 1)
    assert outcome.produced > 3_000
    assert (outcome.lost, outcome.duplicated, outcome.unexpected) == (0, 0, 0)
    assert outcome.stored == outcome.stored_final == outcome.produced
    assert outcome.alerts_expected > 50, "the load must exercise the rules"
    assert (outcome.alerts_missing, outcome.alerts_extra, outcome.alerts_duplicated) == ({}, {}, 0)
    assert outcome.alerts_stored == outcome.alerts_stored_final == outcome.alerts_expected
    assert outcome.clean
