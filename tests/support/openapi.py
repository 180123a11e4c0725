"""Checks a sandbox's served bodies against schemas copied from a provider's official OpenAPI.

A small validator, enough for answer bodies: `$ref`, `allOf`, `oneOf`, enums, JSON types,
required keys, nulls, and keys the spec lacks (an object schema without properties is
free-form). `nullable` and `extra` name (schema, key) pairs a sandbox serves although the spec
omits them, each with its reason where it is declared.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

Defs = dict[str, Any]
Pairs = Collection[tuple[str, str]]
JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
}


def merged(schema: dict[str, Any], defs: Defs) -> dict[str, Any]:
    """An `allOf` as one object schema: its parts' properties and required keys together."""
    properties, required = dict(schema.get("properties", {})), list(schema.get("required", []))
    for part in schema["allOf"]:
        if "$ref" in part:
            part = defs[part["$ref"].rsplit("/", 1)[-1]]
        if "allOf" in part:
            part = merged(part, defs)
        properties.update(part.get("properties", {}))
        required += part.get("required", [])
    return {"type": "object", "properties": properties, "required": required}


def violations(
    value: Any,
    schema: dict[str, Any],
    defs: Defs,
    where: str = "$",
    name: str = "",
    *,
    nullable: Pairs = (),
    extra: Pairs = (),
) -> list[str]:
    """Where `value` breaks `schema`, as readable paths; empty when it does not."""

    def inner(v: Any, s: dict[str, Any], at: str, n: str = "") -> list[str]:
        return violations(v, s, defs, at, n, nullable=nullable, extra=extra)

    if "$ref" in schema:
        ref = schema["$ref"].rsplit("/", 1)[-1]
        return inner(value, defs[ref], where, ref)
    if "allOf" in schema:
        return inner(value, merged(schema, defs), where, name)
    if "oneOf" in schema:
        options = [inner(value, option, where, name) for option in schema["oneOf"]]
        return [] if [] in options else [f"{where}: matches no oneOf option: {options}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema['enum']}"]
    kind = schema.get("type", "object")
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: not an array"]
        items = schema.get("items", {})
        return [p for i, v in enumerate(value) for p in inner(v, items, f"{where}[{i}]")]
    if kind != "object":
        return [] if JSON_TYPES[kind](value) else [f"{where}: {value!r} is not {kind}"]
    if not isinstance(value, dict):
        return [f"{where}: not an object"]
    required, properties = set(schema.get("required", ())), schema.get("properties", {})
    problems = [f"{where}.{key}: required, missing" for key in sorted(required - set(value))]
    for key, item in value.items():
        at = f"{where}.{key}"
        if item is None:
            if (name, key) not in nullable:
                problems.append(f"{at}: null")
        elif key in properties:
            problems += inner(item, properties[key], at)
        elif properties and (name, key) not in extra:
            problems.append(f"{at}: not in {name or 'the schema'}")
    return problems


def check(value: Any, schema: str, defs: Defs, *, nullable: Pairs = (), extra: Pairs = ()) -> None:
    """Assert that `value` is a valid `schema` of the spec's components."""
    ref = {"$ref": f"#/components/schemas/{schema}"}
    assert violations(value, ref, defs, nullable=nullable, extra=extra) == []
