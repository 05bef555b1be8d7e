"""A new kind, added by following the recipe in operator/mlops_operator/README.md, reconciles on
the real control plane: the recipe is code that runs, not only prose.

``toykind/greeting.py`` is the whole kind (api model, pure plan, handler, registration). Its CRD
is generated from the model by the project's crdgen; the operator runs as a subprocess (``kopf
run`` on that one module) watching only the test's namespace.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import Cluster, wait_until

pytestmark = pytest.mark.integration

HERE = pathlib.Path(__file__).resolve().parent
MODULE = HERE / "toykind" / "greeting.py"
# The module registers kopf handlers when imported: it is imported only in the subprocesses (the
# CRD render and the operator), never in the test process, whose own operator must not see it.
RENDER = (
    "import json, sys; sys.path.insert(0, sys.argv[1]); import greeting; "
    "from mlops_operator.crdgen import crd; print(json.dumps(crd.build(greeting.Greeting)))"
)


def test_the_toy_kind_follows_the_recipe_in_under_100_lines() -> None:
    assert len(MODULE.read_text().splitlines()) < 100


@pytest.fixture
def greeting_operator(cluster: Cluster, isolated_namespace: str) -> Iterator[pathlib.Path]:
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig), TOY_NAMESPACE=isolated_namespace)
    rendered = subprocess.run(
        [sys.executable, "-c", RENDER, str(MODULE.parent)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    manifest = json.loads(rendered.stdout)
    cluster.kubectl("apply", "--server-side", "--field-manager=pytest", "-f", "-", input=json.dumps(manifest))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", f"crd/{manifest['metadata']['name']}"
    )
    log = pathlib.Path(f"/tmp/mlops-toy-{isolated_namespace}.log")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace", isolated_namespace,
             str(MODULE)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        yield log
    finally:
        proc.kill()
        proc.wait(timeout=30)


def _configmap(cluster: Cluster, ns: str) -> dict[str, Any] | None:
    return cluster.get("configmap", "hello-greeting", ns)


def test_a_greeting_makes_its_configmap_and_follows_spec_changes(
    cluster: Cluster, isolated_namespace: str, greeting_operator: pathlib.Path
) -> None:
    ns = isolated_namespace
    body = {"apiVersion": "mlops.dev/v1alpha1", "kind": "Greeting", "metadata": {"name": "hello"}}

    def explain() -> object:
        return {
            "status": (cluster.get("greeting", "hello", ns) or {}).get("status"),
            "log": greeting_operator.read_text()[-2000:],
        }

    cluster.apply({**body, "spec": {"message": "hi"}}, namespace=ns)
    wait_until(
        lambda: ((cluster.get("greeting", "hello", ns) or {}).get("status") or {}).get("phase") == "Ready",
        timeout=90, what="Greeting Ready", explain=explain,
    )  # fmt: skip
    child = _configmap(cluster, ns)
    assert child is not None and child["data"] == {"message": "hi"}
    owner = child["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Greeting", "hello", True)
    assert child["metadata"]["labels"]["mlops.dev/greeting"] == "hello"
    status = cluster.get("greeting", "hello", ns)["status"]  # type: ignore[index]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {"Ready": "True", "Reconciling": "False", "Stalled": "False"}

    # Level-triggered: a spec change reaches the existing child; a deleted child comes back.
    cluster.apply({**body, "spec": {"message": "hello again"}}, namespace=ns)
    wait_until(
        lambda: ((_configmap(cluster, ns) or {}).get("data") or {}).get("message") == "hello again",
        timeout=60, what="the ConfigMap updated", explain=explain,
    )  # fmt: skip
    cluster.kubectl("delete", "configmap", "hello-greeting", "-n", ns)
    wait_until(lambda: _configmap(cluster, ns), timeout=60, what="the ConfigMap recreated", explain=explain)

    def ready_event() -> bool:
        events = json.loads(cluster.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
        return any(e.get("reason") == "Ready" and e["involvedObject"]["name"] == "hello" for e in events)

    wait_until(ready_event, timeout=30, what="the Ready Event")
