"""HyperparameterSweep against the real control plane, with simulated trial outcomes.

The sweep's operator runs as a subprocess (so a test can SIGKILL it) with only the sweep
handler and the child watches loaded, in a namespace no other operator watches: the trials'
TrainingJobs are then moved by the test itself, which writes their outcome (Succeeded with an
objective value, or Failed with a reason) through the status subresource, as the TrainingJob
controller would. Everything the sweep does is observed through the API: trials created,
statuses, Events, the ModelDeployment it promotes to.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import subprocess_operator
from kubernetes import client as k8s

from conftest import Cluster, wait_until
from mlops_operator import search
from mlops_operator.api import sweep

pytestmark = pytest.mark.integration

GROUP, VERSION = "mlops.dev", "v1alpha1"
LAUNCH = """
import sys, kopf, logging
from mlops_operator.handlers import settings
settings.configure(
    settings.OperatorConfig(
        metrics_port=int(sys.argv[2]), metrics_host="127.0.0.1", namespaces=(sys.argv[1],)
    )
)
kopf.configure(log_format=kopf.LogFormat.PLAIN)
logging.getLogger("kubernetes").setLevel(logging.WARNING)
import mlops_operator.handlers.sweep, mlops_operator.handlers.children
kopf.run(clusterwide=False, namespaces=(sys.argv[1],), standalone=True, liveness_endpoint=None)
"""


@dataclasses.dataclass
class SweepOperator(subprocess_operator.SubprocessOperator):
    """The operator with only the sweep handler, as a killable subprocess watching one namespace."""

    launch: str = LAUNCH
    label: str = "sweep"


@pytest.fixture
def sweep_operator(cluster: Cluster, isolated_namespace: str) -> Iterator[SweepOperator]:
    handle = SweepOperator(cluster=cluster, namespace=isolated_namespace)
    yield handle
    handle.kill()
    # kopf's finalizer (it runs timers on sweeps) would hold the namespace in Terminating forever
    # once no operator watches it: release the sweeps.
    names = cluster.kubectl("get", "hps", "-n", isolated_namespace, "-o", "name").stdout.split()
    for name in names:
        cluster.kubectl(
            "patch",
            "-n",
            isolated_namespace,
            name,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )


@dataclasses.dataclass
class Api:
    """Reads and writes of sweeps and trials through the Python client (faster than kubectl)."""

    cluster: Cluster
    namespace: str

    def __post_init__(self) -> None:
        self.custom = k8s.CustomObjectsApi(self.cluster.api_client())

    def create_sweep(self, name: str, **spec: Any) -> None:
        manifest = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "HyperparameterSweep",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": base_spec(**spec),
        }
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "hyperparametersweeps", manifest
        )

    def sweep(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "hyperparametersweeps", name
        )
        return obj

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.sweep(name).get("status") or {})

    def patch_sweep(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "hyperparametersweeps", name, {"spec": spec}
        )

    def trials(self, sweep_name: str) -> list[dict[str, Any]]:
        items = self.custom.list_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            "trainingjobs",
            label_selector=f"mlops.dev/hyperparametersweep={sweep_name}",
        )["items"]
        items = [i for i in items if not i["metadata"].get("deletionTimestamp")]
        return sorted(items, key=lambda t: int(t["metadata"]["labels"][sweep.LABEL_TRIAL_INDEX]))

    def unfinished(self, sweep_name: str) -> list[dict[str, Any]]:
        return [
            t
            for t in self.trials(sweep_name)
            if (t.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]

    def finish(self, name: str, value: float | None = None, *, failed: str | None = None) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if failed:
            status = {
                "phase": "Failed",
                "reason": failed,
                "message": f"simulated {failed}",
                "completionTime": stamp,
            }
        else:
            status = {
                "phase": "Succeeded",
                "objectiveMetric": "accuracy",
                "objectiveValue": value,
                "modelUri": f"pvc://models/{self.namespace}/{name}",
                "completionTime": stamp,
            }
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, "trainingjobs", name, {"status": status}
        )

    def events(self, name: str) -> list[str]:
        core = k8s.CoreV1Api(self.cluster.api_client())
        items = core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={name}").items
        return [e.reason for e in items]

    def wait_events(self, name: str, reasons: set[str], *, timeout: float = 30) -> None:
        """Wait for Events with all of ``reasons`` on ``name``: the operator posts a pass's Events
        only after it wrote that pass's status, so a status just seen may not have its Events yet."""
        wait_until(
            lambda: reasons <= set(self.events(name)),
            timeout=timeout,
            interval=0.5,
            what=f"{sorted(reasons)} Events on {name}",
            explain=lambda: sorted(set(self.events(name))),
        )


