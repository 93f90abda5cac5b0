"""MCP tools as Gemini function declarations: names the model accepts, schemas it reads.

An MCP tool's input schema is full JSON Schema (`anyOf` with null for optional values,
`$ref` into `$defs`, `title`s, `additionalProperties`); Live's `parameters` is the
OpenAPI subset of `google.genai.types.Schema`. The SDK's own converter drops a
property's description when the property is an `anyOf` (every optional argument of a
pydantic-built server), so this one is ours: small, and checked against the SDK's types
(`declaration_ok`) before anything is declared, because a declaration the service
refuses would cost the whole conversation, not one tool.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

NAME_MAX = 64
"""Function names: the SDK documents 128, the service has enforced 64; the lower wins."""
_NAME_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")
_NAME_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.:-]")
_PARAM_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_TYPES = {"string", "number", "integer", "boolean", "array", "object"}
_COPIED = {
    "description": "description",
    "format": "format",
    "minimum": "minimum",
    "maximum": "maximum",
    "minItems": "min_items",
    "maxItems": "max_items",
    "minLength": "min_length",
    "maxLength": "max_length",
    "pattern": "pattern",
}
_MAX_DEPTH = 12


class Unsupported(ValueError):
    """A schema this converter cannot say in Live's terms (the tool is left out)."""


def function_name(server: str, tool: str, taken: set[str]) -> str:
    """`server_tool`, in Gemini's alphabet and length, unique among `taken` (a hash of the
    original name tells two apart that only differ in characters it cannot keep)."""
    name = f"{server}_{_NAME_BAD_CHARS.sub('_', tool)}"
    if len(name) > NAME_MAX or name in taken or not _NAME_OK.match(name):
        digest = hashlib.sha1(tool.encode()).hexdigest()[:8]
        name = f"{name[: NAME_MAX - 9]}_{digest}"
    return name


def parameters(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """Live `parameters` for an MCP input schema; None for a tool without arguments (the
    service refuses an OBJECT without properties). Raises Unsupported."""
    if not schema:
        return None
    converted = _convert(schema, schema.get("$defs") or schema.get("definitions") or {}, 0)
    if converted.get("type") != "OBJECT":
        raise Unsupported("the input schema is not an object")
    if not converted.get("properties"):
        return None
    for name in converted["properties"]:
        if not _PARAM_OK.match(name):
            raise Unsupported(f"the argument name {name!r} is not one Gemini accepts")
    return converted


def _convert(schema: Any, defs: dict[str, Any], depth: int) -> dict[str, Any]:
    if depth > _MAX_DEPTH:
        raise Unsupported("the schema nests too deeply (or refers to itself)")
    if not isinstance(schema, dict):
        return {}
    if "$ref" in schema:
        target = str(schema["$ref"]).rsplit("/", 1)[-1]
        if target not in defs:
            raise Unsupported(f"unresolved reference {schema['$ref']!r}")
        merged = {**defs[target], **{k: v for k, v in schema.items() if k != "$ref"}}
        return _convert(merged, defs, depth + 1)
    out: dict[str, Any] = {}
    for key, gemini_key in _COPIED.items():
        if key in schema and schema[key] is not None:
            out[gemini_key] = schema[key]
    nullable = False
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        rest = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
        nullable = len(rest) < len(options)
        if len(rest) == 1:
            inner = _convert(rest[0], defs, depth + 1)
            out = {**inner, **out}  # the property's own description wins
        elif rest:
            out["any_of"] = [_convert(o, defs, depth + 1) for o in rest]
    kind = schema.get("type")
    if isinstance(kind, list):
        nullable = nullable or "null" in kind
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
        if len(kinds) > 1:
            out["any_of"] = [{"type": str(k).upper()} for k in kinds if k in _TYPES]
    if kind in _TYPES:
        out["type"] = str(kind).upper()
    elif "properties" in schema and "type" not in out:
        out["type"] = "OBJECT"
    if "const" in schema:
        out["type"], out["enum"] = "STRING", [str(schema["const"])]
    elif isinstance(schema.get("enum"), list):
        values = [v for v in schema["enum"] if v is not None]
        out["enum"] = [str(v) for v in values]
        out["type"] = "STRING"  # Live takes enums of strings only
        nullable = nullable or len(values) < len(schema["enum"])
    if out.get("type") == "OBJECT" and isinstance(schema.get("properties"), dict):
        out["properties"] = {
            str(name): _convert(prop, defs, depth + 1)
            for name, prop in schema["properties"].items()
        }
        required = [r for r in schema.get("required") or () if r in out["properties"]]
        if required:
            out["required"] = required
    if out.get("type") == "ARRAY":
        out["items"] = _convert(schema.get("items") or {"type": "string"}, defs, depth + 1)
        if not out["items"].get("type") and not out["items"].get("any_of"):
            out["items"]["type"] = "STRING"
    if nullable:
        out["nullable"] = True
    return out


def declaration_ok(declaration: dict[str, Any]) -> str | None:
    """None when the SDK takes the declaration as the daemon sends it; else why not."""
    from google.genai import types
    from pydantic import ValidationError

    try:
        types.FunctionDeclaration.model_validate(declaration)
    except ValidationError as exc:
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return None
