"""The trail writer binds a batch's keys as a TextArray, escaped by it rather than by clickhouse-connect:
the text must be exactly what clickhouse-connect would have written for the same list (that it arrives
whole through chDB and the relay is tests/deploy/test_clickhouse_relay.py's)."""

from clickhouse_connect.driver.binding import format_bind_value
from hypothesis import given
from hypothesis import strategies as st

from consumers.trail_writer import TextArray


@given(st.lists(st.text(), max_size=20))
def test_a_text_array_is_written_as_clickhouse_connect_writes_the_same_list(values: list[str]) -> None:
    assert str(TextArray(values)) == format_bind_value(values)
