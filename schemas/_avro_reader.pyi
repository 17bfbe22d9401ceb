from typing import Any

class Reader:
    """Reader(plan): reader(value, start) -> (record, end); see schemas/_avro_reader.c."""

    def __init__(self, plan: tuple[Any, ...]) -> None: ...
    def __call__(self, value: bytes, start: int, /) -> tuple[dict[str, Any], int]: ...
