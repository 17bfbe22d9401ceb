"""Engine properties beyond the case files: deterministic ids, no alert twice, the simulator's labels."""

from dataclasses import replace

from consumers.rules.engine import RuleEngine, alert_id_for
from consumers.rules.ruleset import Clause, load_ruleset
from consumers.rules.simulator_check import check_simulation, decoded_simulation
from consumers.rules.text_match import Lexicon
from schemas.catalog import Catalog
from schemas.codec import AvroCodec
from schemas.contract import parse_event
from schemas.registry import CatalogRegistry
from tests.conftest import action

LEXICON = Lexicon.from_directory()


def test_a_replay_derives_the_same_alerts_and_emits_none_twice() -> None:
    stream = decoded_simulation(8_000, seed=5, violation_rate=0.05)
    ruleset = load_ruleset(categories=LEXICON.categories)

    def run(engine: RuleEngine, records: list) -> list[str]:  # type: ignore[type-arg]
        ids = []
        for is_action, record, _ in records:
            for alert in engine.on_action(record) if is_action else engine.on_reference(record):
                ids.append(alert["alert_id"])
        return ids

    first = run(RuleEngine(ruleset, LEXICON), stream)
    assert first and len(first) == len(set(first))
    again = RuleEngine(ruleset, LEXICON)
    assert run(again, stream) == first
    assert run(again, stream) == []  # the same events redelivered: nothing new
    resumed = RuleEngine(ruleset, LEXICON)
    resumed.raised.update(first[: len(first) // 2])  # what a crashed run had emitted
    assert run(resumed, stream) == first[len(first) // 2:]


def test_alert_ids_depend_on_rule_version_and_trigger() -> None:
    assert alert_id_for("THREAT", 1, "e") == alert_id_for("THREAT", 1, "e")
    assert len({alert_id_for("THREAT", 1, "e"), alert_id_for("THREAT", 2, "e"), alert_id_for("INSULT", 1, "e"),
                alert_id_for("THREAT", 1, "f")}) == 4


def test_simulated_violations_are_found_with_recall_and_precision_of_99_percent() -> None:
    report = check_simulation(30_000, seed=3, violation_rate=0.03)
    assert sum(c["labelled"] for c in report.rules.values()) > 500
    assert report.recall >= 0.99 and report.precision >= 0.99, report.rules


def test_an_allow_phrase_that_names_a_digit_makes_the_engine_read_texts_as_written() -> None:
    # text shapes (every ASCII digit read as 0) are only for lexicons and allow-lists that name no digit:
    # here "老赖1号" is allowed and "老赖2号" is not, which a shape could not tell apart
    ruleset = load_ruleset(categories=LEXICON.categories)
    insult = ruleset.rule("INSULT_OBSCENITY")
    ruleset.rules = [replace(rule, allow_phrases=("老赖1号",)) if rule is insult else rule for rule in ruleset.rules]
    engine, codec = RuleEngine(ruleset, LEXICON), AvroCodec(CatalogRegistry(Catalog.load()))

    def insulted(text: str) -> bool:
        event = parse_event(action(message_text=text))
        record = codec.decode(event.subject, codec.encode(event.subject, event.record)).record
        return any(alert["rule_id"] == "INSULT_OBSCENITY" for alert in engine.on_action(record))

    assert not insulted("你这个老赖1号")
    assert insulted("你这个老赖2号")


def test_a_count_per_several_fields_of_a_class_the_dispatch_key_leaves_open_counts_only_its_actions() -> None:
    # the catalog counts per one field and counts classes the dispatch key decides alone; this takes the
    # engine's other way: per (account, attributes.campaign), of collection contacts (the class reads
    # attributes.purpose, which no dispatch key holds)
    ruleset = load_ruleset(categories=LEXICON.categories)
    cap = ruleset.rule("DAILY_CONTACT_CAP")
    clause = Clause("count", events="collection_contact", per=("account_id", "attributes.campaign"),
                    window_local_days=1, max=2)
    ruleset.rules = [replace(rule, profiles={**rule.profiles, "CN": (clause,)}) if rule is cap else rule
                     for rule in ruleset.rules]
    engine, codec = RuleEngine(ruleset, LEXICON), AvroCodec(CatalogRegistry(Catalog.load()))

    def capped(hour: int, campaign: str, purpose: str | None = None, account: str = "ACC-1") -> list[list[str]]:
        attributes = {"campaign": campaign, **({"purpose": purpose} if purpose else {})}
        event = parse_event(action(debtor_id="D-count", account_id=account, attributes=attributes,
                                   occurred_at=f"2024-05-01T{hour:02d}:00:00+08:00"))
        record = codec.decode(event.subject, codec.encode(event.subject, event.record)).record
        return [alert["event_ids"] for alert in engine.on_action(record) if alert["rule_id"] == "DAILY_CONTACT_CAP"]

    assert capped(9, "A") == capped(10, "A") == []
    assert capped(11, "B") == []  # another campaign counts on its own
    assert capped(12, "A", purpose="plan_reminder") == []  # a plan reminder is not a collection contact
    assert capped(13, "A", account="ACC-2") == []  # nor is another account's contact counted
    third = capped(14, "A")
    assert len(third) == 1 and len(third[0]) == 3  # the third of the day, with the two before it
