"""The profile document's JSON schema (shipped as profile.schema.json) and its validation.

jsonschema validates when installed; otherwise a small validator covers the keywords the schema
uses (listed in KEYWORDS), so a document is always checked before it is written. `check_document`
does the same for other documents (eval's).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from ..errors import QwdeployError

SCHEMA_FILE = "profile.schema.json"
KEYWORDS = {"$schema", "$id", "title", "description", "type", "required", "properties", "additionalProperties",
            "items", "minItems", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "oneOf"}
TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
         "integer": int, "number": (int, float)}


@lru_cache(maxsize=1)
def profile_schema() -> dict:
    return json.loads(resources.files("qwdeploy.toolkit.profiler").joinpath(SCHEMA_FILE).read_text("utf-8"))


def validate(document: dict) -> None:
    """Raise QwdeployError naming the first place where `document` breaks the schema."""
    check_document(document, profile_schema(), "profile")


def check_document(document: dict, schema: dict, what: str) -> None:
    """Raise QwdeployError naming the first place where `document` breaks `schema` (a `what` document)."""
    try:
        import jsonschema
    except ImportError:
        errors = schema_errors(document, schema)
        if errors:
            raise QwdeployError(f"{what} document breaks its schema: {errors[0]}") from None
        return
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(document))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "(root)"
        raise QwdeployError(f"{what} document breaks its schema at {where}: {error.message}")


def _is_type(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, TYPES[name])


def schema_errors(value: Any, schema: dict, where: str = "(root)") -> list[str]:
    """Every violation of `schema` in `value`, as 'path: problem' lines (the KEYWORDS subset only)."""
    unknown = set(schema) - KEYWORDS
    if unknown:
        raise ValueError(f"schema at {where} uses unsupported keywords {sorted(unknown)}")
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types
        if not any(_is_type(value, n) for n in names):
            return [f"{where}: {value!r:.60} is not of type {' or '.join(names)}"]
    if "const" in schema and value != schema["const"]:
        return [f"{where}: must be {schema['const']!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema['enum']}"]
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not schema_errors(value, s, where)]
        if len(matching) != 1:
            return [f"{where}: matches {len(matching)} of the allowed forms, not exactly one"]
    errors = []
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} is below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} is above {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errors.append(f"{where}: {value} must exceed {schema['exclusiveMinimum']}")
    if isinstance(value, dict):
        errors += [f"{where}: missing '{key}'" for key in schema.get("required", ()) if key not in value]
        properties, extra = schema.get("properties", {}), schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], f"{where}/{key}")
            elif extra is False:
                errors.append(f"{where}: unexpected key '{key}'")
            elif isinstance(extra, dict):
                errors += schema_errors(item, extra, f"{where}/{key}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where}: needs at least {schema['minItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                errors += schema_errors(item, schema["items"], f"{where}/{i}")
    return errors
