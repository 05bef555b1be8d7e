"""``mlops models``: the model registry as a person reads it, and the few writes it needs.

- ``mlops models``: each Model with its newest versions, aliases and last alias moves;
- ``mlops models compare MODEL V1 V2``: two versions' metrics, params and data side by side,
  then a diff of their records;
- ``mlops models alias MODEL ALIAS VERSION``: move an alias (the ``alias.mlops.dev/<alias>``
  annotation, server-side applied as field manager ``mlops-cli``, so the history says who);
- ``mlops models delete-version MODEL VERSION``: retire a version (its record stays as a
  tombstone, so what produced it is never registered again).

The records are read from the versions' ConfigMaps (``<model>-v<n>``), not the status, which
lists only the newest ``spec.statusVersions``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import yaml

from mlops_operator.api import common
from mlops_operator.api import model as api
from mlops_operator.cli import kube

FIELD_MANAGER = "mlops-cli"
ACTIONS = ("list", "compare", "alias", "delete-version")
HISTORY_SHOWN = 5


def _version_number(text: str) -> int:
    raw = text[1:] if text.lower().startswith("v") else text
    if not raw.isdigit() or int(raw) < 1:
        raise kube.CliError(f"{text!r} is not a version number (1, 2, ... or v1, v2, ...)")
    return int(raw)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return common.significant(value)
    if value is None:
        return "-"
    return str(value)


def summary(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A Model as ``-o json|yaml`` prints it."""
    status = obj.get("status") or {}
    return {
        "namespace": kube.namespace_of(dict(obj)),
        "name": kube.name_of(dict(obj)),
        "versionCount": status.get("versionCount", 0),
        "latestVersion": status.get("latestVersion"),
        "aliases": status.get("aliases") or [],
        "versions": status.get("versions") or [],
        "aliasHistory": status.get("aliasHistory") or [],
    }


def render(models: Sequence[Mapping[str, Any]], *, show_namespace: bool) -> list[str]:
    lines: list[str] = []
    for obj in models:
        s = summary(obj)
        where = f"{s['namespace']}/" if show_namespace else ""
        aliases = " ".join(f"{a['name']}=v{a['version']}" for a in s["aliases"]) or "no aliases"
        latest = f", latest v{s['latestVersion']}" if s["latestVersion"] else ""
        lines.append(f"{where}{s['name']}  ({s['versionCount']} versions{latest})  {aliases}")
        by_version: dict[int, list[str]] = {}
        for a in s["aliases"]:
            by_version.setdefault(int(a["version"]), []).append(a["name"])
        for v in s["versions"]:
            source = v.get("source") or {}
            origin = f"{source.get('kind')} {source.get('name')}" + (
                f" trial {source['trial']}" if source.get("trial") else ""
            )
            metric = v.get("objectiveMetric")
            score = f"{metric}={_short(v.get('objectiveValue'))}" if metric else "-"
            digest = str(v.get("datasetDigest") or "-")[:12]
            tags = f"  [{', '.join(by_version[v['version']])}]" if v["version"] in by_version else ""
            created = v.get("created", "-")
            lines.append(f"  v{v['version']:<4} {score:<20} from {origin}  data {digest}  {created}{tags}")
        for move in s["aliasHistory"][:HISTORY_SHOWN]:
            was = f"v{move['from']}" if move.get("from") else "(new)"
            lines.append(
                f"  moved {move['alias']} {was} -> v{move['to']} by {move.get('by')} at {move.get('time')}: "
                f"{move.get('reason', '')}"
            )
    return lines


def list_models(session: kube.Session, *, output: str, out: TextIO) -> int:
    models = session.list(api.Model.crd.kind)
    if output == "json":
        out.write(json.dumps([summary(m) for m in models], indent=2) + "\n")
        return 0
    if output == "yaml":
        out.write(yaml.safe_dump([summary(m) for m in models], sort_keys=False))
        return 0
    if not models:
        where = f"namespace {session.namespace}" if session.namespace else "any namespace"
        out.write(f"No Models in {where}.\n")
        return 0
    for line in render(models, show_namespace=session.namespace is None):
        out.write(line + "\n")
    return 0


