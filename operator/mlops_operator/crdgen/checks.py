"""Check a rendered schema the way the apiserver will, before it ever sees it.

A CRD the apiserver refuses (a non-structural node, a CEL ``fieldPath`` naming a
field that does not exist, a printer column pointing nowhere, a default outside
its own bounds) would otherwise only show up when the integration tests install
it, or worse, a printer column would silently print ``<none>`` forever. These
checks run on every render, so ``make crds`` and the unit tests catch such a
model at once, with the field named.
"""

from __future__ import annotations

import re
from typing import Any

from mlops_operator.crdgen import schema as schema_mod

Schema = schema_mod.Schema

ALLOWED_KEYS = frozenset(
    {
        "description",
        "type",
        "format",
        "default",
        "enum",
        "nullable",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "multipleOf",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "items",
        "maxProperties",
        "minProperties",
        "required",
        "properties",
        "additionalProperties",
        "anyOf",
        "x-kubernetes-validations",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-int-or-string",
        "x-kubernetes-embedded-resource",
    }
)
TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean"})
INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]
RULE_KEYS = frozenset({"rule", "message", "messageExpression", "reason", "fieldPath", "optionalOldSelf"})
RULE_REASONS = frozenset(
    {"FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"}
)

# One step of a path: .name, ['name'] / ["name"], [0], [*], or a JSONPath filter [?(...)].
# ``self.a.b`` chains in a CEL rule (``self.x.all(...)`` yields ``.x.all``; the method ends the walk).
_SELF_FIELDS = re.compile(r"\bself((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
_STEP = re.compile(
    r"""\.(?P<dot>[A-Za-z0-9_-]+)|\[(?P<q>['"])(?P<quoted>[^'"]+)(?P=q)\]|\[(?P<index>[^\]]*)\]"""
)


def structural_problems(node: Schema, *, path: str) -> list[str]:
    """Every reason the apiserver would refuse ``node`` as a structural schema."""
    problems: list[str] = []
    _walk(node, path=path, problems=problems)
    return problems


def _value_validation_only(node: Schema) -> bool:
    """An anyOf whose branches only require declared fields or restrict them to an enum (no
    type, default, description...): the junctor a structural schema allows."""
    declared = set(node.get("properties") or {})
    for branch in node["anyOf"]:
        props = branch.get("properties") or {}
        if set(branch) - {"required", "properties"} or not set(branch.get("required") or []) <= declared:
            return False
        if not set(props) <= declared or any(set(p) != {"enum"} for p in props.values()):
            return False
    return True


def _walk(node: Schema, *, path: str, problems: list[str]) -> None:
    for key in sorted(set(node) - ALLOWED_KEYS):
        problems.append(f"{path}: keyword {key!r} is not allowed in a structural schema")
    type_ = node.get("type")
    untyped_ok = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
    if type_ is None and not untyped_ok:
        problems.append(f"{path}: no type")
    elif type_ is not None and type_ not in TYPES:
        problems.append(f"{path}: unknown type {type_!r}")
    if "anyOf" in node and not (
        (node.get("x-kubernetes-int-or-string") and node["anyOf"] == INT_OR_STRING_ANY_OF)
        or _value_validation_only(node)
    ):
        problems.append(f"{path}: anyOf is only allowed as the int-or-string pattern or as value validations")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties and additionalProperties are mutually exclusive")
    if node.get("additionalProperties") is False or node.get("additionalProperties") is True:
        problems.append(f"{path}: additionalProperties must be a schema")
    if type_ == "array" and "items" not in node:
        problems.append(f"{path}: an array needs items")
    if "enum" in node and not node["enum"]:
        problems.append(f"{path}: empty enum")
    if "default" in node:
        why = schema_mod.default_problem(node["default"], node) if node["default"] is not None else "null"
        if why:
            problems.append(f"{path}: default {node['default']!r} is invalid: {why}")
    _list_type(node, path=path, problems=problems)
    for rule in node.get("x-kubernetes-validations", []):
        _rule(rule, node, path=path, problems=problems)
    for name, sub in node.get("properties", {}).items():
        _walk(sub, path=f"{path}.{name}", problems=problems)
    if isinstance(node.get("additionalProperties"), dict):
        _walk(node["additionalProperties"], path=f"{path}[*]", problems=problems)
    if isinstance(node.get("items"), dict):
        _walk(node["items"], path=f"{path}[*]", problems=problems)


def _list_type(node: Schema, *, path: str, problems: list[str]) -> None:
    list_type = node.get("x-kubernetes-list-type")
    keys = node.get("x-kubernetes-list-map-keys")
    if list_type is None:
        if keys is not None:
            problems.append(f"{path}: x-kubernetes-list-map-keys needs x-kubernetes-list-type: map")
        return
    items: Schema = node.get("items", {})
    if node.get("type") != "array":
        problems.append(f"{path}: x-kubernetes-list-type on a non-array")
    elif list_type not in ("atomic", "set", "map"):
        problems.append(f"{path}: unknown x-kubernetes-list-type {list_type!r}")
    elif list_type == "set" and items.get("type") not in schema_mod.SCALAR_TYPES:
        problems.append(f"{path}: x-kubernetes-list-type set needs scalar items")
    elif list_type == "map":
        if not keys or items.get("type") != "object":
            problems.append(f"{path}: x-kubernetes-list-type map needs object items and list-map-keys")
            return
        for key in keys:
            prop = items.get("properties", {}).get(key)
            if prop is None:
                problems.append(f"{path}: list-map key {key!r} is not a property of the items")
            elif key not in items.get("required", []) and "default" not in prop:
                problems.append(f"{path}: list-map key {key!r} must be required or have a default")


def _rule(rule: Any, node: Schema, *, path: str, problems: list[str]) -> None:
    if not isinstance(rule, dict) or not isinstance(rule.get("rule"), str) or not rule["rule"].strip():
        problems.append(f"{path}: a CEL validation needs a non-empty 'rule': {rule!r}")
        return
    for key in sorted(set(rule) - RULE_KEYS):
        problems.append(f"{path}: CEL validation key {key!r} is not allowed")
    if "reason" in rule and rule["reason"] not in RULE_REASONS:
        problems.append(f"{path}: CEL reason {rule['reason']!r} is not one of {sorted(RULE_REASONS)}")
    hidden = sorted({h for chain in _SELF_FIELDS.findall(rule["rule"]) if (h := _cel_hidden(node, chain))})
    for field in hidden:
        problems.append(
            f"{path}: CEL rule {rule['rule']!r} reads self{field}, a field CEL cannot see: the apiserver"
            " leaves untyped fields (Any, or a union other than int-or-string) out of the rule's variables"
        )
    field_path = rule.get("fieldPath")
    if field_path is not None and resolve(node, field_path) is None:
        problems.append(f"{path}: CEL fieldPath {field_path!r} names no field of this object")


def undescribed(node: Schema, *, path: str) -> list[str]:
    """Fields without a description (``kubectl explain`` would show nothing for them)."""
    missing: list[str] = []
    for name, sub in node.get("properties", {}).items():
        if not sub.get("description"):
            missing.append(f"{path}.{name}")
        missing.extend(undescribed(sub, path=f"{path}.{name}"))
    if isinstance(node.get("additionalProperties"), dict):
        missing.extend(undescribed(node["additionalProperties"], path=f"{path}[*]"))
    if isinstance(node.get("items"), dict):
        missing.extend(undescribed(node["items"], path=f"{path}[*]"))
    return missing


def cel_visible(node: Schema) -> bool:
    """Whether the apiserver declares ``node`` to CEL (k8s.io/apiserver/pkg/cel/common.SchemaDeclType)."""
    if node.get("x-kubernetes-int-or-string"):
        return True
    type_ = node.get("type")
    if type_ == "array":
        return cel_visible(node["items"])
    if type_ == "object" and isinstance(node.get("additionalProperties"), dict):
        return cel_visible(node["additionalProperties"])
    return type_ is not None


def _cel_hidden(node: Schema, chain: str) -> str | None:
    """The prefix of ``.a.b.c`` (fields read from ``self``) that ends at a field CEL cannot see, or None."""
    current = node
    seen = ""
    for name in chain.strip(".").split("."):
        prop = current.get("properties", {}).get(name)
        if prop is None:
            return None  # a method (.all, .exists, ...) or a map key: nothing more to check
        seen += f".{name}"
        if not cel_visible(prop):
            return seen
        current = prop
    return None


def resolve(node: Schema, path: str) -> Schema | None:
    """The schema node a relative path (``.a.b``, ``['a']``, ``[0]``, ``[?(...)]``) points to, or None.

    Below a node that preserves unknown fields, any path resolves (to that node).
    """
    pos = 0
    current = node
    while pos < len(path):
        match = _STEP.match(path, pos)
        if match is None:
            return None
        pos = match.end()
        if current.get("x-kubernetes-preserve-unknown-fields") and not current.get("properties"):
            return current
        name = match.group("dot") or match.group("quoted")
        if name is not None:
            props: Schema = current.get("properties", {})
            if name in props:
                current = props[name]
            elif isinstance(current.get("additionalProperties"), dict):
                current = current["additionalProperties"]
            elif current.get("x-kubernetes-preserve-unknown-fields"):
                return current
            else:
                return None
        else:
            if current.get("type") != "array":
                return None
            current = current["items"]
    return current
