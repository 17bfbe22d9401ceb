"""Where schema ids come from: the built-in catalog (embedded) or a Confluent-compatible registry.

Both answer the two questions the codec asks: which id and schema does this process write for a
subject, and what is the schema behind an id it reads. Producers never register schemas in
production: the schema they write must already be registered (`collection-audit schemas register`
is an operator's deliberate act), otherwise they fail at start with a clear error.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Protocol

from fastavro import parse_schema

from schemas.catalog import Catalog


class UnknownSchemaId(LookupError):
    pass


class RegistryError(RuntimeError):
    """The registry could not be reached or refused the lookup."""


class SchemaRegistry(Protocol):
    def writer(self, subject: str) -> tuple[int, Any]:
        """(schema id, parsed schema) this process writes for `subject`."""
        ...

    def reader(self, subject: str) -> Any:
        """The parsed schema this process reads `subject` into (the newest it knows)."""
        ...

    def by_id(self, schema_id: int) -> Any:
        """The parsed writer schema behind `schema_id`; raises UnknownSchemaId."""
        ...


class CatalogRegistry:
    """The embedded registry: ids straight from schemas/catalog.json."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._parsed: dict[int, Any] = {}
        self._readers: dict[str, Any] = {}

    def _parse(self, schema_id: int) -> Any:
        if schema_id not in self._parsed:
            self._parsed[schema_id] = self.catalog.by_id(schema_id).parsed()
        return self._parsed[schema_id]

    def writer(self, subject: str) -> tuple[int, Any]:
        latest = self.catalog.latest(subject)
        return latest.schema_id, self._parse(latest.schema_id)

    def reader(self, subject: str) -> Any:
        if subject not in self._readers:  # asked for every record decoded; the catalog does not change
            self._readers[subject] = self._parse(self.catalog.latest(subject).schema_id)
        return self._readers[subject]

    def by_id(self, schema_id: int) -> Any:
        try:
            return self._parse(schema_id)
        except KeyError:
            raise UnknownSchemaId(schema_id) from None


class HttpRegistry:
    """A Confluent-compatible registry over its REST API (read and look up only, never register)."""

    def __init__(self, url: str, catalog: Catalog, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.catalog = catalog
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._writers: dict[str, tuple[int, Any]] = {}
        self._by_id: dict[int, Any] = {}

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={"Content-Type": "application/vnd.schemaregistry.v1+json",
                     "Accept": "application/vnd.schemaregistry.v1+json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise RegistryError(f"{method} {self.url}{path}: HTTP {exc.code} {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise RegistryError(f"{method} {self.url}{path}: {exc}") from exc

    def writer(self, subject: str) -> tuple[int, Any]:
        with self._lock:
            if subject not in self._writers:
                latest = self.catalog.latest(subject)
                quoted = urllib.parse.quote(subject, safe="")
                try:
                    found = self._request("POST", f"/subjects/{quoted}", {"schema": latest.canonical})
                except RegistryError as exc:
                    raise RegistryError(
                        f"schema {subject} v{latest.version} is not registered at {self.url} ({exc}); "
                        "producers do not auto-register: run `collection-audit schemas register` first"
                    ) from exc
                self._writers[subject] = (int(found["id"]), latest.parsed())
            return self._writers[subject]

    def reader(self, subject: str) -> Any:
        return self.catalog.latest(subject).parsed()

    def by_id(self, schema_id: int) -> Any:
        with self._lock:
            if schema_id not in self._by_id:
                try:
                    found = self._request("GET", f"/schemas/ids/{schema_id}")
                except RegistryError as exc:
                    if "HTTP 404" in str(exc):
                        raise UnknownSchemaId(schema_id) from exc
                    raise
                self._by_id[schema_id] = parse_schema(json.loads(found["schema"]), named_schemas={})
            return self._by_id[schema_id]


def registry_for(url: str | None, catalog: Catalog | None = None) -> SchemaRegistry:
    """The built-in catalog when `url` is empty, else the registry at `url`."""
    catalog = catalog or Catalog.load()
    return HttpRegistry(url, catalog) if url else CatalogRegistry(catalog)
