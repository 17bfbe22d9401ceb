"""One settings object, built once at the entry point from the environment and flags, then frozen.

Standard names are used where the ecosystem has them (KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL,
CLICKHOUSE_URL); everything else is COLLECTION_AUDIT_<NAME>. An unknown COLLECTION_AUDIT_* variable
is an error, so a misspelt setting never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "COLLECTION_AUDIT_"
STANDARD_NAMES = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka_bootstrap_servers",
    "SCHEMA_REGISTRY_URL": "schema_registry_url",
    "CLICKHOUSE_URL": "clickhouse_url",
}


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".collection-audit")
    # Kafka: empty bootstrap servers mean "the embedded broker on kafka_port".
    kafka_bootstrap_servers: str = ""
    kafka_port: int = 19092
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = ""
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_ssl_cafile: str = ""
    # Schema registry: empty means the built-in catalog (served by our HTTP server too).
    schema_registry_url: str = ""
    # ClickHouse: empty means embedded chDB in DATA_DIR/clickhouse.
    clickhouse_url: str = ""
    # A ClickHouse cluster's name (remote_servers): tables are Distributed over replicated locals
    # (`migrate --cluster`); writers insert synchronously to a quorum and read the replica they wrote.
    clickhouse_cluster: str = ""
    # `store --processes N` on embedded chDB serves it over ClickHouse's HTTP interface on this loopback
    # port (0: any free one) for its other processes, and for clients while it runs.
    clickhouse_relay_port: int = 0
    # Key for PII hashes (hex, >= 32 hex digits). Empty in embedded mode: generated once into
    # DATA_DIR/pii.key; required with a ClickHouse server.
    pii_key: str = field(default="", repr=False)
    default_jurisdiction: str = "CN"
    kafka_max_poll_interval_ms: int = 10_000
    store_batch_rows: int = 10_000
    store_batch_wait_ms: int = 500
    store_processes: int = 1  # store consumers of `up` / `store`, one process (one core) each; above 1 all children
    store_commit_delay_ms: int = 0  # fault-injection aid for tests: widens the insert -> commit window
    # Rule consumer: event-time lateness allowed before timers fire; idle seconds before wall-clock
    # time stands in for event time; where alerts are pushed (empty: nowhere but Kafka).
    rules_allowed_lateness_s: int = 3600
    rules_idle_tick_s: float = 30.0
    alertmanager_url: str = ""
    alert_webhook_urls: str = ""  # comma-separated
    alert_resend_s: float = 60.0  # one push per rule/agency/jurisdiction/severity group per this many seconds
    # Auditor API: the token file (hashes only; default DATA_DIR/api-tokens.json). The CLI's
    # `query`/`verify` reach the API at api_url (default: this machine's HTTP port) with api_token.
    api_tokens_file: str = ""
    api_url: str = ""
    api_token: str = field(default="", repr=False)
    http_host: str = "127.0.0.1"
    http_port: int = 8700
    ingest_max_body_bytes: int = 8 * 1024 * 1024
    ingest_max_events: int = 10_000
    # Requests per second (bursts of twice that): ingest per client address, the auditor API per token.
    # 0 disables a limit.
    ingest_requests_per_s: float = 50.0
    api_requests_per_s: float = 20.0
    producer_delivery_timeout_s: float = 15.0

    @property
    def embedded_broker(self) -> bool:
        return not self.kafka_bootstrap_servers

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    @property
    def tokens_path(self) -> Path:
        return Path(self.api_tokens_file) if self.api_tokens_file else self.data_dir / "api-tokens.json"

    @property
    def api_base_url(self) -> str:
        return (self.api_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def clickhouse(self) -> str:
        """The ClickHouse URL in force: CLICKHOUSE_URL, or embedded chDB under the data directory."""
        return self.clickhouse_url or f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    def clickhouse_settings(self) -> dict[str, Any]:
        """Session settings for every client. On a cluster an insert returns only once every shard
        has it on a majority of its replicas (foreground Distributed insert + quorum), and reads and
        writes prefer the replicas in configuration order, so the store's "already stored?" check
        reads what it wrote."""
        if not self.clickhouse_cluster:
            return {}
        return {"distributed_foreground_insert": 1, "insert_quorum": "auto", "load_balancing": "in_order"}

    def pii_key_bytes(self) -> bytes:
        """The PII hashing key; in embedded mode generated once and kept in DATA_DIR/pii.key (0600)."""
        if self.pii_key:
            try:
                key = bytes.fromhex(self.pii_key)
            except ValueError:
                raise SettingsError("COLLECTION_AUDIT_PII_KEY must be hex (e.g. `openssl rand -hex 32`)") from None
            if len(key) < 16:
                raise SettingsError("COLLECTION_AUDIT_PII_KEY must be at least 16 bytes (32 hex digits)")
            return key
        if self.clickhouse_url.startswith("http"):
            raise SettingsError("set COLLECTION_AUDIT_PII_KEY (hex, e.g. `openssl rand -hex 32`): with a "
                                "ClickHouse server every writer must hash PII with the same key")
        path = self.data_dir / "pii.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32))
        return bytes.fromhex(path.read_text().strip())

    def kafka_client_config(self) -> dict[str, Any]:
        """Connection settings shared by every kafka-python client we create."""
        config: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers.split(",")}
        if self.kafka_security_protocol != "PLAINTEXT":
            config["security_protocol"] = self.kafka_security_protocol
        if self.kafka_sasl_mechanism:
            config.update(sasl_mechanism=self.kafka_sasl_mechanism,
                          sasl_plain_username=self.kafka_sasl_username,
                          sasl_plain_password=self.kafka_sasl_password)
        if self.kafka_ssl_cafile:
            config["ssl_cafile"] = self.kafka_ssl_cafile
        return config

    def environment(self) -> dict[str, str]:
        """These settings as COLLECTION_AUDIT_* variables: what `load_settings` reads back as them
        (how a role hands its configuration to the processes it starts)."""
        return {PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` applied (flags override the environment); None values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _convert(name: str, raw: str, target: Any) -> Any:
    try:
        if target is int:
            return int(raw)
        if target is float:
            return float(raw)
        if target is Path:
            return Path(raw)
        return raw
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected {target.__name__}") from None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment; raises SettingsError on unknown or malformed variables."""
    env = os.environ if env is None else env
    types = {f.name: f.type for f in dataclasses.fields(Settings)}
    resolved = {"int": int, "float": float, "Path": Path, "str": str}
    values: dict[str, Any] = {}
    for name, raw in env.items():
        if name in STANDARD_NAMES:
            key = STANDARD_NAMES[name]
        elif name.startswith(PREFIX):
            key = name[len(PREFIX):].lower()
            if key not in types:
                known = ", ".join(PREFIX + k.upper() for k in sorted(types))
                raise SettingsError(f"unknown setting {name}; known settings: {known}")
        else:
            continue
        values[key] = _convert(name, raw, resolved[str(types[key])])
    return Settings(**values)
