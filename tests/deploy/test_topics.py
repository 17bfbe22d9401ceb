"""Topic configuration as data: retention that follows from the rules, and `topics apply` that is
idempotent and reports drift it must not fix, on the real (embedded) broker."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from consumers.rules.engine import state_horizon
from consumers.rules.ruleset import load_ruleset
from consumers.rules.text_match import Lexicon
from deploy.embedded_broker import EmbeddedBroker
from deploy.topics import TopicSpec, apply_topics, load_topic_specs
from tests.conftest import free_port


def retention(spec: TopicSpec) -> timedelta:
    ms = int(spec.configs["retention.ms"])
    return timedelta.max if ms < 0 else timedelta(milliseconds=ms)


def test_retention_covers_the_state_the_rule_consumer_replays() -> None:
    specs = {s.name: s for s in load_topic_specs()}
    horizon = state_horizon(load_ruleset(categories=Lexicon.from_directory().categories))
    assert horizon >= timedelta(days=365)  # THIRD_PARTY_CONTACT counts over a year
    assert retention(specs["collection.actions"]) >= horizon
    assert retention(specs["collection.alerts"]) >= retention(specs["collection.actions"])
    assert retention(specs["collection.reference"]) == timedelta.max
    assert specs["collection.actions"].partitions == specs["collection.reference"].partitions
    for spec in specs.values():
        assert spec.replication_factor == 3 and spec.configs["min.insync.replicas"] == "2"
        assert spec.configs["cleanup.policy"] == "delete"


def test_apply_creates_once_then_reports_partition_drift_without_touching_it(tmp_path: Path) -> None:
    broker = EmbeddedBroker(free_port(), tmp_path / "broker.log")
    broker.start()
    try:
        client = {"bootstrap_servers": broker.bootstrap_servers}
        specs = load_topic_specs()
        first = apply_topics(client, specs, single_node=True)
        assert first.created == [s.name for s in specs] and not first.problems
        again = apply_topics(client, specs, single_node=True)
        assert again.created == [] and again.problems == [] and again.altered == {}
        grown = [TopicSpec(s.name, s.partitions * 2, s.replication_factor, s.configs)
                 if s.name == "collection.actions" else s for s in specs]
        drift = apply_topics(client, grown, single_node=True)
        assert drift.created == [] and len(drift.problems) == 1
        assert "collection.actions has 6 partitions, topics.toml says 12" in drift.problems[0]
        assert apply_topics(client, specs, single_node=True).problems == []  # nothing was changed
    finally:
        broker.stop()
