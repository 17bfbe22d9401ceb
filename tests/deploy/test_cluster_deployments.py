"""deploy/compose and deploy/k8s: valid against the Compose specification and Kubernetes' strict
schemas, and consistent with the code they run (commands, settings, ports, partitions, cluster)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import deploy
from deploy.settings import load_settings
from deploy.topics import load_topic_specs

DEPLOY = Path(deploy.__file__).parent
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE: dict[str, Any] = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
K8S = [(path.name, doc) for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
       for doc in yaml.safe_load_all(path.read_text()) if doc]
KUBERNETES_VERSION = "1.30.0"
SECRET_NAME = re.compile(r"PASSWORD|PII_KEY|TOKEN(?!S_FILE)|SECRET")
ROLE_COMMANDS = {"ingest", "store", "rules", "api", "migrate", "topics", "schemas"}


def cli_accepts(args: list[str]) -> subprocess.CompletedProcess[str]:
    """The CLI parses `args` (--help is eager: it stops before running the command)."""
    return subprocess.run([sys.executable, "-m", "deploy.cli", *args, "--help"], capture_output=True, text=True,
                          timeout=60)


def assert_known_settings(env: dict[str, str], where: str) -> None:
    ours = {k: str(v) for k, v in env.items() if k.startswith("COLLECTION_AUDIT_")}
    load_settings(ours)  # raises SettingsError on a misspelt or unknown setting
    assert not any(SECRET_NAME.search(k) for k in ours), f"{where}: a secret inlined in {sorted(ours)}"


# --- Compose ------------------------------------------------------------------------------------------

def test_compose_file_is_valid_against_the_compose_specification() -> None:
    checked = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                              str(COMPOSE_DIR / "compose.yaml")], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_compose_images_are_pinned_and_long_running_services_have_health_checks() -> None:
    for name, service in SERVICES.items():
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d[\w.-]*", image), f"{name}: {image} is not pinned to a version"
        if service.get("restart") != "no":
            assert "test" in service.get("healthcheck", {}), f"{name} has no health check"


def test_compose_kafka_is_three_kraft_brokers_with_replication_3_and_min_isr_2() -> None:
    brokers = {n: s["environment"] for n, s in SERVICES.items() if n.startswith("kafka-")}
    assert len(brokers) == 3
    for name, env in brokers.items():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3" and env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        voters = {v.split("@")[1].split(":")[0] for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")}
        assert voters == set(brokers) and env["KAFKA_ADVERTISED_LISTENERS"].endswith(f"//{name}:9092")
    topics = tomllib.loads((DEPLOY / "kafka" / "topics.toml").read_text())["defaults"]
    assert topics["replication_factor"] == 3 and topics["min.insync.replicas"] == "2"


def test_compose_clickhouse_is_two_shards_of_two_replicas_matching_its_services() -> None:
    cluster = ET.parse(COMPOSE_DIR / "clickhouse" / "cluster.xml").getroot()
    shards = cluster.findall("remote_servers/audit/shard")
    assert [len(s.findall("replica")) for s in shards] == [2, 2]
    for number, shard in enumerate(shards, 1):
        assert shard.findtext("internal_replication") == "true"
        for replica in shard.findall("replica"):
            env = SERVICES[replica.findtext("host")]["environment"]
            assert int(env["CH_SHARD"]) == number and replica.findtext("host").endswith(env["CH_REPLICA"])
    keepers = {n.findtext("host") for n in cluster.findall("zookeeper/node")}
    assert keepers == {n for n in SERVICES if n.startswith("keeper-")} and len(keepers) == 3
    ET.parse(COMPOSE_DIR / "clickhouse" / "users.xml")
    ET.parse(COMPOSE_DIR / "keeper" / "keeper.xml")


def test_compose_mounts_only_files_that_exist_and_roles_run_real_commands() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith(".") and "secrets" not in source:
                assert (COMPOSE_DIR / source).exists(), f"{name} mounts missing {source}"
        if service["image"].startswith("collection-audit:"):
            assert service["command"][0] in ROLE_COMMANDS
            accepted = cli_accepts(service["command"])
            assert accepted.returncode == 0, f"{name}: {accepted.stderr}"
            assert_known_settings(service.get("environment", {}), name)
    assert {"ingest", "store", "rules", "api"} <= set(SERVICES)
    assert SERVICES["store"]["deploy"]["replicas"] >= 2 and SERVICES["rules"]["deploy"]["replicas"] >= 2


def test_compose_prometheus_scrapes_each_role_where_it_serves_metrics() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = set()
    for job in config["scrape_configs"]:
        targets |= {t for c in job.get("static_configs", []) for t in c["targets"]}
        targets |= {f"{n}:{c['port']}" for c in job.get("dns_sd_configs", []) for n in c["names"]}
    for role in ("ingest", "store", "rules", "api"):
        command = SERVICES[role]["command"]
        port = command[command.index("--metrics-port" if "--metrics-port" in command else "--http-port") + 1]
        assert f"{role}:{port}" in targets, role


# --- Kubernetes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("file", "doc"), K8S, ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in K8S])
def test_kubernetes_manifest_is_valid_against_the_strict_schema(file: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def workloads() -> list[dict[str, Any]]:
    return [d for _, d in K8S if d["kind"] in ("Deployment", "StatefulSet")]


def test_kubernetes_roles_have_probes_scrape_annotations_budgets_and_no_inlined_secrets() -> None:
    assert {w["metadata"]["name"] for w in workloads()} == {"ingest", "store", "rules", "api"}
    assert not [d for _, d in K8S if d["kind"] == "Secret"], "secrets are referenced, never committed"
    budgets = {d["metadata"]["name"]: d for _, d in K8S if d["kind"] == "PodDisruptionBudget"}
    config = next(d for _, d in K8S if d["kind"] == "ConfigMap")
    assert_known_settings(config["data"], "ConfigMap")
    for workload in workloads():
        name, pod = workload["metadata"]["name"], workload["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        port = container["ports"][0]["containerPort"]
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["path"] == "/healthz", (name, probe)
        annotations = pod["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and int(annotations["prometheus.io/port"]) == port
        assert budgets[name]["spec"]["selector"]["matchLabels"] == workload["spec"]["selector"]["matchLabels"]
        assert container["resources"]["requests"] and container["securityContext"]["readOnlyRootFilesystem"]
        for variable in container.get("env", []):
            if SECRET_NAME.search(variable["name"]) or variable["name"] == "CLICKHOUSE_URL":
                assert "secretKeyRef" in variable.get("valueFrom", {}), (name, variable["name"])
        accepted = cli_accepts(container["args"])
        assert accepted.returncode == 0, f"{name}: {accepted.stderr}"


def test_kubernetes_consumers_do_not_outnumber_partitions_and_prometheus_finds_every_role() -> None:
    partitions = {s.name: s.partitions for s in load_topic_specs()}["collection.actions"]
    for workload in workloads():
        if workload["metadata"]["name"] in ("store", "rules"):
            assert workload["spec"]["replicas"] <= partitions
    headless = {d["metadata"]["name"] for _, d in K8S
                if d["kind"] == "Service" and d["spec"].get("clusterIP") == "None"}
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus-k8s.yml").read_text())
    names = {n.split(".")[0] for job in config["scrape_configs"] for c in job["dns_sd_configs"] for n in c["names"]}
    assert names == headless == {f"{w['metadata']['name']}-metrics" for w in workloads()}
    jobs = [d for _, d in K8S if d["kind"] == "Job"]
    migrate = next(j for j in jobs if j["metadata"]["name"] == "migrate")
    assert migrate["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate", "--cluster", "audit"]
