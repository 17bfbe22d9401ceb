"""A decoder compiled from one Avro record schema: Python source generated for exactly its fields.

fastavro's reader is generic: for every field of every record it looks the field's type up in the
schema and dispatches on it. For the store's actions (24 fields) that is 8 us a record, a sixth of
what storing one costs. A function written for the schema -- each field read where it stands, the
one-byte varint and union or enum index read inline, longer varints unrolled -- decodes the same record
in 4.9-5.0 us (8.3-8.7 with fastavro in the same run; docs/operations.md).

Only what the schema is written with, read as itself (no reader schema to resolve to) and without
logical types: `compile_reader` returns None for anything else and the codec keeps fastavro for it.
It refuses whatever fastavro refuses, and faults fastavro reads past: a negative enum or union index
(fastavro counts it from the last symbol or branch), a boolean byte other than 0 or 1 (fastavro reads
it as true), a varint beyond 64 bits (fastavro cuts it to 64). It raises ValueError (UnicodeDecodeError
for text that is not UTF-8) or IndexError; tests/schemas/test_compiled_reader.py compares it with fastavro.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

Reader = Callable[[bytes, int], tuple[dict[str, Any], int]]  # (value, start) -> (record, end)
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_FLOAT, _DOUBLE = struct.Struct("<f").unpack_from, struct.Struct("<d").unpack_from


class _Unsupported(Exception):
    pass


def compile_reader(schema: Any) -> Reader | None:
    """A decoder for records written with `schema` (a record schema, parsed or not), or None when the
    schema has what the compiled decoder does not read (a logical type, a named-type reference, a
    recursive or nested record): those are read by fastavro."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    source = _Source()
    try:
        fields = [(field["name"], source.read(field["type"], 1)) for field in schema["fields"]]
    except _Unsupported:
        return None
    record = ", ".join(f"{name!r}: {var}" for name, var in fields)
    text = f"def read(buf, p):\n    end = len(buf)\n{source.text()}\n    return {{{record}}}, p\n"
    namespace: dict[str, Any] = {"_long": _long, "_index_of": _index_of, "_float": _FLOAT, "_double": _DOUBLE,
                                 **source.constants}
    exec(compile(text, f"<avro reader {schema.get('name', '')}>", "exec"), namespace)
    reader: Reader = namespace["read"]
    return reader


def _long(buf: bytes, p: int) -> tuple[int, int]:
    """A zig-zag varint at p (of more than one byte: the generated code reads one-byte ones itself).
    Unrolled up to eight bytes -- an instant in microseconds takes eight -- which takes a sixth less time
    than the loop that reads longer ones (591 against 712 ns for eight bytes). The steps repeat on purpose."""
    n = buf[p] & 0x7F
    b = buf[p + 1]
    n |= (b & 0x7F) << 7
    if b < 0x80:
        return (n >> 1) ^ -(n & 1), p + 2
    b = buf[p + 2]
    n |= (b & 0x7F) << 14
    if b < 0x80:
        return (n >> 1) ^ -(n & 1), p + 3
    b = buf[p + 3]
    n |= (b & 0x7F) << 21
    if b < 0x80:
        return (n >> 1) ^ -(n & 1), p + 4
    b = buf[p + 4]
    n |= (b & 0x7F) << 28
    if b < 0x80:
        return (n >> 1) ^ -(n & 1), p + 5
    b = buf[p + 5]
    n |= (b & 0x7F) << 35
    if b < 0x80:
        return (n >> 1) ^ -(n & 1), p + 6
    b = buf[p + 6]
    n |= (b & 0x7F) << 42
    if b < 0x80:
        return (n >> 1) ^ -(n & 1), p + 7
    b = buf[p + 7]
    n |= (b & 0x7F) << 49
    if b < 0x80:
        return (n >> 1) ^ -(n & 1), p + 8
    return _long_loop(buf, p)


def _long_loop(buf: bytes, p: int) -> tuple[int, int]:
    b = buf[p]
    p += 1
    n, shift = b & 0x7F, 7
    while b & 0x80:
        b = buf[p]
        p += 1
        if shift == 63 and b > 1:  # the tenth byte holds the 64th bit only
            raise ValueError("a varint beyond 64 bits")
        n |= (b & 0x7F) << shift
        shift += 7
    return (n >> 1) ^ -(n & 1), p


def _index_of(byte: int) -> int:
    """The index a zig-zag encoded union or enum index stands for (for an error's text)."""
    return (byte >> 1) ^ -(byte & 1)


