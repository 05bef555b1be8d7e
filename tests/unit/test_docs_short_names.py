"""Every `kubectl <verb> <resource>` the docs show resolves to what the generated CRDs register.

README.md once listed `ds` for Dataset, which kubectl resolves to DaemonSet ("daemonsets.apps
not found"). The names are read from crds/*.yaml (generated from the pydantic models), so a
renamed short name or a typo in a doc fails here, not in a newcomer's terminal.
"""

from __future__ import annotations

import functools
import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = [
    ROOT / "README.md",
    ROOT / "charts" / "mlops-operator" / "README.md",
    ROOT / "operator" / "mlops_operator" / "README.md",
    *sorted((ROOT / "examples").rglob("*.yaml")),
    *sorted((ROOT / "examples").rglob("*.md")),
]
# Built-in resources the docs may name (kubectl knows these without any CRD).
BUILTIN = {
    "nodes", "node", "pods", "pod", "po", "jobs", "job", "deployments", "deploy", "services", "svc",
    "events", "ev", "namespaces", "ns", "configmaps", "cm", "pvc", "crd", "crds", "hpa", "pdb", "all",
}  # fmt: skip
VERBS = "get|describe|delete|wait|edit|explain|patch|label|annotate"
COMMAND = re.compile(rf"kubectl (?:{VERBS})\s+(?:-[A-Za-z]+\s+\S+\s+)*([a-z][a-z0-9.-]*)")


@functools.cache
def _crds() -> list[dict[str, object]]:
    return [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "crds").glob("*.yaml"))]


@functools.cache
def _our_names() -> dict[str, str]:
    """Every name kubectl resolves to one of our kinds (plural, singular, short, kind, category)."""
    names: dict[str, str] = {}
    for crd in _crds():
        spec = crd["spec"]
        assert isinstance(spec, dict)
        n = spec["names"]
        for name in [n["plural"], n["singular"], n["kind"].lower(), *n.get("shortNames", [])]:
            names[name] = n["kind"]
        for category in n.get("categories", []):
            names[category] = "category"
    return names


def _commands() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        if path.exists():
            found += [(str(path.relative_to(ROOT)), m) for m in COMMAND.findall(path.read_text())]
    return found


def test_short_names_cannot_shadow_builtin_ones() -> None:
    shorts = {s for crd in _crds() for s in crd["spec"]["names"].get("shortNames", [])}  # type: ignore[index]
    assert shorts, "no short names read from crds/"
    assert not shorts & {"ds", "rs", "sts", "deploy", "po", "svc", "cm", "ns", "ing", "pv", "pvc"}


@pytest.mark.parametrize(("doc", "resource"), _commands())
def test_every_kubectl_command_in_the_docs_names_a_real_resource(doc: str, resource: str) -> None:
    resource = re.split(r"[/.]", resource, maxsplit=1)[0]
    assert resource in _our_names() or resource in BUILTIN, (
        f"{doc}: `kubectl ... {resource}` names no CRD name of ours ({sorted(_our_names())}) "
        "and no built-in resource"
    )


def test_the_readme_table_gives_the_registered_short_names() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| `([\w-]+)` \|", readme, re.M))
    registered = {
        crd["spec"]["names"]["kind"]: crd["spec"]["names"].get("shortNames", [])  # type: ignore[index]
        for crd in _crds()
    }
    assert set(rows) == set(registered)
    for kind, short in rows.items():
        assert short in registered[kind], (
            f"README.md lists `{short}` for {kind}; the CRD registers {registered[kind]}"
        )
