"""reconcile.sweep, pure: trials created, slots, goal, failures, promotion, restarts, status size."""

from __future__ import annotations

import dataclasses
import datetime
import json
import random
from typing import Any

import pytest

from mlops_operator.api import sweep, trainingjob
from mlops_operator.reconcile import sweep as rsweep
from mlops_operator.reconcile import sweep_build

NOW = datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.UTC)


def body(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "trialTemplate": {
            "datasetRef": {"name": "iris"},
            "model": {"estimator": "RandomForestClassifier", "params": {"n_estimators": 20}},
        },
        "searchSpace": [
            {"name": "max_depth", "type": "int", "low": 2, "high": 12},
            {"name": "criterion", "type": "categorical", "values": ["gini", "entropy"]},
        ],
        "objective": {"metric": "accuracy"},
        "algorithm": {"name": "random"},
        "seed": 7,
        "maxTrials": 10,
        "parallelism": 3,
    }
    base.update(spec)
    return {"metadata": {"name": "s", "namespace": "ns", "uid": "uid-1", "generation": 1}, "spec": base}


def applied(manifest: dict[str, Any], manager: str = "mlops-operator") -> dict[str, Any]:
    """``manifest`` as the apiserver stores it after a server-side apply by ``manager``."""
    stored: dict[str, Any] = json.loads(json.dumps(manifest))
    fields: dict[str, Any] = {"f:spec": {"f:model": {}}, "f:metadata": {"f:labels": {}}}
    stored["metadata"]["managedFields"] = [{"manager": manager, "operation": "Apply", "fieldsV1": fields}]
    return stored


