"""The built-in catalog served read-only over the Confluent Schema Registry REST API.

Enough of the API for kcat, Kafka Connect, ClickHouse's AvroConfluent format and confluent-kafka's
serdes to resolve our schema ids. Writes answer 422 with error 42205 (read-only mode): the catalog
changes only through a reviewed change to schemas/catalog.json.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from schemas.catalog import Catalog, SchemaVersion

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"


def _answer(content: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(content=content, status_code=status, media_type=MEDIA_TYPE)


def _error(status: int, code: int, message: str) -> JSONResponse:
    return _answer({"error_code": code, "message": message}, status)


def _describe(v: SchemaVersion) -> dict[str, Any]:
    return {"subject": v.subject, "version": v.version, "id": v.schema_id, "schema": v.canonical}


def registry_router(catalog: Catalog) -> APIRouter:
    router = APIRouter(tags=["schema registry (read-only)"])

    def version_of(subject: str, version: str) -> SchemaVersion | JSONResponse:
        if subject not in catalog.subjects():
            return _error(404, 40401, f"Subject '{subject}' not found.")
        versions = catalog.versions(subject)
        if version in ("latest", "-1"):
            return versions[-1]
        if not version.isdigit() or not 1 <= int(version) <= len(versions):
            return _error(404, 40402, f"Version {version} not found.")
        return versions[int(version) - 1]

    @router.get("/schemas/types")
    def schema_types() -> JSONResponse:
        return _answer(["AVRO"])

    @router.get("/schemas/ids/{schema_id}")
    def schema_by_id(schema_id: int) -> JSONResponse:
        try:
            return _answer({"schema": catalog.by_id(schema_id).canonical})
        except KeyError:
            return _error(404, 40403, f"Schema {schema_id} not found")

    @router.get("/schemas/ids/{schema_id}/schema")
    def raw_schema_by_id(schema_id: int) -> JSONResponse:
        try:
            return _answer(catalog.by_id(schema_id).schema)
        except KeyError:
            return _error(404, 40403, f"Schema {schema_id} not found")

    @router.get("/schemas/ids/{schema_id}/versions")
    def versions_of_id(schema_id: int) -> JSONResponse:
        try:
            v = catalog.by_id(schema_id)
        except KeyError:
            return _error(404, 40403, f"Schema {schema_id} not found")
        return _answer([{"subject": v.subject, "version": v.version}])

    @router.get("/subjects")
    def subjects() -> JSONResponse:
        return _answer(catalog.subjects())

    @router.get("/subjects/{subject}/versions")
    def versions(subject: str) -> JSONResponse:
        if subject not in catalog.subjects():
            return _error(404, 40401, f"Subject '{subject}' not found.")
        return _answer([v.version for v in catalog.versions(subject)])

    @router.get("/subjects/{subject}/versions/{version}")
    def version(subject: str, version: str) -> JSONResponse:
        found = version_of(subject, version)
        return found if isinstance(found, JSONResponse) else _answer(_describe(found))

    @router.get("/subjects/{subject}/versions/{version}/schema")
    def version_schema(subject: str, version: str) -> JSONResponse:
        found = version_of(subject, version)
        return found if isinstance(found, JSONResponse) else _answer(found.schema)

    @router.post("/subjects/{subject}")
    async def lookup(subject: str, request: Request) -> JSONResponse:
        """Is this schema registered under the subject? (A lookup: it changes nothing.)"""
        if subject not in catalog.subjects():
            return _error(404, 40401, f"Subject '{subject}' not found.")
        try:
            schema = json.loads((await request.json())["schema"])
        except (ValueError, KeyError, TypeError):
            return _error(422, 42201, "Body must be {\"schema\": \"<Avro schema as a JSON string>\"}")
        found = catalog.find(subject, schema)
        return _answer(_describe(found)) if found else _error(404, 40403, "Schema not found")

    @router.get("/config")
    def config() -> JSONResponse:
        return _answer({"compatibilityLevel": "BACKWARD_TRANSITIVE"})

    @router.get("/mode")
    def mode() -> JSONResponse:
        return _answer({"mode": "READONLY"})

    @router.api_route("/subjects/{subject}/versions", methods=["POST"])
    @router.api_route("/subjects/{subject}", methods=["DELETE"])
    @router.api_route("/config", methods=["PUT"])
    def read_only(subject: str = "") -> JSONResponse:
        return _error(422, 42205, "This registry is read-only: schemas are released by adding them to "
                                  "schemas/catalog.json. Producers must not auto-register.")

    return router