def base_spec(**spec: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "trialTemplate": {
            "datasetRef": {"name": "iris"},
            "model": {"estimator": "RandomForestClassifier", "params": {"n_estimators": 10}},
            "metrics": ["accuracy"],
        },
        "searchSpace": [
            {"name": "max_depth", "type": "int", "low": 2, "high": 12},
            {"name": "max_features", "type": "float", "low": 0.1, "high": 1.0},
        ],
        "objective": {"metric": "accuracy", "direction": "maximize"},
        "algorithm": {"name": "random"},
        "seed": 5,
        "maxTrials": 8,
        "parallelism": 3,
    }
    out.update(spec)
    return out


@pytest.fixture
def api(cluster: Cluster, isolated_namespace: str) -> Api:
    return Api(cluster=cluster, namespace=isolated_namespace)


def test_parallelism_is_never_exceeded_and_slots_refill(
    api: Api, sweep_operator: SweepOperator, cluster: Cluster
) -> None:
    sweep_operator.start()
    api.create_sweep("slots", maxTrials=8, parallelism=3)
    finished = 0
    while finished < 8:
        expected_running = min(3, 8 - finished)
        # Slots refill: after each completion the operator brings the running count back up.
        running = wait_until(
            lambda n=expected_running: (u := api.unfinished("slots")) and len(u) == n and u,
            timeout=30,
            what=f"{expected_running} running trials after {finished} finished",
        )
        assert len(api.unfinished("slots")) <= 3
        api.finish(running[0]["metadata"]["name"], round(0.5 + finished / 100, 2))
        finished += 1
    status = wait_until(
        lambda: (s := api.status("slots")).get("phase") == "Succeeded" and s,
        timeout=30,
        what="the sweep to succeed",
    )
    names = [t["metadata"]["name"] for t in api.trials("slots")]
    assert names == [f"slots-trial-{i}" for i in range(8)]
    assert status["reason"] == "MaxTrialsReached" and status["progress"] == "8/8"
    assert status["trials"]["created"] == 8 and status["trials"]["succeeded"] == 8
    assert status["bestTrial"]["name"] == "slots-trial-7" and status["bestTrial"]["objectiveValue"] == 0.57
    # Every trial is a TrainingJob owned by the sweep, with the sampled parameters in its spec.
    trial = api.trials("slots")[0]
    assert trial["metadata"]["ownerReferences"][0]["kind"] == "HyperparameterSweep"
    params = json.loads(trial["metadata"]["annotations"][sweep.ANNOTATION_TRIAL_PARAMS])
    assert {k: trial["spec"]["model"]["params"][k] for k in params} == params
    # kubectl get shows progress, best and phase.
    table = cluster.kubectl("get", "hps", "slots", "-n", api.namespace).stdout
    header, row = table.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "PROGRESS", "BEST", "PHASE"]
    assert row.split()[:4] == ["slots", "8/8", "0.57", "Succeeded"]
    api.wait_events("slots", {"Started", "TrialsCreated", "NewBestTrial", "MaxTrialsReached"})


def test_parallelism_change_applies_while_running(api: Api, sweep_operator: SweepOperator) -> None:
    sweep_operator.start()
    api.create_sweep("grow", maxTrials=10, parallelism=2)
    wait_until(lambda: len(api.unfinished("grow")) == 2, timeout=30, what="2 running trials")
    api.patch_sweep("grow", {"parallelism": 5})
    wait_until(lambda: len(api.unfinished("grow")) == 5, timeout=30, what="5 running trials after the raise")


