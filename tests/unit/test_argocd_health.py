"""The Argo CD health checks, run in a real Lua 5.1 interpreter (lupa), against sample objects.

Argo CD evaluates health scripts with gopher-lua (Lua 5.1): the object is the global ``obj``
and the script returns ``{status=..., message=...}``. lupa's ``lua51`` module is the reference
Lua 5.1, so syntax or semantics that only newer Lua accepts fail here.
"""

from __future__ import annotations

import copy
import datetime
import pathlib
import re
from typing import Any

import lupa.lua51 as lupa_lua51  # lupa (a dev dependency) ships the reference Lua 5.1
import pytest
import yaml

from mlops_operator import argocd
from mlops_operator.api import model as model_api
from mlops_operator.handlers import framework
from mlops_operator.reconcile import model as rmodel

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)


def run_health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    lua = lupa_lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(argocd.health_script(kind))
    assert result is not None, f"{kind} health script returned nothing"
    status, message = result["status"], result["message"]
    assert status in {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
    return str(status), str(message)


def body(
    kind: str, status: dict[str, Any] | None, *, generation: int = 1, spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "ns", "generation": generation},
        "spec": spec or {},
    }
    if status is not None:
        out["status"] = {"observedGeneration": generation, **status}
    return out


def cond(type_: str, status: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


@pytest.mark.parametrize("kind", argocd.KINDS)
def test_no_status_and_unobserved_generation_are_progressing(kind: str) -> None:
    assert run_health(kind, body(kind, None)) == ("Progressing", "Waiting for the operator to reconcile")
    stale = body(kind, {"phase": "Failed", "reason": "InvalidSpec"}, generation=3)
    stale["status"]["observedGeneration"] = 2
    assert run_health(kind, stale) == ("Progressing", "Waiting for the operator to observe generation 3")
    missing = body(kind, {"phase": "Running"})
    del missing["status"]["observedGeneration"]
    assert run_health(kind, missing)[0] == "Progressing"


def test_dataset() -> None:
    ready = {
        "phase": "Ready",
        "rows": {"output": 150},
        "digestShort": "abc123def456",
        "conditions": [cond("Ready", "True", "Prepared")],
    }
    assert run_health("Dataset", body("Dataset", ready)) == (
        "Healthy",
        "Ready: 150 rows, version abc123def456",
    )
    failed = {
        "phase": "Failed",
        "reason": "SchemaViolation",
        "message": "column age: 12 values above max",
        "conditions": [cond("Failed", "True", "SchemaViolation", "column age")],
    }
    assert run_health("Dataset", body("Dataset", failed)) == (
        "Degraded",
        "SchemaViolation: column age: 12 values above max",
    )
    # A Failed condition wins even when the phase was not updated.
    by_condition = {
        "phase": "Preparing",
        "conditions": [cond("Failed", "True", "SourceNotFound", "no such file")],
    }
    assert run_health("Dataset", body("Dataset", by_condition)) == (
        "Degraded",
        "SourceNotFound: no such file",
    )
    preparing = {
        "phase": "Preparing",
        "conditions": [cond("Ready", "False", "Preparing", "job x-prepare running")],
    }
    assert run_health("Dataset", body("Dataset", preparing)) == (
        "Progressing",
        "Preparing: Preparing: job x-prepare running",
    )
    assert run_health("Dataset", body("Dataset", {"phase": "Pending"}))[0] == "Progressing"


def test_trainingjob() -> None:
    ok = {
        "phase": "Succeeded",
        "objectiveMetric": "accuracy",
        "objectiveValue": 0.9666666666,
        "conditions": [cond("Succeeded", "True", "Completed")],
    }
    assert run_health("TrainingJob", body("TrainingJob", ok)) == ("Healthy", "Succeeded: accuracy = 0.9667")
    oom = {
        "phase": "Failed",
        "reason": "OOMKilled",
        "message": "the container used more than 512Mi",
        "conditions": [cond("Failed", "True", "OOMKilled")],
    }
    assert run_health("TrainingJob", body("TrainingJob", oom)) == (
        "Degraded",
        "OOMKilled: the container used more than 512Mi",
    )
    suspended = {
        "phase": "Suspended",
        "conditions": [cond("Suspended", "True", "Suspended", "runPolicy.suspend")],
    }
    assert run_health("TrainingJob", body("TrainingJob", suspended)) == (
        "Suspended",
        "Suspended: runPolicy.suspend",
    )
    for phase in ("Pending", "WaitingForData", "Queued", "Running"):
        status, message = run_health("TrainingJob", body("TrainingJob", {"phase": phase}))
        assert status == "Progressing" and message.startswith(phase), (phase, message)
    waiting = {"phase": "WaitingForData", "reason": "DatasetNotReady", "message": "Dataset iris is Preparing"}
    assert run_health("TrainingJob", body("TrainingJob", waiting)) == (
        "Progressing",
        "WaitingForData: DatasetNotReady: Dataset iris is Preparing",
    )


def test_sweep() -> None:
    spec = {"objective": {"metric": "f1"}}
    best = {"name": "s-trial-7", "index": 7, "objectiveValue": 0.91234, "params": {}}
    done = {
        "phase": "Succeeded",
        "progress": "20/20",
        "bestTrial": best,
        "conditions": [cond("Succeeded", "True", "MaxTrialsReached")],
    }
    assert run_health("HyperparameterSweep", body("HyperparameterSweep", done, spec=spec)) == (
        "Healthy",
        "Succeeded: 20/20 trials, best f1 = 0.9123 (s-trial-7)",
    )
    running = {"phase": "Running", "progress": "7/20", "bestTrial": best}
    assert run_health("HyperparameterSweep", body("HyperparameterSweep", running, spec=spec)) == (
        "Progressing",
        "Running: 7/20 trials, best f1 = 0.9123 (s-trial-7)",
    )
    failed = {
        "phase": "Failed",
        "reason": "TooManyFailedTrials",
        "message": "4 trials failed (max 3)",
        "progress": "6/20",
    }
    assert run_health("HyperparameterSweep", body("HyperparameterSweep", failed, spec=spec)) == (
        "Degraded",
        "TooManyFailedTrials: 4 trials failed (max 3)",
    )
    suspended = {"phase": "Suspended", "progress": "3/20"}
    assert run_health("HyperparameterSweep", body("HyperparameterSweep", suspended)) == (
        "Suspended",
        "Suspended: 3/20 trials",
    )
    assert run_health("HyperparameterSweep", body("HyperparameterSweep", {"phase": "Pending"})) == (
        "Progressing",
        "Pending:",
    )


def _md(status: dict[str, Any], **spec: Any) -> dict[str, Any]:
    base = {
        "readyReplicas": 2,
        "desiredReplicas": 2,
        "url": "http://iris.ns.svc/v2/models/iris",
        "conditions": [cond("Ready", "True", "Available")],
    }
    base.update(status)
    return body("ModelDeployment", base, spec={"model": {"trainingJobRef": "t"}, **spec})


def test_modeldeployment() -> None:
    assert run_health("ModelDeployment", _md({"phase": "Ready"})) == (
        "Healthy",
        "2/2 replicas ready, serving http://iris.ns.svc/v2/models/iris",
    )
    drift = _md(
        {
            "phase": "Ready",
            "drift": {"score": 0.3141, "feature": "petal_width", "rows": 500},
            "conditions": [cond("Ready", "True"), cond("DriftDetected", "True", "PSIAboveThreshold")],
        }
    )
    status, message = run_health("ModelDeployment", drift)
    assert status == "Healthy" and message.endswith("; drift detected on petal_width (PSI 0.3141)")
    scaling = _md(
        {
            "phase": "Progressing",
            "readyReplicas": 1,
            "desiredReplicas": 3,
            "conditions": [cond("Ready", "False", "MinimumReplicasUnavailable", "waiting for pods")],
        }
    )
    assert run_health("ModelDeployment", scaling) == ("Progressing", "1/3 replicas ready: waiting for pods")
    partly = _md({"readyReplicas": 1, "desiredReplicas": 3})
    assert run_health("ModelDeployment", partly) == ("Progressing", "1/3 replicas ready")
    canary = _md({"canary": {"state": "Progressing", "trafficPercent": 25.0, "replicas": 1}})
    assert run_health("ModelDeployment", canary) == ("Progressing", "Canary in progress at 25% of traffic")
    rolled = _md({"canary": {"state": "RolledBack", "message": "error rate 12% > 5%", "replicas": 0}})
    assert run_health("ModelDeployment", rolled) == ("Degraded", "Canary rolled back: error rate 12% > 5%")
    failed = _md(
        {
            "phase": "Failed",
            "reason": "ModelNotFound",
            "message": "no model.skops in pvc://m/x",
            "conditions": [cond("Failed", "True", "ModelNotFound")],
        }
    )
    assert run_health("ModelDeployment", failed) == ("Degraded", "ModelNotFound: no model.skops in pvc://m/x")
    archived = _md({"readyReplicas": 0, "desiredReplicas": 0}, stage="archived")
    assert run_health("ModelDeployment", archived) == ("Suspended", "Archived: scaled to zero")


def _model(**status: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "phase": "Ready",
        "versionCount": 3,
        "latestVersion": 3,
        "aliases": [{"name": "challenger", "version": 3}, {"name": "champion", "version": 2}],
        "champion": 2,
        "conditions": [
            cond("AliasesResolved", "True", "Resolved", "every alias names a version"),
            cond("Ready", "True", "Ready", "3 version(s), latest v3, champion v2"),
            cond("Reconciling", "False", "Ready"),
            cond("Stalled", "False", "Ready"),
        ],
    }
    base.update(status)
    return body("Model", base)


def test_model() -> None:
    assert run_health("Model", _model()) == (
        "Healthy",
        "Ready: 3 versions, latest v3; aliases challenger v3, champion v2",
    )
    one = _model(versionCount=1, latestVersion=1, aliases=[], champion=None)
    assert run_health("Model", one) == ("Healthy", "Ready: 1 version, latest v1; no aliases")
    # An empty registry is not ill: nothing has been trained into it yet.
    empty = _model(versionCount=0, aliases=[], champion=None)
    del empty["status"]["latestVersion"]
    assert run_health("Model", empty) == ("Healthy", "Ready: no versions yet")
    many = _model(aliases=[{"name": f"a{i}", "version": 1} for i in range(6)])
    assert run_health("Model", many) == (
        "Healthy",
        "Ready: 3 versions, latest v3; aliases a0 v1, a1 v1, a2 v1, a3 v1 and 2 more",
    )
    refused = _model(
        conditions=[
            cond(
                "AliasesResolved",
                "False",
                "AliasRefused",
                "alias.mlops.dev/champion: version 9 does not exist; champion left unchanged",
            ),
            cond("Ready", "True", "Ready"),
        ]
    )
    assert run_health("Model", refused) == (
        "Degraded",
        "AliasRefused: alias.mlops.dev/champion: version 9 does not exist; champion left unchanged",
    )
    dangling = _model(
        conditions=[
            cond("AliasesResolved", "False", "AliasOnDeletedVersion", "champion names v2, which was deleted"),
            cond("Ready", "True", "Ready"),
        ]
    )
    assert run_health("Model", dangling) == (
        "Degraded",
        "AliasOnDeletedVersion: champion names v2, which was deleted",
    )
    failed = _model(
        phase="Failed",
        reason="InvalidSpec",
        message="spec.statusVersions: must be at most 100",
        conditions=[cond("Failed", "True", "InvalidSpec"), cond("Stalled", "True", "InvalidSpec")],
    )
    assert run_health("Model", failed) == (
        "Degraded",
        "InvalidSpec: spec.statusVersions: must be at most 100",
    )
    # Failed wins over a refused alias: the spec itself is what to fix first.
    both = _model(
        phase="Failed",
        reason="ChildRejected",
        message="configmaps is forbidden",
        conditions=[cond("AliasesResolved", "False", "AliasRefused", "x"), cond("Failed", "True")],
    )
    assert run_health("Model", both) == ("Degraded", "ChildRejected: configmaps is forbidden")
    # A Failed condition an earlier pass left (the reconciler keeps conditions it does not own)
    # is not read: the phase and Stalled, which every pass rewrites, say the failure is over.
    recovered = _model(
        conditions=[
            cond("Failed", "True", "InvalidSpec", "spec.statusVersions: must be at most 100"),
            cond("Ready", "True", "Ready"),
            cond("Stalled", "False", "Ready"),
        ]
    )
    assert run_health("Model", recovered)[0] == "Healthy"
    working = _model(
        conditions=[cond("Ready", "True"), cond("Reconciling", "True", "Registering", "writing iris-v4")]
    )
    assert run_health("Model", working) == ("Progressing", "Registering: writing iris-v4")
    # A status without a phase or Ready yet (an older operator, a status written by hand).
    assert run_health("Model", body("Model", {})) == ("Progressing", "Pending: waiting for the operator")
    # A Model has nothing to suspend; no state of it reads Suspended.
    for case in (_model(), empty, refused, failed, working):
        assert run_health("Model", case)[0] != "Suspended"


def _model_pass(
    *,
    annotations: dict[str, str] | None = None,
    trainingjobs: int = 0,
    deleted: tuple[int, ...] = (),
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The object as stored after the real Model reconciler ran (twice: records, then their status)."""
    meta = {"name": "iris", "namespace": "ns", "uid": "model-uid", "generation": 1}
    sources = [
        {
            "apiVersion": "mlops.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": f"run-{i}", "namespace": "ns", "uid": f"uid-run-{i}"},
            "spec": {"registerAs": "iris"},
            "status": {
                "phase": "Succeeded",
                "modelUri": f"pvc://models/ns/run-{i}/abc",
                "specHash": f"hash-{i}",
                "objectiveMetric": "accuracy",
                "objectiveValue": 0.9,
                "completionTime": f"2026-03-01T10:0{i}:00Z",
            },
        }
        for i in range(1, trainingjobs + 1)
    ]
    config_maps: list[dict[str, Any]] = []
    stored: dict[str, Any] = dict(status or {})
    for _ in range(2):
        resource = model_api.Model.from_body(
            {"metadata": {**meta, "annotations": annotations or {}}, "status": stored}
        )
        plan = rmodel.plan(
            resource,
            observed=rmodel.Observed(config_maps=copy.deepcopy(config_maps), trainingjobs=sources),
            now=NOW,
        )
        config_maps += plan.create_once
        for cm in config_maps:
            if int(cm["metadata"]["labels"][model_api.LABEL_VERSION]) in deleted:
                cm["metadata"]["labels"][model_api.LABEL_DELETED] = "true"
        stored = plan.status.to_api()
    return {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "Model",
        "metadata": {**meta, "annotations": annotations or {}},
        "spec": {},
        "status": stored,
    }


def test_model_statuses_from_the_reconciler() -> None:
    """What the real reconciler writes, judged by the check: field names and reasons stay in step."""
    assert run_health("Model", _model_pass()) == ("Healthy", "Ready: no versions yet")
    assert run_health(
        "Model", _model_pass(trainingjobs=2, annotations={"alias.mlops.dev/champion": "1"})
    ) == (
        "Healthy",
        "Ready: 2 versions, latest v2; aliases champion v1",
    )
    status, message = run_health(
        "Model", _model_pass(trainingjobs=1, annotations={"alias.mlops.dev/champion": "7"})
    )
    assert status == "Degraded" and message.startswith("AliasRefused: "), message
    assert "version 7 does not exist" in message
    status, message = run_health(
        "Model", _model_pass(trainingjobs=2, annotations={"alias.mlops.dev/champion": "1"}, deleted=(1,))
    )
    assert status == "Degraded" and message.startswith("AliasOnDeletedVersion: "), message
    stored = _model_pass()
    failed = framework.failed_status(stored, "ChildRejected", "configmaps is forbidden", NOW)
    stored["status"] = failed
    assert run_health("Model", stored) == ("Degraded", "ChildRejected: configmaps is forbidden")
    # The cause fixed, the next pass (from that stored status, less the top-level reason and
    # message the API server prunes: the Model's status schema has neither) is Healthy again.
    pruned = {k: v for k, v in failed.items() if k not in {"reason", "message"}}
    recovered = _model_pass(status=pruned)
    assert run_health("Model", recovered) == ("Healthy", "Ready: no versions yet")


@pytest.mark.parametrize(
    ("kind", "phase"),
    [
        ("Dataset", "Preparing"),
        ("TrainingJob", "Running"),
        ("HyperparameterSweep", "Running"),
        ("Model", "Ready"),
    ],
)
def test_stalled_is_degraded_whatever_the_phase(kind: str, phase: str) -> None:
    """Stalled (what Flux reads as Failed) is Degraded in Argo CD too, even before the phase says so."""
    stuck = {
        "phase": phase,
        "conditions": [
            cond("Reconciling", "False", "DeadlineExceeded"),
            cond("Stalled", "True", "DeadlineExceeded", "ran past 900s"),
        ],
    }
    assert run_health(kind, body(kind, stuck)) == ("Degraded", "DeadlineExceeded: ran past 900s")
    working = {
        "phase": phase,
        "conditions": [cond("Stalled", "False", "Working"), cond("Reconciling", "True", "Working")],
    }
    assert run_health(kind, body(kind, working))[0] == "Progressing"


def test_modeldeployment_stalled_or_reconciling_while_serving() -> None:
    """The stable model answers (Ready True) but the spec's model is not reached: Flux reads Failed
    (Stalled) or InProgress (Reconciling), and so must Argo CD."""
    stalled = _md(
        {
            "phase": "Ready",
            "conditions": [
                cond("Ready", "True", "Serving"),
                cond("Stalled", "True", "ModelSourceFailed", "TrainingJob t failed: OOMKilled"),
            ],
        }
    )
    assert run_health("ModelDeployment", stalled) == (
        "Degraded",
        "ModelSourceFailed: TrainingJob t failed: OOMKilled",
    )
    resolving = _md(
        {
            "phase": "Ready",
            "conditions": [
                cond("Ready", "True", "Serving"),
                cond("Reconciling", "True", "WaitingForModel", "TrainingJob t is Running"),
            ],
        }
    )
    assert run_health("ModelDeployment", resolving) == (
        "Progressing",
        "2/2 replicas ready: TrainingJob t is Running",
    )
    settled = _md(
        {
            "phase": "Ready",
            "conditions": [cond("Ready", "True"), cond("Reconciling", "False"), cond("Stalled", "False")],
        }
    )
    assert run_health("ModelDeployment", settled)[0] == "Healthy"


def test_scripts_use_only_what_argocd_allows() -> None:
    for kind in argocd.KINDS:
        script = argocd.health_script(kind)
        # gopher-lua in Argo CD: no io/os/require; Lua 5.1: no goto, no integer division, no utf8.
        for banned in (r"\bio\.", r"\bos\.", r"\brequire\b", r"\bgoto\b", r"//", r"\butf8\."):
            assert not re.search(banned, re.sub(r"--[^\n]*", "", script)), (kind, banned)
    with pytest.raises(ValueError, match="no health check"):
        argocd.health_script("Pod")


def test_rendered_configmap_and_gitops_example_carry_the_scripts() -> None:
    rendered = yaml.safe_load(argocd.render("configmap"))
    assert rendered["metadata"]["name"] == "argocd-cm"
    assert rendered["data"] == argocd.argocd_cm_data()
    assert set(rendered["data"]) == {f"resource.customizations.health.mlops.dev_{k}" for k in argocd.KINDS}
    values = yaml.safe_load(argocd.render("helm-values"))
    assert values["configs"]["cm"] == argocd.argocd_cm_data()
    # The example GitOps repo ships the same scripts (kept in sync by this test).
    example = ROOT / "examples" / "gitops" / "argocd" / "bootstrap" / "argocd-cm-health.yaml"
    shipped = yaml.safe_load(example.read_text(encoding="utf-8"))
    assert shipped["data"] == argocd.argocd_cm_data(), "run: python -m mlops_operator.argocd > " + str(
        example
    )