class _Source:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self._count = 0

    def text(self) -> str:
        return "\n".join(self.lines)

    def _var(self) -> str:
        self._count += 1
        return f"v{self._count}"

    def _emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def read(self, avro_type: Any, indent: int) -> str:
        """Emit the lines that read one value of `avro_type`; returns the variable that holds it."""
        target = self._var()
        self._read_into(avro_type, indent, target)
        return target

    def _read_into(self, avro_type: Any, indent: int, target: str) -> None:
        if isinstance(avro_type, dict) and avro_type.keys() == {"type"} and avro_type["type"] in _PRIMITIVES:
            avro_type = avro_type["type"]  # {"type": "string"}
        if isinstance(avro_type, list):
            self._union(avro_type, indent, target)
        elif isinstance(avro_type, str):
            self._primitive(avro_type, indent, target)
        elif isinstance(avro_type, dict) and "logicalType" not in avro_type:
            kind = avro_type.get("type")
            if kind == "enum":
                self._enum(avro_type["symbols"], indent, target)
            elif kind == "fixed":
                self._fixed(int(avro_type["size"]), indent, target)
            elif kind in ("array", "map"):
                self._blocks(avro_type, indent, target)
            else:
                raise _Unsupported(kind)
        else:
            raise _Unsupported(avro_type)

    def _long(self, indent: int, target: str) -> None:
        self._emit(indent, "b = buf[p]")
        self._emit(indent, "if b < 0x80:")
        self._emit(indent + 1, f"{target} = (b >> 1) ^ -(b & 1)")
        self._emit(indent + 1, "p += 1")
        self._emit(indent, "else:")
        self._emit(indent + 1, f"{target}, p = _long(buf, p)")

    def _length(self, indent: int, target: str, what: str) -> None:
        """A length and the end of what it measures, checked against the end of the value."""
        self._long(indent, target)
        self._emit(indent, f"e = p + {target}")
        self._emit(indent, f"if {target} < 0 or e > end:")
        self._emit(indent + 1, f"raise ValueError('{what} of ' + str({target}) + ' bytes at ' + str(p) + "
                               f"' runs past the end (' + str(end) + ')')")

    def _primitive(self, name: str, indent: int, target: str) -> None:
        if name == "null":
            self._emit(indent, f"{target} = None")
        elif name in ("int", "long"):
            self._long(indent, target)
        elif name in ("string", "bytes"):
            self._length(indent, target, name)
            self._emit(indent, f"{target} = buf[p:e]{'.decode()' if name == 'string' else ''}")
            self._emit(indent, "p = e")
        elif name == "boolean":
            self._emit(indent, "b = buf[p]")
            self._emit(indent, "p += 1")
            self._emit(indent, "if b > 1:")
            self._emit(indent + 1, "raise ValueError('a boolean byte of ' + str(b))")
            self._emit(indent, f"{target} = b == 1")
        elif name in ("float", "double"):
            size = 4 if name == "float" else 8
            self._emit(indent, f"if p + {size} > end:")
            self._emit(indent + 1, f"raise ValueError('a {name} runs past the end')")
            self._emit(indent, f"{target} = _{name}(buf, p)[0]")
            self._emit(indent, f"p += {size}")
        else:
            raise _Unsupported(name)  # a named-type reference

    def _index(self, indent: int, target: str) -> None:
        """A union's or an enum's index as it is written, zig-zag encoded (index n is 2n, -n is 2n - 1):
        in one byte, the byte itself. A longer varint is decoded and encoded again."""
        self._emit(indent, f"{target} = buf[p]")
        self._emit(indent, f"if {target} < 0x80:")
        self._emit(indent + 1, "p += 1")
        self._emit(indent, "else:")
        self._emit(indent + 1, f"{target}, p = _long(buf, p)")
        self._emit(indent + 1, f"{target} = 2 * {target} if {target} >= 0 else -2 * {target} - 1")

    def _union(self, branches: list[Any], indent: int, target: str) -> None:
        index = self._var()
        self._index(indent, index)
        for number, branch in enumerate(branches):
            self._emit(indent, f"{'if' if number == 0 else 'elif'} {index} == {2 * number}:")
            self._read_into(branch, indent + 1, target)
        self._emit(indent, "else:")
        self._emit(indent + 1, f"raise ValueError('union index ' + str(_index_of({index})) + "
                               f"' of {len(branches)} branches')")

    def _enum(self, symbols: list[str], indent: int, target: str) -> None:
        name = f"SYMBOLS{len(self.constants)}"
        self.constants[name] = tuple(symbols)
        index = self._var()
        self._index(indent, index)
        self._emit(indent, f"if {index} & 1:")  # an odd byte: a negative index
        self._emit(indent + 1, f"raise ValueError('enum index ' + str(_index_of({index})))")
        self._emit(indent, f"{target} = {name}[{index} >> 1]")  # IndexError above the last symbol

    def _fixed(self, size: int, indent: int, target: str) -> None:
        self._emit(indent, f"e = p + {size}")
        self._emit(indent, "if e > end:")
        self._emit(indent + 1, f"raise ValueError('fixed of {size} bytes runs past the end')")
        self._emit(indent, f"{target} = buf[p:e]")
        self._emit(indent, "p = e")

    def _blocks(self, avro_type: dict[str, Any], indent: int, target: str) -> None:
        """An array or a map: blocks of a count (negative: its absolute value, then the block's size in
        bytes) and that many items, up to a block of count 0."""
        is_map = avro_type["type"] == "map"
        count = self._var()
        self._emit(indent, f"{target} = {{}}" if is_map else f"{target} = []")
        self._emit(indent, "while True:")
        self._long(indent + 1, count)
        self._emit(indent + 1, f"if {count} == 0:")
        self._emit(indent + 2, "break")
        self._emit(indent + 1, f"if {count} < 0:")
        self._emit(indent + 2, f"{count} = -{count}")
        size = self._var()
        self._long(indent + 2, size)
        if is_map or avro_type["items"] not in ("null", {"type": "null"}):  # each item takes a byte at least
            self._emit(indent + 1, f"if {count} > end - p:")
            self._emit(indent + 2, f"raise ValueError('a block of ' + str({count}) + ' items runs past the end')")
        self._emit(indent + 1, f"for _ in range({count}):")
        if is_map:
            key = self.read("string", indent + 2)
            value = self.read(avro_type["values"], indent + 2)
            self._emit(indent + 2, f"{target}[{key}] = {value}")
        else:
            item = self.read(avro_type["items"], indent + 2)
            self._emit(indent + 2, f"{target}.append({item})")