def test_goal_ends_the_sweep_and_promotes_the_best_model(api: Api, sweep_operator: SweepOperator) -> None:
    sweep_operator.start()
    api.create_sweep(
        "goal",
        maxTrials=30,
        parallelism=3,
        objective={"metric": "accuracy", "direction": "maximize", "goal": 0.9},
        promote={"modelDeployment": "goal-model"},
    )
    wait_until(lambda: len(api.unfinished("goal")) == 3, timeout=30, what="3 running trials")
    api.finish("goal-trial-0", 0.8)
    wait_until(
        lambda: len(api.unfinished("goal")) == 3 and len(api.trials("goal")) == 4,
        timeout=30,
        what="a fourth trial",
    )
    api.finish("goal-trial-2", 0.93)
    status = wait_until(
        lambda: (s := api.status("goal")).get("phase") == "Succeeded" and s,
        timeout=30,
        what="the goal to end the sweep",
    )
    assert status["reason"] == "GoalReached" and status["goalReached"] is True
    assert status["bestTrial"]["name"] == "goal-trial-2"
    # Unfinished trials are stopped; nothing new is created.
    wait_until(lambda: api.unfinished("goal") == [], timeout=30, what="unfinished trials to be stopped")
    assert [t["metadata"]["name"] for t in api.trials("goal")] == ["goal-trial-0", "goal-trial-2"]
    assert status["trials"]["stopped"] == 2
    deployment = wait_until(
        lambda: api.custom.get_namespaced_custom_object(
            GROUP, VERSION, api.namespace, "modeldeployments", "goal-model"
        ),
        timeout=30,
        what="the promoted ModelDeployment",
    )
    assert deployment["spec"]["model"] == {"storageUri": f"pvc://models/{api.namespace}/goal-trial-2"}
    # No ModelDeployment existed: the operator created it, so it is the operator's, and says so.
    assert deployment["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "mlops-operator",
        "mlops.dev/promoted-from-sweep": "goal",
    }
    assert spec_managers(deployment) == {"mlops-operator"}
    promotion = wait_until(
        lambda: api.status("goal").get("promotion"), timeout=30, what="the promotion in the status"
    )
    assert (promotion["trial"], promotion["state"]) == ("goal-trial-2", "Created")
    api.wait_events("goal", {"GoalReached", "Promoted"})


def spec_managers(obj: dict[str, Any]) -> set[str]:
    """The field managers that own any field under ``spec`` (server-side apply's managedFields)."""
    return {
        str(entry["manager"])
        for entry in obj["metadata"].get("managedFields") or []
        if "f:spec" in (entry.get("fieldsV1") or {})
    }


GITOPS_MANAGER = "argocd-controller"


