"""The operator against the real control plane: every kind reaches its first condition, /metrics
counts them, and a killed operator converges on restart with no duplicate and no orphan."""

from __future__ import annotations

import pathlib
import time

import yaml
from prometheus_client import parser

from conftest import ROOT, Cluster, OperatorHandle, OperatorProcess, wait_until

QUICKSTART = ROOT / "examples" / "quickstart"
KINDS = {
    "Dataset": "datasets",
    "TrainingJob": "trainingjobs",
    "HyperparameterSweep": "hyperparametersweeps",
    "ModelDeployment": "modeldeployments",
}


def _quickstart() -> list[dict]:
    docs = []
    for path in sorted(QUICKSTART.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]
    return docs


def _reconciled(cluster: Cluster, plural: str, name: str, namespace: str) -> dict | None:
    obj = cluster.get(plural, name, namespace)
    if not obj:
        return None
    status = obj.get("status") or {}
    if status.get("observedGeneration") == obj["metadata"]["generation"] and status.get("conditions"):
        return obj
    return None


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_every_kind_reaches_its_first_condition_and_is_counted(
    cluster: Cluster, operator: OperatorHandle, namespace: str
) -> None:
    docs = _quickstart()
    assert {d["kind"] for d in docs} == set(KINDS), "the quickstart has one resource of each kind"
    for doc in docs:
        cluster.apply(doc, namespace)
    for doc in docs:
        obj = wait_until(
            lambda d=doc: _reconciled(cluster, KINDS[d["kind"]], d["metadata"]["name"], namespace),
            timeout=90,
            what=f"{doc['kind']} {doc['metadata']['name']} to be reconciled",
        )
        assert obj["status"].get("phase"), f"{doc['kind']} has a phase for its printer column"
        # The operator never writes users' specs (GitOps tools would see drift).
        managers = {m["manager"] for m in obj["metadata"].get("managedFields", []) if "f:spec" in str(m)}
        assert "mlops-operator" not in managers and "mlops-operator-status" not in managers

    def counted() -> dict | None:
        samples = _samples(operator.metrics())
        for kind in KINDS:
            ok = samples.get(
                ("mlops_operator_reconcile_total", frozenset({("kind", kind), ("result", "ok")})), 0
            )
            failed = samples.get(
                ("mlops_operator_reconcile_total", frozenset({("kind", kind), ("result", "failed")})), 0
            )
            if ok + failed < 1:
                return None
            objects = sum(
                v
                for (name, labels), v in samples.items()
                if name == "mlops_operator_objects" and ("kind", kind) in labels
            )
            if objects < 1:
                return None
        return samples

    samples = wait_until(counted, timeout=60, what="reconcile and object counts for every kind in /metrics")
    assert any(name == "mlops_operator_reconcile_duration_seconds_count" for name, _ in samples)
    # Its own API traffic is counted per method: reads and server-side applies at least.
    api_calls = {
        dict(labels)["method"]: v
        for (name, labels), v in samples.items()
        if name == "mlops_operator_api_requests_total"
    }
    assert api_calls.get("GET", 0) >= 1 and api_calls.get("PATCH", 0) >= 1, api_calls


def test_killed_operator_converges_without_duplicates_or_orphans(
    cluster: Cluster, operator_process: OperatorProcess, isolated_namespace: str
) -> None:
    ns = isolated_namespace
    dataset = next(d for d in _quickstart() if d["kind"] == "Dataset")
    operator_process.start()
    cluster.apply(dataset, ns)
    wait_until(lambda: cluster.list("jobs", ns), timeout=60, what="the Dataset's Job")
    operator_process.kill()
    # While the operator is down the user changes the spec: a new Job must replace the old one.
    dataset["spec"]["split"]["seed"] = 7
    cluster.apply(dataset, ns)
    operator_process.start()

    def converged() -> list[dict] | None:
        obj = cluster.get("datasets", dataset["metadata"]["name"], ns)
        jobs = [j for j in cluster.list("jobs", ns) if not j["metadata"].get("deletionTimestamp")]
        if (
            obj
            and (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]
            and len(jobs) == 1
        ):
            return jobs
        return None

    jobs = wait_until(converged, timeout=90, what="one Job for the new spec after the restart")
    owner = cluster.get("datasets", dataset["metadata"]["name"], ns)
    assert owner is not None
    refs = jobs[0]["metadata"]["ownerReferences"]
    assert refs[0]["uid"] == owner["metadata"]["uid"] and refs[0]["controller"] is True
    # Nothing the operator made is left without an owner.
    for kind in ("jobs", "configmaps"):
        for obj in cluster.list(kind, ns, "app.kubernetes.io/managed-by=mlops-operator"):
            assert obj["metadata"].get("ownerReferences"), f"{kind} {obj['metadata']['name']} is orphaned"


def test_a_restart_writes_nothing_to_unchanged_objects(
    cluster: Cluster, operator_process: OperatorProcess, isolated_namespace: str
) -> None:
    """Level-triggered without kopf's change handlers: a restart reconciles every object from the
    start-up listing and, when nothing changed, writes nothing (no status, no diff-base or
    progress annotation, no child) — and no object carries kopf's copy of its spec."""
    ns = isolated_namespace
    docs = _quickstart()
    operator_process.start()
    for doc in docs:
        cluster.apply(doc, ns)
    for doc in docs:
        wait_until(
            lambda d=doc: _reconciled(cluster, KINDS[d["kind"]], d["metadata"]["name"], ns),
            timeout=90,
            what=f"{doc['kind']} {doc['metadata']['name']} reconciled",
        )
    plurals = [*KINDS.values(), "jobs", "deployments", "services", "configmaps"]

    def versions() -> dict[tuple[str, str], str]:
        return {
            (plural, o["metadata"]["name"]): o["metadata"]["resourceVersion"]
            for plural in plurals
            for o in cluster.list(plural, ns)
        }

    def settled() -> dict[tuple[str, str], str] | None:
        before = versions()
        time.sleep(12)  # two resyncs of the fastest kind (ModelDeployment, 5 s)
        return before if versions() == before else None

    before = wait_until(settled, timeout=120, interval=0.1, what="the objects to stop changing")
    operator_process.kill()
    operator_process.start()
    # The start-up listing reconciles everything at once; let a resync of the 5 s kinds pass too.
    time.sleep(15)
    after = versions()
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert not changed, f"the restart wrote to {changed}"
    for plural in KINDS.values():
        for obj in cluster.list(plural, ns):
            annotations = obj["metadata"].get("annotations") or {}
            kopf_keys = [k for k in annotations if "last-handled-configuration" in k or "kopf" in k]
            assert not kopf_keys, (plural, obj["metadata"]["name"], kopf_keys)
