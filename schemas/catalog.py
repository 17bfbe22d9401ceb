"""The schema catalog: subject -> versions -> stable, globally unique schema id.

The catalog is the embedded registry: `schemas/catalog.json` lists every version ever released.
Ids are never reused or renumbered; a new version is appended with the next free id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro import parse_schema

CATALOG_PATH = Path(__file__).with_name("catalog.json")


class CatalogError(ValueError):
    """The catalog file is inconsistent (duplicate id, gap in versions, unreadable schema)."""


@dataclass(frozen=True)
class SchemaVersion:
    subject: str
    version: int
    schema_id: int
    schema: dict[str, Any]  # the schema as written in its .avsc file
    canonical: str  # compact JSON, what the registry API returns as "schema"

    def parsed(self) -> Any:
        """A fastavro-parsed schema, in a namespace of its own (versions share record names)."""
        return parse_schema(self.schema, named_schemas={})


class Catalog:
    def __init__(self, versions: list[SchemaVersion]) -> None:
        self._by_id: dict[int, SchemaVersion] = {}
        self._by_subject: dict[str, list[SchemaVersion]] = {}
        for v in versions:
            if v.schema_id in self._by_id:
                raise CatalogError(f"schema id {v.schema_id} is used twice ({v.subject} v{v.version})")
            self._by_id[v.schema_id] = v
            self._by_subject.setdefault(v.subject, []).append(v)
        for subject, subject_versions in self._by_subject.items():
            numbers = [v.version for v in subject_versions]
            if numbers != list(range(1, len(numbers) + 1)):
                raise CatalogError(f"{subject}: versions must be 1, 2, 3... in order, got {numbers}")

    @classmethod
    def load(cls, path: Path = CATALOG_PATH) -> Catalog:
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CatalogError(f"{path}: {exc}") from exc
        versions = []
        for subject, entries in manifest["subjects"].items():
            for entry in entries:
                schema_file = path.parent / entry["file"]
                try:
                    schema = json.loads(schema_file.read_text(encoding="utf-8"))
                    parse_schema(schema, named_schemas={})
                except Exception as exc:
                    raise CatalogError(f"{schema_file}: {exc}") from exc
                canonical = json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
                versions.append(SchemaVersion(subject, entry["version"], entry["id"], schema, canonical))
        return cls(versions)

    def subjects(self) -> list[str]:
        return sorted(self._by_subject)

    def versions(self, subject: str) -> list[SchemaVersion]:
        if subject not in self._by_subject:
            raise KeyError(subject)
        return list(self._by_subject[subject])

    def latest(self, subject: str) -> SchemaVersion:
        return self.versions(subject)[-1]

    def by_id(self, schema_id: int) -> SchemaVersion:
        return self._by_id[schema_id]

    def find(self, subject: str, schema: dict[str, Any]) -> SchemaVersion | None:
        """The version of `subject` whose schema equals `schema` (registry lookup semantics)."""
        wanted = json.dumps(schema, sort_keys=True)
        for v in self._by_subject.get(subject, []):
            if json.dumps(v.schema, sort_keys=True) == wanted:
                return v
        return None
