"""The rule consumer's event-time watermark over several partitions."""

from datetime import UTC, datetime

from consumers.rule_consumer import InputMarks

A0, A1, R0 = ("collection.actions", 0), ("collection.actions", 1), ("collection.reference", 0)


def at(day: int) -> datetime:
    return datetime(2026, 3, day, tzinfo=UTC)


def test_a_partition_behind_holds_event_time_back_until_it_is_caught_up() -> None:
    marks = InputMarks()
    marks.saw(A0, at(20))  # partition 0 replayed far ahead
    marks.saw(A1, at(2))
    marks.saw(A1, at(1))  # an older event does not move a mark back
    assert marks.watermark({A0: True, A1: False}) == at(2)
    marks.saw(A1, at(9))
    assert marks.watermark({A0: False, A1: False}) == at(9)
    assert marks.watermark({A0: True, A1: True}) == at(20)  # all caught up: the latest event read


def test_nothing_is_said_before_every_partition_behind_has_been_read_or_with_no_action_partition() -> None:
    marks = InputMarks()
    marks.saw(A0, at(5))
    marks.saw(R0, at(30))
    assert marks.watermark({A0: False, A1: False, R0: True}) is None  # partition 1 not read from yet
    assert marks.watermark({A0: False, A1: True, R0: True}) == at(5)
    assert marks.watermark({R0: True}) is None  # before the group assigns partitions: references only
    assert InputMarks().watermark({A0: True}) is None
