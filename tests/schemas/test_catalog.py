import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from schemas.catalog import Catalog, CatalogError, SchemaVersion
from schemas.compatibility import backward_errors, evolution_errors


def record(*fields: dict[str, Any], name: str = "R") -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields)}


def test_every_released_schema_is_backward_compatible_with_all_earlier_versions() -> None:
    catalog = Catalog.load()
    assert catalog.subjects() == ["collection.actions-value", "collection.alerts-value",
                                  "collection.dlq-value", "collection.reference-value"]
    for subject in catalog.subjects():
        assert evolution_errors([v.schema for v in catalog.versions(subject)]) == [], subject


def test_schema_ids_are_unique_across_subjects() -> None:
    catalog = Catalog.load()
    ids = [v.schema_id for s in catalog.subjects() for v in catalog.versions(s)]
    assert len(ids) == len(set(ids))


def test_catalog_refuses_a_reused_id_and_a_gap_in_versions() -> None:
    schema = record({"name": "a", "type": "string"})
    v = SchemaVersion("s-value", 1, 1, schema, json.dumps(schema))
    with pytest.raises(CatalogError, match="used twice"):
        Catalog([v, SchemaVersion("t-value", 1, 1, schema, "")])
    with pytest.raises(CatalogError, match="versions must be"):
        Catalog([v, SchemaVersion("s-value", 3, 2, schema, "")])


ONE = {"name": "a", "type": "string"}


@pytest.mark.parametrize(("new", "old"), [
    (record(ONE, {"name": "b", "type": ["null", "string"], "default": None}), record(ONE)),  # new field, default
    (record({"name": "a", "type": "long"}), record({"name": "a", "type": "int"})),  # int promotes to long
    (record({"name": "a", "type": ["null", "string"]}), record(ONE)),  # widened to a union
    (record({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y", "Z"]}}),
     record({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}})),  # enum symbol added
    (record({"name": "m", "type": {"type": "map", "values": "long"}}),
     record({"name": "m", "type": {"type": "map", "values": "int"}})),
])
def test_compatible_changes_pass(new: dict[str, Any], old: dict[str, Any]) -> None:
    assert evolution_errors([old, new]) == []


@pytest.mark.parametrize(("new", "old", "problem"), [
    (record(ONE, {"name": "b", "type": "string"}), record(ONE), "no default"),
    (record({"name": "a", "type": "int"}), record(ONE), "cannot be read as 'int'"),
    (record({"name": "a", "type": "string"}), record({"name": "a", "type": ["null", "string"]}),
     "'null' cannot be read as 'string'"),
    (record({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X"]}}),
     record({"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}}), "removed"),
    (record(ONE, name="Renamed"), record(ONE), "renamed"),
    (record({"name": "b", "type": ["null", "string"], "default": None}), record(ONE), "removes field 'a'"),
    (record({"name": "n", "type": record({"name": "x", "type": "double"}, name="N")}),
     record({"name": "n", "type": record({"name": "x", "type": "boolean"}, name="N")}), "n.x"),
])
def test_incompatible_changes_are_rejected(new: dict[str, Any], old: dict[str, Any], problem: str) -> None:
    errors = evolution_errors([old, new])
    assert errors and problem in " ".join(errors)


def test_transitive_check_compares_with_every_earlier_version() -> None:
    v1 = record(ONE)
    v2 = record(ONE, {"name": "b", "type": "string", "default": "x"})
    v3 = record(ONE, {"name": "b", "type": "string", "default": "x"}, {"name": "c", "type": "int"})
    errors = evolution_errors([v1, v2, v3])
    assert any(e.startswith("v3 cannot read v1") for e in errors)
    assert any(e.startswith("v3 cannot read v2") for e in errors)


def test_real_action_schema_rejects_a_retyped_field() -> None:
    actions = Catalog.load().latest("collection.actions-value").schema
    retyped = json.loads(json.dumps(actions))
    next(f for f in retyped["fields"] if f["name"] == "duration_seconds")["type"] = ["null", "string"]
    assert backward_errors(retyped, actions)


def test_schemas_check_command_fails_on_an_incompatible_new_version(tmp_path: Path) -> None:
    """The release path: append a v2 to a copy of the catalog; the check must refuse it."""
    import schemas.catalog as catalog_module
    from deploy.cli import app

    source = Path(catalog_module.__file__).parent
    shutil.copytree(source / "avro", tmp_path / "avro")
    manifest = json.loads((source / "catalog.json").read_text())
    v1 = json.loads((source / "avro" / "collection_action.v1.avsc").read_text())
    v1["fields"].append({"name": "risk_score", "type": "double"})  # no default: old data unreadable
    (tmp_path / "avro" / "collection_action.v2.avsc").write_text(json.dumps(v1))
    manifest["subjects"]["collection.actions-value"].append(
        {"version": 2, "id": 5, "file": "avro/collection_action.v2.avsc"})
    (tmp_path / "catalog.json").write_text(json.dumps(manifest))
    check = ["schemas", "check", "--catalog", str(tmp_path / "catalog.json")]

    result = CliRunner().invoke(app, check)
    assert result.exit_code == 1
    assert "risk_score: new field has no default" in result.output

    v1["fields"][-1]["default"] = 0.0  # with a default the same change is fine
    (tmp_path / "avro" / "collection_action.v2.avsc").write_text(json.dumps(v1))
    result = CliRunner().invoke(app, check)
    assert result.exit_code == 0, result.output
