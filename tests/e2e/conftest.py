"""Fixtures of the end-to-end fault tests: a broker of the test's own, child processes cleaned up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.embedded_broker import EmbeddedBroker
from deploy.topics import apply_topics, load_topic_specs
from tests.conftest import free_port
from tests.e2e.processes import RoleProcess


@pytest.fixture()
def processes() -> Iterator[list[RoleProcess]]:
    """Every process a test starts; any still running when the test ends (it failed) is killed."""
    started: list[RoleProcess] = []
    yield started
    for child in started:
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait(10)


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    running = EmbeddedBroker(free_port(), tmp_path / "broker.log")
    running.start()
    apply_topics({"bootstrap_servers": running.bootstrap_servers}, load_topic_specs(), single_node=True)
    yield running
    running.stop()
