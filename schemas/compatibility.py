"""Avro schema-resolution checks: can a reader schema read everything a writer schema wrote?

BACKWARD compatibility of a new version = the new schema, as reader, resolves every earlier
version as writer (Avro specification, "Schema Resolution"). Our evolution policy adds one rule on
top: nothing is removed, so a field that existed once exists in every later version.
"""

from __future__ import annotations

from typing import Any

_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
_NAMED = {"record", "enum", "fixed"}
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}

Schema = Any


def _collect_names(schema: Schema, names: dict[str, Schema], namespace: str = "") -> None:
    if isinstance(schema, list):
        for branch in schema:
            _collect_names(branch, names, namespace)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in _NAMED:
            ns = schema.get("namespace", namespace)
            full = schema["name"] if "." in schema["name"] else f"{ns}.{schema['name']}".lstrip(".")
            names[full] = schema
            names[schema["name"].rsplit(".", 1)[-1]] = schema
            namespace = ns
        if kind == "record":
            for field in schema["fields"]:
                _collect_names(field["type"], names, namespace)
        elif kind == "array":
            _collect_names(schema["items"], names, namespace)
        elif kind == "map":
            _collect_names(schema["values"], names, namespace)
        elif isinstance(kind, dict | list):
            _collect_names(kind, names, namespace)


class _Resolver:
    def __init__(self, reader: Schema, writer: Schema) -> None:
        self.reader_names: dict[str, Schema] = {}
        self.writer_names: dict[str, Schema] = {}
        _collect_names(reader, self.reader_names)
        _collect_names(writer, self.writer_names)
        self._seen: set[tuple[int, int]] = set()

    @staticmethod
    def _deref(schema: Schema, names: dict[str, Schema]) -> Schema:
        """Reduce a schema node to a primitive name, a union list, or a complex-type dict."""
        while True:
            if isinstance(schema, str):
                if schema in _PRIMITIVES:
                    return schema
                schema = names.get(schema) or names[schema.rsplit(".", 1)[-1]]  # named reference
            elif isinstance(schema, list):
                return schema
            else:
                kind = schema["type"]
                if isinstance(kind, list | dict):
                    schema = kind
                elif kind in _NAMED or kind in ("array", "map"):
                    return schema
                else:
                    schema = kind  # primitive with a logicalType, or a named reference

    @staticmethod
    def _kind(schema: Schema) -> str:
        if isinstance(schema, list):
            return "union"
        return schema if isinstance(schema, str) else str(schema["type"])

    @staticmethod
    def _short(schema: Schema) -> str:
        return str(schema["name"]).rsplit(".", 1)[-1]

    def errors(self, reader: Schema, writer: Schema, path: str) -> list[str]:
        reader = self._deref(reader, self.reader_names)
        writer = self._deref(writer, self.writer_names)
        rk, wk = self._kind(reader), self._kind(writer)
        if wk == "union":
            errors: list[str] = []
            for i, branch in enumerate(writer):
                errors += self.errors(reader, branch, f"{path}<branch {i}>")
            return errors
        if rk == "union":
            if any(not self.errors(branch, writer, path) for branch in reader):
                return []
            return [f"{path}: writer type {wk!r} matches no branch of the reader's union"]
        if rk != wk and rk not in _PROMOTIONS.get(wk, set()):
            return [f"{path}: writer type {wk!r} cannot be read as {rk!r}"]
        if wk in _NAMED:
            if self._short(reader) != self._short(writer) and self._short(writer) not in {
                a.rsplit(".", 1)[-1] for a in reader.get("aliases", [])
            }:
                return [f"{path}: named type {self._short(writer)!r} was renamed to {self._short(reader)!r}"]
            key = (id(reader), id(writer))
            if key in self._seen:  # recursive types: already being checked
                return []
            self._seen.add(key)
        if wk == "record":
            return self._record_errors(reader, writer, path)
        if wk == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and "default" not in reader:
                return [f"{path}: enum symbols {missing} were removed and the reader has no default"]
        elif wk == "fixed" and reader["size"] != writer["size"]:
            return [f"{path}: fixed size changed from {writer['size']} to {reader['size']}"]
        elif wk == "array":
            return self.errors(reader["items"], writer["items"], f"{path}[]")
        elif wk == "map":
            return self.errors(reader["values"], writer["values"], f"{path}{{}}")
        return []

    def _record_errors(self, reader: Schema, writer: Schema, path: str) -> list[str]:
        writer_fields = {f["name"]: f for f in writer["fields"]}
        errors: list[str] = []
        for field in reader["fields"]:
            names = [field["name"], *field.get("aliases", [])]
            match = next((writer_fields[n] for n in names if n in writer_fields), None)
            where = f"{path}.{field['name']}" if path else field["name"]
            if match is None:
                if "default" not in field:
                    errors.append(f"{where}: new field has no default, old data cannot be read")
            else:
                errors += self.errors(field["type"], match["type"], where)
        return errors


def backward_errors(new: Schema, old: Schema) -> list[str]:
    """Why `new` (as reader) cannot read data written with `old`; empty when it can."""
    return _Resolver(new, old).errors(new, old, "")


def removed_fields(new: Schema, old: Schema) -> list[str]:
    """Top-level fields of `old` that `new` no longer has (by name or alias): our policy forbids it."""
    present = {n for f in new.get("fields", []) for n in [f["name"], *f.get("aliases", [])]}
    return [f["name"] for f in old.get("fields", []) if f["name"] not in present]


def evolution_errors(versions: list[Schema]) -> list[str]:
    """Check a subject's history: every version against every earlier one (BACKWARD_TRANSITIVE)."""
    errors: list[str] = []
    for i, new in enumerate(versions):
        for j, old in enumerate(versions[:i]):
            for e in backward_errors(new, old):
                errors.append(f"v{i + 1} cannot read v{j + 1}: {e}")
            for name in removed_fields(new, old):
                errors.append(f"v{i + 1} removes field {name!r} of v{j + 1}")
    return errors
