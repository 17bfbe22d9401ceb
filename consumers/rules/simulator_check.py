"""Judge the simulator's labelled stream with the engine alone: recall and precision per rule.

The simulator labels the one event of each violation scenario that must alert (and plays negative
scenarios that must not); baseline traffic is compliant. An alert matches a label when rule and
triggering event agree. A labelled violation whose timer has not fired by the end of the stream
(its deadline lies beyond the last event) is reported as pending, not as missed.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from consumers.rules.engine import RuleEngine
from consumers.rules.ruleset import load_ruleset
from consumers.rules.text_match import Lexicon
from producers.simulator import SimConfig, Simulation
from schemas.catalog import Catalog
from schemas.codec import AvroCodec
from schemas.contract import parse_event
from schemas.registry import CatalogRegistry


@dataclass
class SimulationReport:
    events: int
    seconds: float
    rules: dict[str, dict[str, int]] = field(default_factory=dict)

    def _total(self, key: str) -> int:
        return sum(c[key] for c in self.rules.values())

    @property
    def recall(self) -> float:
        tp, fn = self._total("tp"), self._total("fn")
        return tp / (tp + fn) if tp + fn else 1.0

    @property
    def precision(self) -> float:
        tp, fp = self._total("tp"), self._total("fp")
        return tp / (tp + fp) if tp + fp else 1.0


def decoded_simulation(events: int, seed: int, violation_rate: float) -> list[tuple[bool, dict[str, Any], Any]]:
    """(is_action, decoded record, SimEvent) for `events` simulated events, through the Avro round trip
    as the rule consumer decodes them."""
    codec = AvroCodec(CatalogRegistry(Catalog.load()), uuids_as_text=True)
    sim = Simulation(SimConfig(seed=seed, debtors=2000, violation_rate=violation_rate))
    out = []
    for item in itertools.islice(sim.events(), events):
        validated = parse_event(item.event)
        record = codec.decode(validated.subject, codec.encode(validated.subject, validated.record)).record
        out.append(("kind" not in item.event, record, item))
    return out


def check_simulation(events: int, *, seed: int = 7, violation_rate: float = 0.02, progress: Any = None
                     ) -> SimulationReport:
    if progress is not None:
        progress.print(f"simulating and encoding {events:,} events...")
    stream = decoded_simulation(events, seed, violation_rate)
    lexicon = Lexicon.from_directory()
    engine = RuleEngine(load_ruleset(categories=lexicon.categories), lexicon)
    alerts: list[dict[str, Any]] = []
    if progress is not None:
        progress.print("judging...")
    started = time.perf_counter()
    for is_action, record, _ in stream:
        alerts.extend(engine.on_action(record) if is_action else engine.on_reference(record))
    seconds = time.perf_counter() - started
    expected = {(str(item.event["event_id"]), item.expected_rule) for _, _, item in stream if item.expected_rule}
    got = {(a["event_ids"][0], a["rule_id"]) for a in alerts}
    waiting = engine.pending_triggers()
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(("labelled", "tp", "fn", "fp",
                                                                           "pending"), 0))
    for event_id, rule in expected:
        counts[rule]["labelled"] += 1
        if (event_id, rule) in got:
            counts[rule]["tp"] += 1
        elif (event_id, rule) in waiting:
            counts[rule]["pending"] += 1
        else:
            counts[rule]["fn"] += 1
    for _event_id, rule in got - expected:
        counts[rule]["fp"] += 1
    return SimulationReport(len(stream), seconds, dict(counts))
