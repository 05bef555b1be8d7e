"""Every mlops.dev manifest in ``examples/`` is accepted by the real apiserver and parsed by the operator.

Examples are what users copy first; one the apiserver refuses (or one that admits
but the operator's model cannot parse) would be the project's first impression.
Each document is applied with a server-side dry run under ``--validate=strict``
(unknown fields refused, not pruned), and the object the server returns, with its
defaults filled in, is parsed by the kind's pydantic model, as a handler would.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
import yaml

from conftest import Cluster
from mlops_operator.api import common
from mlops_operator.crdgen import crd

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _examples() -> list[Any]:
    params = []
    for path in sorted([*EXAMPLES.rglob("*.yaml"), *EXAMPLES.rglob("*.yml")]):
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if not isinstance(doc, dict) or not str(doc.get("apiVersion", "")).startswith(f"{common.GROUP}/"):
                continue  # ConfigMaps, PVCs... that examples carry along
            rel = path.relative_to(EXAMPLES)
            name = doc.get("metadata", {}).get("name", "?")
            params.append(pytest.param(doc, id=f"{rel}#{index}:{doc.get('kind')}/{name}"))
    return params


EXAMPLE_DOCS = _examples()


def test_every_kind_has_an_example() -> None:
    kinds = {r.crd.kind for r in crd.discover()}
    shown = {p.values[0]["kind"] for p in EXAMPLE_DOCS}
    assert kinds <= shown, f"kinds without an example in examples/: {sorted(kinds - shown)}"


@pytest.mark.parametrize("doc", EXAMPLE_DOCS)
def test_example_is_accepted(cluster: Cluster, namespace: str, doc: dict[str, Any]) -> None:
    resources = {r.crd.kind: r for r in crd.discover()}
    assert doc["apiVersion"] == common.API_VERSION, f"examples use {common.API_VERSION}"
    assert doc["kind"] in resources, f"unknown kind {doc['kind']}"
    manifest = json.loads(json.dumps(doc))
    manifest["metadata"].pop("namespace", None)
    proc = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-n",
        namespace,
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(manifest),
        check=False,
    )
    assert proc.returncode == 0, f"the apiserver refused the example:\n{proc.stderr}"
    assert "Warning" not in proc.stderr, proc.stderr
    admitted = json.loads(proc.stdout)
    # What the operator will receive: the stored form, with the CRD's defaults applied.
    resources[doc["kind"]].from_body(admitted)