def record(session: kube.Session, model: str, version: int) -> dict[str, Any]:
    """The record of ``model`` version ``version`` (its ConfigMap ``<model>-v<n>``)."""
    try:
        cm = session.get("ConfigMap", f"{model}-v{version}", api_version="v1")
    except kube.CliError as exc:
        raise kube.CliError(f"Model {model} has no version {version} ({exc})") from exc
    labels = (cm.get("metadata") or {}).get("labels") or {}
    if labels.get(api.LABEL_MODEL) != model:
        raise kube.CliError(f"ConfigMap {model}-v{version} is no version record of Model {model}")
    try:
        data: dict[str, Any] = json.loads((cm.get("data") or {}).get(api.RECORD_KEY) or "{}")
    except json.JSONDecodeError as exc:
        raise kube.CliError(f"the record of {model} v{version} is not JSON: {exc}") from exc
    if str(labels.get(api.LABEL_DELETED, "")).lower() == "true":
        data["deleted"] = True
    return data


def _rows(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    def source(r: Mapping[str, Any]) -> str:
        s = r.get("source") or {}
        return f"{s.get('kind')}/{s.get('name')}" + (f" ({s['trial']})" if s.get("trial") else "")

    rows = [
        ("source", source(a), source(b)),
        ("created", _short(a.get("created")), _short(b.get("created"))),
        ("model", _short(a.get("modelUri")), _short(b.get("modelUri"))),
        ("estimator", _short(a.get("estimator")), _short(b.get("estimator"))),
        (
            "dataset",
            _short((a.get("dataset") or {}).get("name")),
            _short((b.get("dataset") or {}).get("name")),
        ),
        (
            "data digest",
            _short((a.get("dataset") or {}).get("digest"))[:16],
            _short((b.get("dataset") or {}).get("digest"))[:16],
        ),
        ("device", _short(a.get("device")), _short(b.get("device"))),
    ]
    obj_a, obj_b = a.get("objective") or {}, b.get("objective") or {}
    rows.append(
        (
            f"objective {obj_a.get('metric') or obj_b.get('metric') or ''}".strip(),
            _short(obj_a.get("value")),
            _short(obj_b.get("value")),
        )
    )
    metrics_a, metrics_b = a.get("metrics") or {}, b.get("metrics") or {}
    for metric in sorted(set(metrics_a) | set(metrics_b)):
        for split in ("validation", "test", "cvMean"):
            va = (metrics_a.get(metric) or {}).get(split)
            vb = (metrics_b.get(metric) or {}).get(split)
            if va is not None or vb is not None:
                rows.append((f"{metric} ({split})", _short(va), _short(vb)))
    params_a, params_b = a.get("params") or {}, b.get("params") or {}
    for param in sorted(set(params_a) | set(params_b)):
        rows.append((f"param {param}", _short(params_a.get(param)), _short(params_b.get(param))))
    return rows


def compare(session: kube.Session, model: str, first: str, second: str, *, out: TextIO) -> int:
    va, vb = _version_number(first), _version_number(second)
    a, b = record(session, model, va), record(session, model, vb)
    rows = _rows(a, b)
    width = max(len(r[0]) for r in rows)
    col = max(12, *(len(r[1]) for r in rows))
    out.write(f"{'':<{width}}  {'v' + str(va):<{col}}  v{vb}\n")
    for name, x, y in rows:
        mark = "  " if x == y else " *"
        out.write(f"{name:<{width}}  {x:<{col}}  {y}{mark}\n")
    text_a = json.dumps(a, indent=2, sort_keys=True).splitlines()
    text_b = json.dumps(b, indent=2, sort_keys=True).splitlines()
    diff = list(difflib.unified_diff(text_a, text_b, f"{model}-v{va}", f"{model}-v{vb}", lineterm=""))
    out.write("\n" + ("\n".join(diff) if diff else "(the records are the same)") + "\n")
    return 0


def _cli_owned_aliases(body: Mapping[str, Any]) -> set[str]:
    """The alias annotations ``mlops-cli`` applied before: an apply must keep them (server-side
    apply removes what a manager stops sending)."""
    owned: set[str] = set()
    for entry in (body.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") != FIELD_MANAGER or entry.get("operation") != "Apply":
            continue
        fields = ((entry.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:annotations") or {}
        owned |= {k[2:] for k in fields if k.startswith("f:" + api.ALIAS_ANNOTATION_PREFIX)}
    return owned


def _annotation_owner(body: Mapping[str, Any], key: str) -> str | None:
    for entry in (body.get("metadata") or {}).get("managedFields") or []:
        fields = ((entry.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:annotations") or {}
        if f"f:{key}" in fields and entry.get("manager") != FIELD_MANAGER:
            return str(entry.get("manager"))
    return None


def move_alias(session: kube.Session, model: str, alias: str, version: str, *, out: TextIO) -> int:
    if not re.match(api.ALIAS_PATTERN, alias) or len(alias) > 63:
        raise kube.CliError(f"alias {alias!r}: an alias is a DNS label (a-z, 0-9, -), at most 63 characters")
    n = _version_number(version)
    body = session.get(api.Model.crd.kind, model)
    if record(session, model, n).get("deleted"):
        raise kube.CliError(f"{model} v{n} was deleted; an alias cannot name it")
    key = api.ALIAS_ANNOTATION_PREFIX + alias
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    # The Model acts on a value once: the same number asked again is written the other way.
    value = f"v{n}" if annotations.get(key) == str(n) else str(n)
    keep = {k: annotations[k] for k in _cli_owned_aliases(body) if k in annotations and k != key}
    other = _annotation_owner(body, key)
    namespace = kube.namespace_of(body)
    session.kube.apply(
        {
            "apiVersion": common.API_VERSION,
            "kind": api.Model.crd.kind,
            "metadata": {"name": model, "namespace": namespace, "annotations": {**keep, key: value}},
        },
        field_manager=FIELD_MANAGER,
    )
    out.write(f"{model}: {alias} -> v{n} requested ({key}: {value!r})\n")
    if other:
        out.write(f"note: {key} was set by {other}; if that is GitOps it may set it back\n")
    return 0


def delete_version(session: kube.Session, model: str, version: str, *, out: TextIO) -> int:
    n = _version_number(version)
    current = record(session, model, n)
    if current.get("deleted"):
        out.write(f"{model} v{n} is deleted already\n")
        return 0
    namespace = session.namespace or "default"
    session.kube.patch(
        "v1",
        "ConfigMap",
        f"{model}-v{n}",
        namespace,
        {"metadata": {"labels": {api.LABEL_DELETED: "true"}}},
    )
    out.write(f"{model} v{n} deleted (its record {model}-v{n} stays as a tombstone)\n")
    return 0


def run(session: kube.Session, action: str, args: Sequence[str], *, output: str, out: TextIO) -> int:
    """Dispatch ``mlops models [ACTION ARGS...]``."""
    wanted = {"list": 0, "compare": 3, "alias": 3, "delete-version": 2}
    usage = {
        "list": "mlops models",
        "compare": "mlops models compare MODEL V1 V2",
        "alias": "mlops models alias MODEL ALIAS VERSION",
        "delete-version": "mlops models delete-version MODEL VERSION",
    }
    if len(args) != wanted[action]:
        raise kube.CliError(f"usage: {usage[action]}")
    if action == "list":
        return list_models(session, output=output, out=out)
    if action == "compare":
        return compare(session, args[0], args[1], args[2], out=out)
    if action == "alias":
        return move_alias(session, args[0], args[1], args[2], out=out)
    return delete_version(session, args[0], args[1], out=out)