class Cluster:
    """The sweep and its trials as the apiserver would hold them, driven pass by pass."""

    def __init__(self, sweep_body: dict[str, Any]) -> None:
        self.body = sweep_body
        self.children: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.promoted: list[dict[str, Any]] = []
        self.model_deployments: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, str, str]] = []
        self.clock = NOW

    def reconcile(self) -> rsweep.Plan:
        """One pass as the handler makes it: plan, then decide the promotion against the target."""
        self.clock += datetime.timedelta(seconds=1)
        resource = sweep.HyperparameterSweep.from_body(self.body)
        plan = rsweep.plan(resource, children=list(self.children.values()), now=self.clock)
        if plan.promote is not None:
            assert resource.spec.promote is not None
            existing = self.model_deployments.get(resource.spec.promote.model_deployment)
            decision = rsweep.decide_promotion(
                resource, plan, target=sweep_build.observe_target(existing), now=self.clock
            )
            if decision.apply is not None:
                self.promoted.append(decision.apply)
                self.model_deployments[decision.apply["metadata"]["name"]] = applied(decision.apply)
            plan = dataclasses.replace(plan, status=decision.status, events=decision.events)
        for manifest in plan.create_once:
            name = manifest["metadata"]["name"]
            assert name not in self.children, f"duplicate trial {name}"
            self.children[name] = json.loads(json.dumps(manifest))
        for ref in plan.delete:
            self.deleted.append(ref.name)
            self.children.pop(ref.name)
        self.events += plan.events
        self.body["status"] = plan.status.to_api()
        return plan

    @property
    def status(self) -> sweep.HyperparameterSweepStatus:
        return sweep.HyperparameterSweepStatus.model_validate(self.body.get("status") or {})

    def finish(self, name: str, value: float | None = None, *, failed: str | None = None) -> None:
        child = self.children[name]
        self.clock += datetime.timedelta(seconds=1)
        stamp = self.clock.strftime("%Y-%m-%dT%H:%M:%SZ")
        if failed:
            child["status"] = {
                "phase": "Failed",
                "reason": failed,
                "message": f"{failed} in the pod",
                "completionTime": stamp,
            }
        else:
            child["status"] = {
                "phase": "Succeeded",
                "objectiveMetric": "accuracy",
                "objectiveValue": value,
                "modelUri": f"pvc://models/ns/{name}",
                "completionTime": stamp,
            }

    def run(self, name: str) -> None:
        self.children[name]["status"] = {"phase": "Running"}

    def unfinished(self) -> list[str]:
        return sorted(
            (
                n
                for n, c in self.children.items()
                if (c.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            ),
            key=lambda n: int(n.rsplit("-", 1)[1]),
        )


def test_first_pass_creates_parallelism_trials_with_deterministic_names_and_labels() -> None:
    c = Cluster(body())
    plan = c.reconcile()
    assert [m["metadata"]["name"] for m in plan.create_once] == ["s-trial-0", "s-trial-1", "s-trial-2"]
    trial = plan.create_once[1]
    meta = trial["metadata"]
    assert meta["ownerReferences"][0] == {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "HyperparameterSweep",
        "name": "s",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert meta["labels"]["mlops.dev/hyperparametersweep"] == "s"
    assert meta["labels"][sweep_build.LABEL_TRIAL_INDEX] == "1"
    assert meta["labels"]["app.kubernetes.io/component"] == "trial"
    params = json.loads(meta["annotations"][sweep_build.ANNOTATION_PARAMS])
    assert set(params) == {"max_depth", "criterion"}
    # The trial trains the template with the sampled parameters and the sweep's objective.
    assert trial["spec"]["model"]["params"] == {"n_estimators": 20, **params}
    assert trial["spec"]["objective"] == {"metric": "accuracy", "direction": "maximize"}
    assert "accuracy" in trial["spec"]["metrics"]
    assert (
        plan.status.phase == "Running" and plan.status.trials.created == 3 and plan.status.progress == "0/10"
    )
    assert plan.status.seed == 7
    assert ("Normal", "TrialsCreated", "created trials 0-2 (3 so far)") in plan.events


def test_a_repeated_pass_or_a_restart_creates_nothing_twice_and_the_same_trials() -> None:
    a, b = (
        Cluster(body(algorithm={"name": "tpe", "startupTrials": 2})),
        Cluster(body(algorithm={"name": "tpe", "startupTrials": 2})),
    )
    for c in (a, b):
        c.reconcile()
        c.finish("s-trial-0", 0.9)
        c.finish("s-trial-1", 0.8)
        c.reconcile()
    assert a.children == b.children
    # A pass that sees the same trials decides the same thing: nothing new while the slots are full.
    again = a.reconcile()
    assert again.create_once == []
    # The status is lost (say, restored from a backup without it): the trials rebuild everything.
    b.body.pop("status")
    b.reconcile()
    assert b.status.trials.created == a.status.trials.created == 5


def test_parallelism_is_never_exceeded_and_slots_refill() -> None:
    c = Cluster(body(maxTrials=8, parallelism=3))
    for step in range(30):
        c.reconcile()
        assert len(c.unfinished()) <= 3
        if not c.unfinished():
            break
        c.finish(c.unfinished()[0], 0.5 + step / 100)
    assert c.status.phase == "Succeeded" and c.status.reason == "MaxTrialsReached"
    assert sorted(c.children) == sorted(f"s-trial-{i}" for i in range(8))
    assert c.status.progress == "8/8"


def test_parallelism_and_max_trials_may_change_while_running() -> None:
    c = Cluster(body(maxTrials=6, parallelism=2))
    c.reconcile()
    assert len(c.unfinished()) == 2
    c.body["spec"]["parallelism"] = 4
    assert len(c.reconcile().create_once) == 2
    c.body["spec"]["parallelism"] = 1  # lowered: running trials go on, nothing new until below it
    c.finish("s-trial-0", 0.7)
    assert c.reconcile().create_once == []
    for name in c.unfinished():
        c.finish(name, 0.6)
    c.reconcile()
    assert c.unfinished() == ["s-trial-4"] and c.status.trials.created == 5
    c.finish("s-trial-4", 0.6)
    c.reconcile()  # trial 5, the last one
    c.finish("s-trial-5", 0.6)
    c.reconcile()
    assert c.status.phase == "Succeeded" and c.status.reason == "MaxTrialsReached"
    c.body["spec"]["maxTrials"] = 7
    plan = c.reconcile()
    assert [m["metadata"]["name"] for m in plan.create_once] == ["s-trial-6"]
    assert plan.status.phase == "Running" and plan.status.completion_time is None
    assert ("Normal", "Resumed", "maxTrials was raised; the sweep runs again") in plan.events


def test_goal_ends_the_sweep_and_stops_unfinished_trials() -> None:
    c = Cluster(body(objective={"metric": "accuracy", "goal": 0.95}, maxTrials=50, parallelism=3))
    c.reconcile()
    c.run("s-trial-1")
    c.finish("s-trial-0", 0.97)
    plan = c.reconcile()
    assert plan.status.phase == "Succeeded" and plan.status.reason == "GoalReached"
    assert plan.status.goal_reached is True
    assert plan.create_once == [] and sorted(r.name for r in plan.delete) == ["s-trial-1", "s-trial-2"]
    assert plan.status.trials.stopped == 2 and plan.status.trials.succeeded == 1
    assert plan.status.best_trial is not None and plan.status.best_trial.name == "s-trial-0"
    assert plan.status.completion_time
    assert any(e[1] == "GoalReached" for e in plan.events)
    # Final: later passes change nothing and create nothing.
    again = c.reconcile()
    assert again.create_once == [] and again.status.phase == "Succeeded" and again.status.trials.stopped == 2


def test_minimize_goal() -> None:
    spec = body(
        trialTemplate={"datasetRef": {"name": "d"}, "model": {"estimator": "RandomForestRegressor"}},
        searchSpace=[{"name": "max_depth", "type": "int", "low": 2, "high": 12}],
        objective={"metric": "rmse", "goal": 0.3},
    )
    c = Cluster(spec)
    c.reconcile()
    c.children["s-trial-0"]["status"] = {
        "phase": "Succeeded",
        "objectiveValue": 0.5,
        "objectiveMetric": "rmse",
    }
    c.children["s-trial-1"]["status"] = {
        "phase": "Succeeded",
        "objectiveValue": 0.25,
        "objectiveMetric": "rmse",
    }
    plan = c.reconcile()
    assert plan.status.reason == "GoalReached"
    assert plan.status.best_trial is not None and plan.status.best_trial.objective_value == 0.25


def test_failures_count_against_max_failed_trials_with_the_last_reasons() -> None:
    c = Cluster(body(maxFailedTrials=2, parallelism=3, maxTrials=20))
    c.reconcile()
    c.finish("s-trial-0", failed="OOMKilled")
    c.finish("s-trial-1", failed="DeadlineExceeded")
    plan = c.reconcile()
    assert plan.status.phase == "Running" and plan.status.trials.failed == 2
    assert [f.reason for f in plan.status.last_failures] == ["DeadlineExceeded", "OOMKilled"]
    assert any(e[:2] == ("Warning", "TrialFailed") for e in plan.events)
    c.finish("s-trial-2", failed="ImagePullBackOff")
    plan = c.reconcile()
    assert plan.status.phase == "Failed" and plan.status.reason == "TooManyFailedTrials"
    assert "3 trials failed (maxFailedTrials 2)" in (plan.status.message or "")
    assert "s-trial-2: ImagePullBackOff" in (plan.status.message or "")
    assert "OOMKilled" in (plan.status.message or "")
    assert plan.status.condition("Failed") is not None and plan.status.is_true("Failed")
    assert sorted(r.name for r in plan.delete) == c.deleted == ["s-trial-3", "s-trial-4"]


def test_a_trial_that_succeeds_without_the_metric_counts_as_failed() -> None:
    c = Cluster(body(maxFailedTrials=5))
    c.reconcile()
    c.children["s-trial-0"]["status"] = {"phase": "Succeeded", "objectiveMetric": "f1", "objectiveValue": 0.9}
    plan = c.reconcile()
    assert plan.status.trials.failed == 1
    assert plan.status.last_failures[0].reason == "NoObjectiveValue"
    # The metric from the per-metric map is used when the objective was another one.
    c.children["s-trial-1"]["status"] = {
        "phase": "Succeeded",
        "objectiveMetric": "f1",
        "objectiveValue": 0.1,
        "metrics": {"accuracy": {"validation": 0.8, "test": 0.7}},
    }
    plan = c.reconcile()
    assert plan.status.best_trial is not None and plan.status.best_trial.objective_value == 0.8


def test_best_trial_and_promotion_to_a_model_deployment() -> None:
    c = Cluster(body(maxTrials=3, parallelism=3, promote={"modelDeployment": "iris-prod"}))
    c.reconcile()
    for name, value in (("s-trial-0", 0.81), ("s-trial-1", 0.93), ("s-trial-2", 0.88)):
        c.finish(name, value)
    plan = c.reconcile()
    assert plan.status.phase == "Succeeded"
    best = plan.status.best_trial
    assert best is not None and (best.name, best.objective_value, best.model_uri) == (
        "s-trial-1",
        0.93,
        "pvc://models/ns/s-trial-1",
    )
    assert best.params == json.loads(
        c.children["s-trial-1"]["metadata"]["annotations"][sweep_build.ANNOTATION_PARAMS]
    )
    assert c.promoted == [
        {
            "apiVersion": "mlops.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {
                "name": "iris-prod",
                "namespace": "ns",
                "labels": {
                    "app.kubernetes.io/managed-by": "mlops-operator",
                    "mlops.dev/promoted-from-sweep": "s",
                },
                "annotations": {"mlops.dev/promoted-trial": "s-trial-1"},
            },
            "spec": {"model": {"storageUri": "pvc://models/ns/s-trial-1"}},
        }
    ]
    promotion = plan.status.promotion
    assert promotion is not None and (promotion.trial, promotion.state) == ("s-trial-1", "Created")
    assert plan.status.is_true("Promoted")
    assert ("Normal", "Promoted") in [e[:2] for e in plan.events]
    # Promoted once: the next pass leaves the ModelDeployment alone.
    assert c.reconcile().promote is None and len(c.promoted) == 1


def user_model_deployment(manager: str = "argocd-controller", **labels: str) -> dict[str, Any]:
    md = {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris-prod", "namespace": "ns", "labels": labels},
        "spec": {"model": {"trainingJobRef": "iris-logreg"}, "replicas": 2},
    }
    return applied(md, manager)


def finished_sweep_into(existing: dict[str, Any] | None) -> tuple[Cluster, rsweep.Plan]:
    c = Cluster(body(maxTrials=2, parallelism=2, promote={"modelDeployment": "iris-prod"}))
    if existing is not None:
        c.model_deployments["iris-prod"] = existing
    c.reconcile()
    c.finish("s-trial-0", 0.81)
    c.finish("s-trial-1", 0.93)
    return c, c.reconcile()


def test_promotion_never_writes_a_model_deployment_its_user_owns() -> None:
    """A GitOps-applied ModelDeployment is left alone; the status and an Event say what to set."""
    user_md = user_model_deployment()
    c, plan = finished_sweep_into(user_md)
    assert c.promoted == [] and c.model_deployments["iris-prod"] == user_md
    promotion = plan.status.promotion
    assert promotion is not None
    assert (promotion.model_deployment, promotion.trial, promotion.model_uri, promotion.state) == (
        "iris-prod",
        "s-trial-1",
        "pvc://models/ns/s-trial-1",
        "NotApplied",
    )
    cond = plan.status.condition("Promoted")
    assert cond is not None and (cond.status, cond.reason) == ("False", "OwnedByUser")
    events = [e for e in plan.events if e[1] == "PromotionNotApplied"]
    assert len(events) == 1 and events[0][0] == "Normal"
    assert "set spec.model to {storageUri: pvc://models/ns/s-trial-1} in iris-prod" in events[0][2]
    # Decided: settled, and later passes neither write nor repeat the Event.
    assert rsweep.settled(sweep.HyperparameterSweep.from_body(c.body))
    again = c.reconcile()
    assert again.promote is None and not [e for e in again.events if "Promot" in e[1]]


@pytest.mark.parametrize(
    ("existing", "state"),
    [
        # Made by the operator for this sweep and written by nobody else: updated.
        (
            applied(
                {
                    "metadata": {
                        "name": "iris-prod",
                        "labels": {
                            "app.kubernetes.io/managed-by": "mlops-operator",
                            "mlops.dev/promoted-from-sweep": "s",
                        },
                    },
                    "spec": {"model": {"storageUri": "pvc://old"}},
                }
            ),
            "Updated",
        ),
        # Labels copied into Git, but Argo CD applies the spec: the user's.
        (
            user_model_deployment(
                **{"app.kubernetes.io/managed-by": "mlops-operator", "mlops.dev/promoted-from-sweep": "s"}
            ),
            "NotApplied",
        ),
        # Made by the operator for another sweep: not this sweep's to rewrite.
        (
            user_model_deployment(
                "mlops-operator",
                **{
                    "app.kubernetes.io/managed-by": "mlops-operator",
                    "mlops.dev/promoted-from-sweep": "other",
                },
            ),
            "NotApplied",
        ),
        # Applied by the user with kubectl, no labels at all.
        (user_model_deployment("kubectl"), "NotApplied"),
    ],
    ids=["operator-made-for-this-sweep", "labels-but-gitops-spec", "another-sweeps", "kubectl-applied"],
)
def test_the_operator_rewrites_only_a_model_deployment_it_made_for_this_sweep(
    existing: dict[str, Any], state: str
) -> None:
    c, plan = finished_sweep_into(existing)
    assert plan.status.promotion is not None and plan.status.promotion.state == state
    assert bool(c.promoted) == (state == "Updated")
    assert plan.status.is_true("Promoted") == (state == "Updated")


def test_observe_target_reads_labels_and_the_managers_of_spec_fields() -> None:
    assert sweep_build.observe_target(None) is None
    md = {
        "metadata": {
            "labels": {"a": "b"},
            "managedFields": [
                {"manager": "mlops-operator", "operation": "Apply", "fieldsV1": {"f:spec": {"f:model": {}}}},
                {"manager": "mlops-operator-status", "subresource": "status", "fieldsV1": {"f:status": {}}},
                {"manager": "kubectl-label", "operation": "Update", "fieldsV1": {"f:metadata": {}}},
                {"manager": "flux", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            ],
        }
    }
    target = sweep_build.observe_target(md)
    assert target == sweep_build.PromotionTarget(
        labels={"a": "b"}, spec_managers=frozenset({"mlops-operator", "flux"})
    )


def test_promotion_is_skipped_below_the_threshold() -> None:
    c = Cluster(body(maxTrials=1, parallelism=1, promote={"modelDeployment": "md", "threshold": 0.95}))
    c.reconcile()
    c.finish("s-trial-0", 0.9)
    plan = c.reconcile()
    assert plan.status.phase == "Succeeded" and plan.promote is None
    cond = plan.status.condition("Promoted")
    assert cond is not None and (cond.status, cond.reason) == ("False", "BelowThreshold")
    assert "does not clear the threshold 0.95" in cond.message
    assert ("Warning", "PromotionSkipped") in [e[:2] for e in plan.events]


def test_invalid_search_space_fails_before_any_trial() -> None:
    c = Cluster(body(searchSpace=[{"name": "max_dept", "type": "int", "low": 2, "high": 12}]))
    plan = c.reconcile()
    assert (
        plan.create_once == []
        and plan.status.phase == "Failed"
        and plan.status.reason == "InvalidSearchSpace"
    )
    assert "unknown parameter 'max_dept'" in (plan.status.message or "")
    assert "did you mean 'max_depth'" in (plan.status.message or "")
    c = Cluster(body(searchSpace=[{"name": "max_depth", "type": "int", "low": 0, "high": 12}]))
    plan = c.reconcile()
    assert plan.status.reason == "InvalidSearchSpace" and "searchSpace[max_depth]" in (
        plan.status.message or ""
    )
    c = Cluster(body(searchSpace=[{"name": "criterion", "type": "categorical", "values": ["gini", "nope"]}]))
    assert "nope" in (c.reconcile().status.message or "")
    c = Cluster(body(objective={"metric": "rmse"}))
    assert "rmse does not apply to classification" in (c.reconcile().status.message or "")


def test_grid_sweep_ends_when_the_space_is_exhausted() -> None:
    c = Cluster(
        body(
            algorithm={"name": "grid"},
            maxTrials=100,
            parallelism=4,
            searchSpace=[{"name": "max_depth", "type": "int", "low": 2, "high": 4}],
        )
    )
    c.reconcile()
    assert c.status.progress == "0/3"
    for name in c.unfinished():
        c.finish(name, 0.5)
    plan = c.reconcile()
    assert plan.status.phase == "Succeeded" and plan.status.reason == "SearchSpaceExhausted"
    assert sorted(
        json.loads(ch["metadata"]["annotations"][sweep_build.ANNOTATION_PARAMS])["max_depth"]
        for ch in c.children.values()
    ) == [2, 3, 4]


def test_multi_fidelity_trials_carry_their_budget_and_rung() -> None:
    c = Cluster(
        body(
            algorithm={
                "name": "successiveHalving",
                "budget": {"parameter": "n_estimators", "reductionFactor": 3},
            },
            searchSpace=[
                {"name": "max_depth", "type": "int", "low": 2, "high": 12},
                {"name": "n_estimators", "type": "int", "low": 10, "high": 90},
            ],
            parallelism=3,
            maxTrials=20,
        )
    )
    c.reconcile()
    first = c.children["s-trial-0"]
    assert first["spec"]["model"]["params"]["n_estimators"] == 10
    assert first["metadata"]["annotations"][sweep_build.ANNOTATION_BUDGET] == "10"
    assert "n_estimators" not in json.loads(first["metadata"]["annotations"][sweep_build.ANNOTATION_PARAMS])
    for name, value in (("s-trial-0", 0.7), ("s-trial-1", 0.9), ("s-trial-2", 0.8)):
        c.finish(name, value)
    plan = c.reconcile()
    promoted = plan.create_once[0]
    assert promoted["metadata"]["labels"][sweep_build.LABEL_TRIAL_RUNG] == "1"
    assert promoted["metadata"]["labels"][sweep_build.LABEL_TRIAL_CONFIG] == "1"
    assert promoted["spec"]["model"]["params"]["n_estimators"] == 30
    assert plan.status.best_trial is not None and plan.status.best_trial.params["n_estimators"] == 10
    assert plan.status.trials.pruned == 2


def test_trials_inherit_the_sweeps_kueue_queue() -> None:
    spec = body()
    spec["metadata"]["labels"] = {
        "kueue.x-k8s.io/queue-name": "team-a",
        "kueue.x-k8s.io/priority-class": "low",
        "team": "a",
    }
    plan = Cluster(spec).reconcile()
    assert {m["metadata"]["labels"].get("kueue.x-k8s.io/queue-name") for m in plan.create_once} == {"team-a"}
    assert {m["metadata"]["labels"].get("kueue.x-k8s.io/priority-class") for m in plan.create_once} == {"low"}
    assert not any("team" in m["metadata"]["labels"] for m in plan.create_once)
    assert "kueue.x-k8s.io/queue-name" not in Cluster(body()).reconcile().create_once[0]["metadata"]["labels"]


def test_template_output_gets_one_directory_per_trial() -> None:
    spec = body()
    spec["spec"]["trialTemplate"]["output"] = {"storageUri": "pvc://models/sweeps/s"}
    plan = Cluster(spec).reconcile()
    assert plan.create_once[0]["spec"]["output"] == {"storageUri": "pvc://models/sweeps/s/s-trial-0"}


def test_trials_being_deleted_are_not_counted_and_foreign_objects_ignored() -> None:
    c = Cluster(body(parallelism=2))
    c.reconcile()
    c.children["s-trial-0"]["metadata"]["deletionTimestamp"] = "2025-03-01T12:00:00Z"
    c.children["other"] = {"metadata": {"name": "other", "labels": {}}, "status": {"phase": "Running"}}
    plan = c.reconcile()
    assert [m["metadata"]["name"] for m in plan.create_once] == ["s-trial-2"]
    assert plan.status.trials.created == 3


SPACE_OF_ELEVEN = [
    {"name": "max_depth", "type": "int", "low": 2, "high": 32},
    {"name": "min_samples_split", "type": "int", "low": 2, "high": 20},
    {"name": "min_samples_leaf", "type": "int", "low": 1, "high": 20},
    {"name": "max_features", "type": "float", "low": 0.1, "high": 1.0},
    {"name": "criterion", "type": "categorical", "values": ["gini", "entropy", "log_loss"]},
    {"name": "bootstrap", "type": "categorical", "values": [True, False]},
    {"name": "class_weight", "type": "categorical", "values": [None, "balanced", "balanced_subsample"]},
    {"name": "max_leaf_nodes", "type": "int", "low": 10, "high": 10000, "log": True},
    {"name": "min_impurity_decrease", "type": "float", "low": 0.0, "high": 0.1},
    {"name": "ccp_alpha", "type": "float", "low": 0.0, "high": 0.05},
    {"name": "min_weight_fraction_leaf", "type": "float", "low": 0.0, "high": 0.4},
]


@pytest.mark.parametrize("algorithm", ["random", "tpe"])
def test_status_of_a_thousand_trial_sweep_stays_under_16_kib(algorithm: str) -> None:
    """Katib's trial list outgrew etcd (katib#1847); ours is counts, best and the last 5 failures."""
    rng = random.Random(0)
    spec = body(
        maxTrials=1000,
        parallelism=50,
        maxFailedTrials=1000,
        algorithm={"name": algorithm},
        searchSpace=SPACE_OF_ELEVEN,
        promote={"modelDeployment": "md"},
    )
    resource = sweep.HyperparameterSweep.from_body(spec)
    sampler = random.Random(1)
    children = []
    for i in range(1000):
        status: dict[str, Any] = (
            {"phase": "Failed", "reason": "OOMKilled", "message": "m" * 1024, "completionTime": f"t{i:05d}"}
            if i % 7 == 0
            else {
                "phase": "Succeeded",
                "objectiveValue": rng.random(),
                "objectiveMetric": "accuracy",
                "modelUri": "pvc://models/" + "p" * 1000,
                "completionTime": f"t{i:05d}",
            }
        )
        params = {p["name"]: sampler.random() if p["type"] == "float" else 7 for p in SPACE_OF_ELEVEN}
        children.append(
            {
                "metadata": {
                    "name": f"s-trial-{i}",
                    "labels": {sweep_build.LABEL_TRIAL_INDEX: str(i)},
                    "annotations": {sweep_build.ANNOTATION_PARAMS: json.dumps(params)},
                },
                "status": status,
            }
        )
    plan = rsweep.plan(resource, children=children, now=NOW)
    size = len(json.dumps(plan.status.to_api()))
    assert plan.status.trials.created == 1000 and plan.status.progress == "1000/1000"
    assert plan.status.trials.failed == 143 and plan.status.trials.succeeded == 857
    assert plan.status.phase == "Succeeded" and plan.promote is not None
    assert len(plan.status.last_failures) == sweep.MAX_FAILURES_KEPT
    assert size < 16 * 1024, size


def test_long_parameter_values_are_cut_in_status() -> None:
    observed = sweep_build.observe(
        [
            {
                "metadata": {
                    "name": "t-0",
                    "labels": {sweep_build.LABEL_TRIAL_INDEX: "0"},
                    "annotations": {sweep_build.ANNOTATION_PARAMS: json.dumps({"p": "y" * 5000})},
                },
                "status": {"phase": "Succeeded", "objectiveValue": 1.0},
            }
        ],
        metric="accuracy",
    )
    best = rsweep.best_trial(observed, None, "maximize", None, {})
    assert best is not None and len(best.params["p"]) == rsweep.MAX_PARAM_CHARS


def test_settled_sweeps_need_no_pass_until_their_spec_changes() -> None:
    c = Cluster(body(maxTrials=2, parallelism=2, promote={"modelDeployment": "md"}))
    c.reconcile()
    assert not rsweep.settled(sweep.HyperparameterSweep.from_body(c.body))  # running
    c.finish("s-trial-0", 0.8)
    c.finish("s-trial-1", 0.9)
    c.reconcile()
    assert c.status.phase == "Succeeded" and c.status.promotion is not None
    assert rsweep.settled(sweep.HyperparameterSweep.from_body(c.body))
    c.body["metadata"]["generation"] = 2  # maxTrials raised: the sweep must look again
    c.body["spec"]["maxTrials"] = 3
    assert not rsweep.settled(sweep.HyperparameterSweep.from_body(c.body))
    failed = body()
    failed["status"] = {"phase": "Failed", "reason": "ChildRejected", "observedGeneration": 1}
    assert not rsweep.settled(sweep.HyperparameterSweep.from_body(failed))  # retried, never settled


def test_status_round_trips_through_the_model() -> None:
    c = Cluster(body(objective={"metric": "accuracy", "goal": 0.99}, promote={"modelDeployment": "md"}))
    c.reconcile()
    c.finish("s-trial-0", 0.995)
    c.reconcile()
    assert sweep.HyperparameterSweep.from_body(c.body).status == c.status


def test_later_trials_train_on_the_first_trials_dataset_version_and_keep_the_output_connection() -> None:
    """A Dataset refreshed mid-sweep must not have trials compared on different data: once a trial
    pinned a version, the trials created afterwards name it in datasetRef.version."""
    s3 = {"endpoint": "http://10.244.1.1:26900", "secretRef": {"name": "mlops-s3"}}
    spec = body(parallelism=1, maxTrials=3)["spec"]
    spec["trialTemplate"]["output"] = {"storageUri": "s3://mlops-examples/sweeps/s", "s3": s3}
    c = Cluster(body(**spec))
    c.reconcile()
    [first] = c.unfinished()
    assert "version" not in c.children[first]["spec"]["datasetRef"]
    output = c.children[first]["spec"]["output"]
    assert output["storageUri"] == f"s3://mlops-examples/sweeps/s/{first}" and output["s3"]["secretRef"] == {
        "name": "mlops-s3"
    }
    c.finish(first, 0.9)
    c.children[first]["status"]["datasetDigest"] = "ab" * 32
    c.reconcile()
    [second] = c.unfinished()
    assert c.children[second]["spec"]["datasetRef"] == {
        "name": spec["trialTemplate"]["datasetRef"]["name"],
        "version": "ab" * 32,
    }


def _measured(c: Cluster, name: str, value: float, suggested: dict[str, Any], cores: float) -> None:
    """``name`` finished as a trial TrainingJob's status says: its use and the suggestion from it."""
    c.finish(name, value)
    c.children[name]["status"].update(
        resourcesUsed={"cpuCores": cores, "peakMemoryBytes": 150 * 2**20, "source": "cgroup2"},
        suggestedResources=suggested,
    )


AUTO_TEMPLATE = {
    "datasetRef": {"name": "iris"},
    "model": {"estimator": "RandomForestClassifier", "params": {"n_estimators": 20}},
    "resources": {"cpu": "500m", "memory": "512Mi", "memoryLimit": "200Mi", "auto": True},
}


def test_auto_resources_give_later_trials_the_largest_suggestion_of_the_finished_ones() -> None:
    c = Cluster(body(trialTemplate=AUTO_TEMPLATE, maxTrials=6, parallelism=3))
    first = c.reconcile()
    for m in first.create_once:  # nothing measured yet: the template's requests, without auto
        assert m["spec"]["resources"] == {"cpu": "500m", "memory": "512Mi", "memoryLimit": "200Mi", "gpu": 0}
        assert sweep_build.ANNOTATION_RESOURCES not in m["metadata"]["annotations"]
    assert c.status.rightsizing is None
    before = json.loads(json.dumps(c.children))
    _measured(c, "s-trial-0", 0.9, {"cpu": "300m", "memory": "256Mi", "gpu": 0}, 0.2)
    _measured(c, "s-trial-1", 0.8, {"cpu": "700m", "memory": "192Mi", "gpu": 0}, 0.55)
    later = c.reconcile()
    assert [m["metadata"]["name"] for m in later.create_once] == ["s-trial-3", "s-trial-4"]
    for m in later.create_once:
        # The largest of each; the memory limit below the new request is raised to it.
        assert m["spec"]["resources"] == {"cpu": "700m", "memory": "256Mi", "memoryLimit": "256Mi", "gpu": 0}
        given = json.loads(m["metadata"]["annotations"][sweep_build.ANNOTATION_RESOURCES])
        assert given == {"cpu": "700m", "memory": "256Mi", "gpu": 0}
    # The trials created before keep their spec (created once, never rewritten): no spec hash flips.
    for name, child in before.items():
        assert c.children[name]["spec"] == child["spec"]
    sized = c.status.rightsizing
    assert sized is not None and sized.to_api() == {
        "measuredTrials": 2,
        "used": {"cpuCores": 0.55, "peakMemoryBytes": 150 * 2**20, "source": "cgroup2"},
        "suggested": {"cpu": "700m", "memory": "256Mi", "gpu": 0},
        "autoTrials": 2,
        "autoResources": {"cpu": "700m", "memory": "256Mi", "gpu": 0},
    }
    # A restart (status lost) rebuilds the same figures from the trials alone.
    c.body.pop("status")
    assert c.reconcile().create_once == [] and c.status.rightsizing == sized


def test_without_auto_trials_keep_the_templates_requests_and_the_status_still_shows_the_use() -> None:
    template = {**AUTO_TEMPLATE, "resources": {"cpu": "500m", "memory": "512Mi"}}
    c = Cluster(body(trialTemplate=template, maxTrials=4, parallelism=2))
    c.reconcile()
    _measured(c, "s-trial-0", 0.9, {"cpu": "300m", "memory": "256Mi", "gpu": 0}, 0.2)
    later = c.reconcile().create_once
    assert later and later[0]["spec"]["resources"] == {"cpu": "500m", "memory": "512Mi", "gpu": 0}
    assert sweep_build.ANNOTATION_RESOURCES not in later[0]["metadata"]["annotations"]
    sized = c.status.rightsizing
    assert sized is not None and sized.measured_trials == 1 and sized.auto_trials == 0
    assert sized.suggested is not None and sized.suggested.cpu == "300m"


def test_auto_is_a_trial_template_field_only() -> None:
    resource = sweep.HyperparameterSweep.from_body(body(trialTemplate=AUTO_TEMPLATE))
    assert resource.spec.trial_template.resources.auto is True
    spec = sweep_build.trial_spec(resource, {"max_depth": 3}, "s-trial-0")
    assert "auto" not in spec.to_api()["resources"]  # a TrainingJob has no such field
    with pytest.raises(ValueError, match="auto"):
        trainingjob.TrainingJobSpec.model_validate(AUTO_TEMPLATE)
