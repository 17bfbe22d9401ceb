import uuid
from datetime import UTC, date, datetime

import pytest

from consumers.hash_chain import GENESIS, canonical, content_hash, link, month_of

COLUMNS = ("id", "when", "text", "flag", "tags", "attrs", "missing", "chain_seq", "prev_hash", "row_hash")
ROW = {"id": uuid.UUID(int=1), "when": datetime(2024, 5, 1, 2, tzinfo=UTC), "text": "您好", "flag": True,
       "tags": ["a", "b"], "attrs": {"k": "v", "a": "z"}, "missing": None, "chain_seq": 1,
       "prev_hash": GENESIS, "row_hash": ""}


def test_canonical_forms_are_stable() -> None:
    assert canonical([None, True, 3, "您好"]) == '[null,true,3,"您好"]'
    assert canonical([datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC), date(2024, 5, 1), uuid.UUID(int=1)]) == \
        '[1000000,"2024-05-01","00000000-0000-0000-0000-000000000001"]'
    assert canonical([{"b": "1", "a": "2"}]) == canonical([{"a": "2", "b": "1"}])
    with pytest.raises(TypeError):
        canonical([object()])


@pytest.mark.parametrize(("column", "value"), [
    ("id", uuid.UUID(int=2)), ("when", datetime(2024, 5, 1, 2, 0, 0, 1, tzinfo=UTC)), ("text", "您好 "),
    ("flag", False), ("tags", ["b", "a"]), ("attrs", {"k": "v"}), ("missing", ""), ("chain_seq", 2),
])
def test_any_change_to_a_stored_column_changes_the_content_hash(column: str, value: object) -> None:
    assert content_hash({**ROW, column: value}, COLUMNS) != content_hash(ROW, COLUMNS)


def test_the_hashes_themselves_are_not_part_of_the_content() -> None:
    assert content_hash({**ROW, "prev_hash": "x", "row_hash": "y"}, COLUMNS) == content_hash(ROW, COLUMNS)


def test_link_depends_on_the_previous_hash() -> None:
    content = content_hash(ROW, COLUMNS)
    assert link(GENESIS, content) != link("1" * 64, content)
    assert len(link(GENESIS, content)) == 64


def test_month_of_is_the_utc_month() -> None:
    assert month_of(datetime(2024, 5, 31, 23, 30, tzinfo=UTC)) == 202405
