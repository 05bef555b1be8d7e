"""Turn pydantic's JSON Schema into a structural OpenAPI v3 schema.

Pydantic writes JSON Schema 2020-12: shared models as ``$defs`` behind ``$ref``,
``Optional[X]`` as ``anyOf: [X, {type: null}]``, single literals as ``const``,
``set`` as ``uniqueItems``, exclusive bounds as numbers, titles everywhere. The
apiserver wants a *structural* schema (apiextensions.k8s.io/v1): no references,
a type on every node, no ``anyOf`` that mixes types (except the int-or-string
pattern), OpenAPI v3.0 exclusive bounds, list types instead of ``uniqueItems``.
This module does that translation, node by node, and refuses what it cannot
translate faithfully (a recursive model, ``not``, ``patternProperties``) rather
than emit a schema that validates less than the model does.

Design choices (why):
- ``Optional[X]`` becomes plain ``X``: the operator writes with ``exclude_none``
  and the apiserver prunes nulls from non-nullable fields, so ``nullable`` adds
  nothing but noise to ``kubectl explain``.
- Only scalar defaults are kept. The operator parses every object with the same
  pydantic model, so nested object defaults are filled in there anyway; copying
  whole default objects into the CRD would store them in etcd with every object
  and make a later change of a default impossible to roll out.
- A rule CEL cannot check (it reads a field of untyped items, which the apiserver hides
  from CEL) can be an OpenAPI value validation instead: a model's ``json_schema_extra``
  key ``VALUE_ANY_OF`` becomes an ``anyOf`` whose branches only say ``required`` or a
  property's ``enum`` (the one kind of junctor a structural schema allows besides
  int-or-string), e.g. "type is int or float, or values is set".
- A union that is neither numeric nor int-or-string is kept as
  ``x-kubernetes-preserve-unknown-fields`` (the model still validates it in the
  operator); a model that wants admission-time checks should use one object with
  optional fields and an "exactly one" CEL rule instead.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mlops_operator.api import common

Schema = dict[str, Any]


class CRDGenError(ValueError):
    """A model cannot be rendered as a structural schema; the message names the field."""


SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean"})

# Formats the apiserver knows (k8s.io/kube-openapi strfmt); others are dropped.
# ``duration`` is left out on purpose: pydantic means ISO 8601 (P1D), Kubernetes means Go's (24h).
KNOWN_FORMATS = frozenset(
    {
        "bsonobjectid",
        "byte",
        "cidr",
        "date",
        "date-time",
        "datetime",
        "double",
        "email",
        "float",
        "hostname",
        "int32",
        "int64",
        "ipv4",
        "ipv6",
        "mac",
        "password",
        "uri",
        "uuid",
    }
)

VALUE_ANY_OF = common.VALUE_ANY_OF

# Keywords copied as they are (after their children are converted).
_PASS_THROUGH = (
    "description",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "maxProperties",
    "minProperties",
    "multipleOf",
)
# Keywords dropped: annotations the CRD schema has no use for, or that pydantic adds.
_DROPPED = frozenset({"title", "examples", "readOnly", "writeOnly", "$comment", "discriminator", "$schema"})
# Keywords handled explicitly below.
_HANDLED = frozenset(
    {
        "type",
        "format",
        "enum",
        "const",
        "default",
        "deprecated",
        "properties",
        "required",
        "additionalProperties",
        "propertyNames",
        "items",
        "prefixItems",
        "uniqueItems",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
    }
)


def to_structural(node: Schema, *, defs: Schema, path: str) -> Schema:
    """The structural schema for one pydantic JSON Schema node (``defs``: its ``$defs``)."""
    return _convert(node, defs=defs, path=path, stack=())


def _merge(base: Schema, overlay: Schema) -> Schema:
    """``overlay``'s keywords over ``base``'s; CEL rules from both are kept (base first)."""
    out = dict(base)
    for key, value in overlay.items():
        if key == "x-kubernetes-validations" and key in out:
            out[key] = [*out[key], *value]
        else:
            out[key] = value
    return out


def _flatten(
    node: Schema, *, defs: Schema, path: str, stack: tuple[str, ...]
) -> tuple[Schema, tuple[str, ...]]:
    """Resolve ``$ref``, one-element ``allOf`` and ``anyOf``/``oneOf`` with ``null``.

    Returns the node with none of these at its top, and the stack of models
    expanded on the way (to refuse recursive models, which no structural
    schema can express).
    """
    node = dict(node)
    if "$ref" in node:
        ref = node.pop("$ref")
        name = str(ref).rsplit("/", 1)[-1]
        if not str(ref).startswith("#/$defs/") or name not in defs:
            raise CRDGenError(f"{path}: unresolvable reference {ref!r}")
        if name in stack:
            chain = " -> ".join((*stack, name))
            raise CRDGenError(f"{path}: recursive model ({chain}) cannot be a structural schema")
        target, stack = _flatten(defs[name], defs=defs, path=path, stack=(*stack, name))
        return _flatten(_merge(target, node), defs=defs, path=path, stack=stack)
    if "allOf" in node:
        parts = node.pop("allOf")
        if len(parts) != 1:
            raise CRDGenError(f"{path}: allOf with {len(parts)} schemas is not supported")
        inner, stack = _flatten(parts[0], defs=defs, path=path, stack=stack)
        return _flatten(_merge(inner, node), defs=defs, path=path, stack=stack)
    for junctor in ("anyOf", "oneOf"):
        if junctor not in node:
            continue
        branches = [b for b in node.pop(junctor) if b != {"type": "null"}]
        node.pop("discriminator", None)
        if node.get("default", 0) is None:
            del node["default"]
        if not branches:
            raise CRDGenError(f"{path}: a field that can only be null has no schema")
        if len(branches) == 1:
            inner, stack = _flatten(branches[0], defs=defs, path=path, stack=stack)
            return _flatten(_merge(inner, node), defs=defs, path=path, stack=stack)
        flat = [_flatten(b, defs=defs, path=path, stack=stack)[0] for b in branches]
        return _merge(_union(flat, path=path), node), stack
    if node.get("type") == "null":
        raise CRDGenError(f"{path}: a field that can only be null has no schema")
    if isinstance(node.get("type"), list):
        types = [t for t in node["type"] if t != "null"]
        if len(types) != 1:
            raise CRDGenError(f"{path}: a list of types {node['type']} is not supported")
        node["type"] = types[0]
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "enum" in node:
        node["enum"] = [v for v in node["enum"] if v is not None]
    return node, stack


_UNION_CONSTRAINTS = frozenset(
    {
        "pattern",
        "minLength",
        "maxLength",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
    }
)


def _union(branches: list[Schema], *, path: str) -> Schema:
    """A structural schema for a union of several non-null schemas."""
    types = {b.get("type") for b in branches}
    rest = [{k: v for k, v in b.items() if k not in ("type", "title", "description")} for b in branches]
    if types <= {"integer", "number"} and all(r == rest[0] and set(r) <= _UNION_CONSTRAINTS for r in rest):
        # int | float with the same bounds on each: a number with those bounds.
        return {"type": "number" if "number" in types else "integer", **rest[0]}
    if types == {"integer", "string"} and all(
        set(b) - {"title", "description"} <= _UNION_CONSTRAINTS | {"type"} for b in branches
    ):
        # The one anyOf a structural schema allows; branch constraints move up, where
        # OpenAPI applies them to the values of the matching type only.
        out: Schema = {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
        for branch in branches:
            for key in _UNION_CONSTRAINTS & set(branch):
                if key in out and out[key] != branch[key]:
                    raise CRDGenError(f"{path}: conflicting {key} in an int-or-string union")
                out[key] = branch[key]
        return out
    if len(types) == 1 and all(
        set(b) <= {"type", "enum", "title", "description"} and "enum" in b for b in branches
    ):
        values: list[Any] = []
        for branch in branches:
            values.extend(v for v in branch["enum"] if v not in values)
        return {"type": branches[0]["type"], "enum": values}
    return {"x-kubernetes-preserve-unknown-fields": True}


def _convert(node: Schema, *, defs: Schema, path: str, stack: tuple[str, ...]) -> Schema:
    flat, stack = _flatten(node, defs=defs, path=path, stack=stack)
    out: Schema = {}
    for key, value in flat.items():
        if key in _DROPPED or key in _HANDLED or key in ("anyOf", VALUE_ANY_OF):
            continue
        if key.startswith("x-kubernetes-") or key in _PASS_THROUGH:
            out[key] = value
        else:
            raise CRDGenError(f"{path}: JSON Schema keyword {key!r} has no structural equivalent")
    if "anyOf" in flat:  # only the int-or-string pattern survives _flatten
        out["anyOf"] = flat["anyOf"]
    if VALUE_ANY_OF in flat:
        out["anyOf"] = _value_any_of(flat, path=path)
    if flat.get("deprecated"):
        out["description"] = "Deprecated. " + out.get("description", "")
    if "format" in flat and flat["format"] in KNOWN_FORMATS:
        out["format"] = flat["format"]
    if "enum" in flat:
        out["enum"] = list(flat["enum"])
    _bounds(flat, out)
    type_ = flat.get("type")
    if type_ is None and "enum" in flat:
        type_ = _enum_type(flat["enum"], path=path)
    if type_ is not None:
        out["type"] = type_
    if type_ == "object":
        _object(flat, out, defs=defs, path=path, stack=stack)
    elif type_ == "array":
        _array(flat, out, defs=defs, path=path, stack=stack)
    elif type_ is None and not out.get("x-kubernetes-int-or-string"):
        # Any / an untyped union: anything goes at admission, the model checks it.
        out["x-kubernetes-preserve-unknown-fields"] = True
    _default(flat, out, path=path)
    return out


def _value_any_of(flat: Schema, *, path: str) -> list[Schema]:
    """The model's value-validation branches, checked to be structural: each only requires
    declared properties or restricts a declared property to an enum."""
    branches: list[Schema] = flat[VALUE_ANY_OF]
    declared = set(flat.get("properties") or {})
    for branch in branches:
        names = set(branch.get("required") or []) | set(branch.get("properties") or {})
        if set(branch) - {"required", "properties"} or not names <= declared:
            raise CRDGenError(f"{path}: a value-validation anyOf branch {branch} is not structural")
        if any(set(prop) != {"enum"} for prop in (branch.get("properties") or {}).values()):
            raise CRDGenError(f"{path}: a value-validation anyOf branch may only restrict a property's enum")
    return [dict(b) for b in branches]


def _enum_type(values: list[Any], *, path: str) -> str:
    kinds = {type(v) for v in values}
    if kinds <= {str}:
        return "string"
    if kinds <= {bool}:
        return "boolean"
    if kinds <= {int}:
        return "integer"
    if kinds <= {int, float}:
        return "number"
    raise CRDGenError(f"{path}: enum mixes value types {sorted(k.__name__ for k in kinds)}")


def _bounds(flat: Schema, out: Schema) -> None:
    """JSON Schema 2020 bounds → OpenAPI v3.0 (``exclusiveMinimum`` is a flag there)."""
    for inclusive, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        low = inclusive == "minimum"
        bound = flat.get(inclusive)
        excl = flat.get(exclusive)
        if isinstance(excl, bool):  # already OpenAPI v3.0 style
            if bound is not None:
                out[inclusive] = bound
                if excl:
                    out[exclusive] = True
            continue
        if excl is not None and (bound is None or (excl >= bound if low else excl <= bound)):
            out[inclusive] = excl
            out[exclusive] = True
        elif bound is not None:
            out[inclusive] = bound


def _object(flat: Schema, out: Schema, *, defs: Schema, path: str, stack: tuple[str, ...]) -> None:
    props = flat.get("properties") or {}
    if props:
        out["properties"] = {
            name: _convert(sub, defs=defs, path=f"{path}.{name}", stack=stack)
            for name, sub in sorted(props.items())
        }
    if flat.get("required"):
        out["required"] = sorted(flat["required"])
    extra = flat.get("additionalProperties")
    if extra is True or extra == {}:
        out["x-kubernetes-preserve-unknown-fields"] = True
    elif isinstance(extra, dict):
        if props:
            raise CRDGenError(f"{path}: an object cannot have both declared and typed extra properties")
        out["additionalProperties"] = _convert(extra, defs=defs, path=f"{path}[*]", stack=stack)
    elif extra is None and not props and "x-kubernetes-preserve-unknown-fields" not in out:
        # ``dict`` without arguments: pydantic leaves additionalProperties out.
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "propertyNames" in flat:
        out.setdefault("x-kubernetes-validations", [])
        out["x-kubernetes-validations"] = [
            *out["x-kubernetes-validations"],
            _key_rule(flat["propertyNames"], path),
        ]
    if "patternProperties" in flat:
        raise CRDGenError(f"{path}: patternProperties has no structural equivalent")


def _key_rule(names: Schema, path: str) -> Schema:
    """``propertyNames`` (``dict[Literal[...], X]``, constrained keys) as a CEL rule on the map."""
    if "enum" in names or "const" in names:
        allowed = names.get("enum") or [names["const"]]
        listed = ", ".join(json.dumps(v) for v in allowed)
        return {"rule": f"self.all(k, k in [{listed}])", "message": f"keys must be one of: {listed}"}
    if "pattern" in names:
        return {
            "rule": f"self.all(k, k.matches({json.dumps(names['pattern'])}))",
            "message": f"keys must match {names['pattern']}",
        }
    raise CRDGenError(f"{path}: propertyNames {names} is not supported (use an enum or a pattern)")


def _array(flat: Schema, out: Schema, *, defs: Schema, path: str, stack: tuple[str, ...]) -> None:
    if "prefixItems" in flat:
        items = [
            _convert(p, defs=defs, path=f"{path}[{i}]", stack=stack)
            for i, p in enumerate(flat["prefixItems"])
        ]
        same = all(json.dumps(i, sort_keys=True) == json.dumps(items[0], sort_keys=True) for i in items)
        out["items"] = items[0] if items and same else {"x-kubernetes-preserve-unknown-fields": True}
        out.setdefault("minItems", len(items))
        out.setdefault("maxItems", len(items))
    elif "items" in flat:
        out["items"] = _convert(flat["items"], defs=defs, path=f"{path}[*]", stack=stack)
    else:
        out["items"] = {"x-kubernetes-preserve-unknown-fields": True}
    if flat.get("uniqueItems"):
        # Structural schemas forbid uniqueItems: true (quadratic); a set list type
        # makes the apiserver reject duplicates instead, but only for scalar items.
        if out["items"].get("type") not in SCALAR_TYPES:
            raise CRDGenError(f"{path}: unique items must be scalars (x-kubernetes-list-type: set)")
        listed = out.get("x-kubernetes-list-type", "set")
        if listed != "set":
            raise CRDGenError(f"{path}: unique items conflict with x-kubernetes-list-type {listed!r}")
        out["x-kubernetes-list-type"] = "set"


def _default(flat: Schema, out: Schema, *, path: str) -> None:
    """Keep scalar, non-null defaults; check them against the node as the apiserver would."""
    if "default" not in flat:
        return
    value = flat["default"]
    if value is None or isinstance(value, dict | list):
        return
    problem = default_problem(value, out)
    if problem:
        raise CRDGenError(f"{path}: default {value!r} is invalid: {problem}")
    out["default"] = value


def default_problem(value: Any, node: Schema) -> str | None:
    """Why ``value`` does not satisfy ``node`` (scalar keywords only), or None."""
    type_ = node.get("type")
    if node.get("x-kubernetes-int-or-string"):
        ok = isinstance(value, int | str) and not isinstance(value, bool)
    elif type_ == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif type_ == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif type_ == "string":
        ok = isinstance(value, str)
    elif type_ == "boolean":
        ok = isinstance(value, bool)
    else:
        ok = type_ is None
    if not ok:
        return f"not of type {type_ or 'int-or-string'}"
    if "enum" in node and value not in node["enum"]:
        return f"not one of {node['enum']}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in node and (
            value < node["minimum"] or (node.get("exclusiveMinimum") and value == node["minimum"])
        ):
            return f"below the minimum {node['minimum']}"
        if "maximum" in node and (
            value > node["maximum"] or (node.get("exclusiveMaximum") and value == node["maximum"])
        ):
            return f"above the maximum {node['maximum']}"
    if isinstance(value, str):
        if len(value) < node.get("minLength", 0) or len(value) > node.get("maxLength", len(value)):
            return "length out of bounds"
        if "pattern" in node and not re.search(node["pattern"], value):
            return f"does not match {node['pattern']}"
    return None
