"""Topic configuration as data (deploy/kafka/topics.toml), applied idempotently."""

from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

TOPICS_FILE = Path(__file__).parent / "kafka" / "topics.toml"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]


def load_topic_specs(path: Path = TOPICS_FILE) -> list[TopicSpec]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    defaults = dict(data.get("defaults", {}))
    default_rf = int(defaults.pop("replication_factor", 1))
    specs = []
    for name, body in data["topics"].items():
        body = dict(body)
        partitions = int(body.pop("partitions"))
        rf = int(body.pop("replication_factor", default_rf))
        configs = {k: str(v) for k, v in {**defaults, **body}.items()}
        specs.append(TopicSpec(name, partitions, rf, configs))
    return specs


def apply_topics(client_config: dict[str, Any], specs: list[TopicSpec], *, single_node: bool = False,
                 timeout_s: float = 30.0) -> list[str]:
    """Create missing topics; returns the names created. `single_node` forces replication 1 and
    drops replica-dependent configs (the embedded broker is one node)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(**client_config, client_id="collection-audit-topics")
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    created = []
    try:
        existing = set(admin.list_topics())
        for spec in specs:
            if spec.name in existing:
                continue
            configs = {} if single_node else spec.configs
            topic = NewTopic(spec.name, spec.partitions, 1 if single_node else spec.replication_factor,
                             topic_configs=configs)
            try:
                admin.create_topics([topic])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
    return created
