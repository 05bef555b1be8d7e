"""The real apiserver enforces the generated CRDs: they install, and bad specs never reach the operator.

Every file in ``invalid/`` is one resource that must be REFUSED by
``kubectl apply --dry-run=server --validate=strict`` with each ``# expect:``
substring in the error (the substrings name the field, so a rejection for some
other reason does not count). ``--validate=strict`` makes the apiserver refuse
unknown fields instead of silently pruning them. Files in ``invalid/updates/``
hold two documents: the first is created, applying the second over it must be
refused (CEL transition rules), unless the file says ``# expect-accepted`` (a
control that the rule does not freeze what may change).
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys
from typing import Any

import pytest
import yaml

from conftest import Cluster, wait_until
from mlops_operator.crdgen import crd

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRD_FILES = sorted((ROOT / "crds").glob(f"{crd.FILE_PREFIX}*.yaml"))
INVALID = sorted((ROOT / "tests" / "integration" / "invalid").glob("*.yaml"))
UPDATES = sorted((ROOT / "tests" / "integration" / "invalid" / "updates").glob("*.yaml"))


def expectations(text: str) -> list[str]:
    """The ``# expect: <substring>`` lines of a corpus file."""
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("# expect:")]


def _committed(path: pathlib.Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


def _dry_run(cluster: Cluster, namespace: str, manifest: str) -> Any:
    return cluster.kubectl(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-n",
        namespace,
        "-f",
        "-",
        input=manifest,
        check=False,
    )


# ---------------------------------------------------------------------------------------------
# The CRDs themselves
# ---------------------------------------------------------------------------------------------
def test_crds_install_and_are_established(cluster: Cluster) -> None:
    assert CRD_FILES, "no CRDs in crds/: run `make crds`"
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=pytest",
        *[f"-f={p}" for p in CRD_FILES],
    )
    for path in CRD_FILES:
        ours = _committed(path)
        name = ours["metadata"]["name"]
        for condition in ("Established", "NamesAccepted"):
            cluster.kubectl("wait", f"--for=condition={condition}", "--timeout=60s", f"crd/{name}")
        served = cluster.get("customresourcedefinition", name)
        assert served is not None
        conditions = {c["type"]: c["status"] for c in served["status"]["conditions"]}
        assert conditions.get("Established") == "True" and conditions.get("NamesAccepted") == "True", (
            conditions
        )
        # Nothing was dropped or rewritten on the way in.
        assert served["spec"]["names"] == ours["spec"]["names"]
        assert served["spec"]["versions"] == ours["spec"]["versions"]
        assert served["status"]["acceptedNames"]["categories"] == ["mlops"]


def test_category_and_short_names_work(cluster: Cluster, namespace: str) -> None:
    expected = {f"{_committed(p)['spec']['names']['plural']}.mlops.dev" for p in CRD_FILES}
    listed = set(cluster.kubectl("api-resources", "--categories=mlops", "-o", "name").stdout.split())
    assert listed == expected
    cluster.kubectl("get", "mlops", "-n", namespace)
    for path in CRD_FILES:
        for short in _committed(path)["spec"]["names"].get("shortNames", []):
            cluster.kubectl("get", short, "-n", namespace)


def test_kubectl_explain_shows_the_model_descriptions(cluster: Cluster) -> None:
    for path in CRD_FILES:
        ours = _committed(path)
        plural = ours["spec"]["names"]["plural"]
        spec = ours["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        described = sorted(n for n, s in spec["properties"].items() if s.get("description"))
        assert described, f"{plural}: no spec field has a description"
        field = described[0]
        words = spec["properties"][field]["description"].split()[:4]

        def explained(plural: str = plural, field: str = field) -> str | None:
            proc = cluster.kubectl("explain", f"{plural}.spec.{field}", check=False)
            return proc.stdout if proc.returncode == 0 else None

        text = wait_until(explained, timeout=30, what=f"kubectl explain {plural}.spec.{field}")
        assert " ".join(text.split()).find(" ".join(words)) >= 0, text


def test_every_generator_feature_is_accepted_by_the_apiserver(cluster: Cluster) -> None:
    # The unit tests' throwaway kind uses every translation the generator does (int-or-string,
    # set lists, map lists, key rules, root transition rules...): the apiserver must accept it
    # as a structural schema whose CEL compiles within budget. Dry run: nothing is installed.
    spec = importlib.util.spec_from_file_location(
        "crdgen_features", ROOT / "tests" / "unit" / "test_crdgen.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' annotations through sys.modules
    spec.loader.exec_module(module)
    manifest = json.dumps(crd.build(module.Gadget))
    proc = cluster.kubectl(
        "apply", "--dry-run=server", "--server-side", "-f", "-", input=manifest, check=False
    )
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------------------------
# The invalid-resource corpus
# ---------------------------------------------------------------------------------------------
def test_corpus_is_large_enough() -> None:
    assert len(INVALID) >= 20


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_resource_is_rejected(cluster: Cluster, namespace: str, path: pathlib.Path) -> None:
    text = path.read_text()
    expects = expectations(text)
    assert expects, f"{path.name} has no '# expect:' line"
    proc = _dry_run(cluster, namespace, text)
    assert proc.returncode != 0, f"{path.name} was ACCEPTED by the apiserver: {proc.stdout.strip()}"
    missing = [e for e in expects if e not in proc.stderr]
    assert not missing, f"{path.name}: rejected, but the error lacks {missing}:\n{proc.stderr}"


@pytest.mark.parametrize("path", UPDATES, ids=[p.stem for p in UPDATES])
def test_invalid_update_is_rejected(cluster: Cluster, isolated_namespace: str, path: pathlib.Path) -> None:
    # isolated_namespace: the session's operator does not watch it, so nothing reconciles the object.
    text = path.read_text()
    first, second = (json.dumps(d) for d in yaml.safe_load_all(text) if d is not None)
    cluster.kubectl("apply", "--validate=strict", "-n", isolated_namespace, "-f", "-", input=first)
    proc = _dry_run(cluster, isolated_namespace, second)
    if "# expect-accepted" in text:
        assert proc.returncode == 0, f"{path.name}: the update was refused:\n{proc.stderr}"
        return
    expects = expectations(text)
    assert expects, f"{path.name} has no '# expect:' line"
    assert proc.returncode != 0, f"{path.name}: the update was ACCEPTED: {proc.stdout.strip()}"
    missing = [e for e in expects if e not in proc.stderr]
    assert not missing, f"{path.name}: rejected, but the error lacks {missing}:\n{proc.stderr}"
