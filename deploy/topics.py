"""Topic configuration as data (deploy/kafka/topics.toml), applied idempotently."""

from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

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


@dataclass
class TopicReport:
    created: list[str] = field(default_factory=list)
    altered: dict[str, dict[str, str]] = field(default_factory=dict)  # topic -> configs set now
    problems: list[str] = field(default_factory=list)  # drift that needs a person, not a tool


def apply_topics(client_config: dict[str, Any], specs: list[TopicSpec], *, single_node: bool = False,
                 timeout_s: float = 30.0) -> TopicReport:
    """Make the broker match the specs: create missing topics, set configs that differ (a cluster
    only), and report partition counts that differ without changing them: adding partitions moves
    debtors to other partitions, which breaks per-debtor order and chain ownership (docs/operations.md).
    `single_node` forces replication 1 and leaves configs alone (the embedded broker is one node)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(**client_config, client_id="collection-audit-topics")
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    report = TopicReport()
    try:
        existing = set(admin.list_topics())
        for spec in specs:
            if spec.name not in existing:
                configs = {} if single_node else spec.configs
                topic = NewTopic(spec.name, spec.partitions, 1 if single_node else spec.replication_factor,
                                 topic_configs=configs)
                try:
                    admin.create_topics([topic])
                    report.created.append(spec.name)
                except TopicAlreadyExistsError:
                    pass
                continue
            (described,) = admin.describe_topics([spec.name])
            partitions = len(described["partitions"])
            if partitions != spec.partitions:
                report.problems.append(f"{spec.name} has {partitions} partitions, topics.toml says {spec.partitions}: "
                                       "left as it is (repartitioning needs a planned migration)")
            if not single_node:
                try:
                    differing = _differing_configs(admin, spec)
                except KafkaError as exc:
                    report.problems.append(f"{spec.name}: cannot read its configs ({exc}); not reconciled")
                    continue
                if differing:
                    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=spec.configs)])
                    report.altered[spec.name] = differing
    finally:
        admin.close()
    return report


def _differing_configs(admin: KafkaAdminClient, spec: TopicSpec) -> dict[str, str]:
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name,
                                                       configs=dict.fromkeys(spec.configs))], config_filter="all")
    current = {key: (data or {}).get("value") for key, data in described["topic"][spec.name].items()}
    return {k: v for k, v in spec.configs.items() if current.get(k) != v}
