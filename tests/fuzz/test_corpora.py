"""Every input the fuzzers kept (tests/fuzz/corpus) and every crash they found (tests/fuzz/crashes,
each fixed since) replays through its target: a regression suite that grows with each fuzzing run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

HERE = Path(__file__).parent


def inputs(kind: str) -> list[tuple[str, Path]]:
    return [(target, path) for target in TARGETS for path in sorted((HERE / kind / target).glob("*"))]


@pytest.mark.parametrize("kind", ["corpus", "crashes"])
def test_every_kept_input_keeps_its_promise(kind: str) -> None:
    found = inputs(kind)
    if kind == "corpus":
        assert {t for t, _ in found} == set(TARGETS), "every target has a corpus"
    else:
        assert found, "the reproducers of fixed crashes are kept"
    failures = []
    for target, path in found:
        try:
            TARGETS[target](path.read_bytes())
        except Exception as exc:  # collected, so one run names every regression
            failures.append(f"{target}/{path.name}: {type(exc).__name__}: {exc}")
    assert failures == []
