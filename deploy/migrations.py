"""Numbered SQL migrations (deploy/clickhouse/NNNN_name.sql), applied in order, recorded, idempotent.

The same files serve chDB and a server. A migration that was applied is never edited: if its
checksum differs from the recorded one, `migrate` stops with an error instead of guessing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from clickhouse_connect.driver.client import Client

MIGRATIONS_DIR = Path(__file__).parent / "clickhouse"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_BOOTSTRAP = (
    "CREATE DATABASE IF NOT EXISTS audit",
    "CREATE TABLE IF NOT EXISTS audit.schema_migrations (version UInt32, name String, checksum String,"
    " applied_at DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY version",
)


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        """The file's statements: split at ';' ending a line, comments dropped."""
        body = "\n".join(line for line in self.sql.splitlines() if not line.lstrip().startswith("--"))
        return [s.strip() for s in re.split(r";\s*(?:\n|$)", body) if s.strip()]


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lower_case.sql")
        migrations.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"migration versions must be 1, 2, 3... without gaps; found {versions}")
    return migrations


def migrate(client: Client, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply what is not applied yet, in order; returns the migrations applied now."""
    migrations = load_migrations() if migrations is None else migrations
    for statement in _BOOTSTRAP:
        client.command(statement)
    applied = {row[0]: row[1] for row in client.query(
        "SELECT version, checksum FROM audit.schema_migrations").result_rows}
    done = []
    for migration in migrations:
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} was edited after it was applied; "
                    "released migrations are never edited: restore it and add a new numbered file")
            continue
        for statement in migration.statements():
            client.command(statement)
        client.insert("audit.schema_migrations",
                      [[migration.version, migration.name, migration.checksum, datetime.now(UTC)]],
                      column_names=["version", "name", "checksum", "applied_at"])
        done.append(migration)
    return done