def test_promotion_leaves_a_gitops_owned_model_deployment_alone(
    api: Api, sweep_operator: SweepOperator, cluster: Cluster
) -> None:
    """Argo CD (self-heal) applies the ModelDeployment before and after the promotion: the
    operator never owns a field of its spec, so the two never fight; the sweep says what to set."""
    user_md = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": "gitops-model", "namespace": api.namespace},
        "spec": {"model": {"trainingJobRef": "iris-logreg"}, "replicas": 2},
    }

    def gitops_apply() -> dict[str, Any]:
        cluster.kubectl(
            "apply",
            "--server-side",
            f"--field-manager={GITOPS_MANAGER}",
            "-f",
            "-",
            input=json.dumps(user_md),
        )
        return model_deployment()

    def model_deployment() -> dict[str, Any]:
        # Through the API, not ``kubectl get``: kubectl hides managedFields.
        found: dict[str, Any] = api.custom.get_namespaced_custom_object(
            GROUP, VERSION, api.namespace, "modeldeployments", "gitops-model"
        )
        return found

    first = gitops_apply()
    assert spec_managers(first) == {GITOPS_MANAGER}
    sweep_operator.start()
    api.create_sweep(
        "gitops",
        maxTrials=2,
        parallelism=2,
        promote={"modelDeployment": "gitops-model"},
    )
    wait_until(lambda: len(api.unfinished("gitops")) == 2, timeout=30, what="2 running trials")
    api.finish("gitops-trial-0", 0.81)
    api.finish("gitops-trial-1", 0.92)
    promotion = wait_until(
        lambda: api.status("gitops").get("promotion"), timeout=30, what="the promotion in the status"
    )
    uri = f"pvc://models/{api.namespace}/gitops-trial-1"
    assert promotion == dict(promotion, trial="gitops-trial-1", modelUri=uri, state="NotApplied")
    assert promotion["modelDeployment"] == "gitops-model"
    promoted = next(c for c in api.status("gitops")["conditions"] if c["type"] == "Promoted")
    assert (promoted["status"], promoted["reason"]) == ("False", "OwnedByUser")
    api.wait_events("gitops", {"PromotionNotApplied"})
    core = k8s.CoreV1Api(cluster.api_client())
    [event] = [
        e
        for e in core.list_namespaced_event(api.namespace, field_selector="involvedObject.name=gitops").items
        if e.reason == "PromotionNotApplied"
    ]
    assert f"set spec.model to {{storageUri: {uri}}} in gitops-model" in event.message
    # The operator wrote nothing at all to it (this operator runs no ModelDeployment handler).
    untouched = model_deployment()
    assert untouched["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    # Argo CD syncs again: nothing to correct, and no spec field was ever the operator's.
    after = gitops_apply()
    assert after["spec"] == first["spec"] and after["spec"]["model"] == user_md["spec"]["model"]
    assert spec_managers(after) == {GITOPS_MANAGER}
    assert "mlops.dev/promoted-from-sweep" not in (after["metadata"].get("labels") or {})


def test_failures_are_counted_and_end_the_sweep_with_their_reasons(
    api: Api, sweep_operator: SweepOperator
) -> None:
    sweep_operator.start()
    api.create_sweep("fails", maxTrials=20, parallelism=2, maxFailedTrials=1)
    wait_until(lambda: len(api.unfinished("fails")) == 2, timeout=30, what="2 running trials")
    api.finish("fails-trial-0", failed="OOMKilled")
    wait_until(
        lambda: api.status("fails").get("trials", {}).get("failed") == 1,
        timeout=30,
        what="one failure counted",
    )
    assert api.status("fails")["phase"] == "Running"
    api.finish("fails-trial-1", failed="DeadlineExceeded")
    status = wait_until(
        lambda: (s := api.status("fails")).get("phase") == "Failed" and s,
        timeout=30,
        what="the sweep to fail",
    )
    assert status["reason"] == "TooManyFailedTrials"
    assert "DeadlineExceeded" in status["message"] and "OOMKilled" in status["message"]
    assert [f["reason"] for f in status["lastFailures"]][:2] in (
        ["DeadlineExceeded", "OOMKilled"],
        ["OOMKilled", "DeadlineExceeded"],
    )  # same-second completions
    api.wait_events("fails", {"TrialFailed", "TooManyFailedTrials"})


def test_invalid_search_space_fails_before_any_trial(api: Api, sweep_operator: SweepOperator) -> None:
    sweep_operator.start()
    api.create_sweep("bad", searchSpace=[{"name": "max_dept", "type": "int", "low": 2, "high": 9}])
    status = wait_until(
        lambda: (s := api.status("bad")).get("phase") == "Failed" and s, timeout=30, what="the sweep to fail"
    )
    assert status["reason"] == "InvalidSearchSpace" and "max_dept" in status["message"]
    assert api.trials("bad") == []


def test_operator_killed_mid_sweep_loses_and_duplicates_nothing(
    api: Api, sweep_operator: SweepOperator
) -> None:
    """SIGKILL the operator again and again while trials finish; the sweep ends as if it never died."""
    total, parallelism = 14, 4
    sweep_operator.start()
    api.create_sweep("restarts", maxTrials=total, parallelism=parallelism, seed=99)
    finished = 0
    while finished < total:
        expected = min(parallelism, total - finished)
        running = wait_until(
            lambda n=expected: (u := api.unfinished("restarts")) and len(u) == n and u,
            timeout=60,
            what=f"{expected} running trials ({sweep_operator.log()})",
        )
        api.finish(running[0]["metadata"]["name"], 0.6 + 0.01 * (finished % 5))
        finished += 1
        if finished % 3 == 0:  # die right after a completion, before or while it is handled
            sweep_operator.kill()
            if finished % 2:  # sometimes finish another one while the operator is down
                api.finish(running[1]["metadata"]["name"], 0.5)
                finished += 1
            sweep_operator.start()
    status = wait_until(
        lambda: (s := api.status("restarts")).get("phase") == "Succeeded" and s,
        timeout=60,
        what="the sweep to succeed",
    )
    trials = api.trials("restarts")
    indices = [int(t["metadata"]["labels"][sweep.LABEL_TRIAL_INDEX]) for t in trials]
    assert indices == list(range(total))  # none lost, none twice, none beyond maxTrials
    assert status["trials"]["created"] == total and status["trials"]["succeeded"] == total
    assert sweep_operator.starts >= 4
    # Same seed, same sequence: trial k has configuration k's parameters, whoever created it.
    spec = sweep.HyperparameterSweepSpec.model_validate(api.sweep("restarts")["spec"])
    sampler = search.make(spec, seed=99).sampler
    assert isinstance(sampler, search.samplers.RandomSampler)
    for k, trial in enumerate(trials):
        assert json.loads(
            trial["metadata"]["annotations"][sweep.ANNOTATION_TRIAL_PARAMS]
        ) == sampler.params_for(k)
