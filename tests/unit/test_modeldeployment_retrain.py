"""Retraining (spec.retrain), pure: triggers, a run's steps, its children and the decision."""

from __future__ import annotations

import datetime
import json
import typing
from typing import Any

import pytest

from mlops_operator.api import estimators
from mlops_operator.api import modeldeployment as api
from mlops_operator.api import retrain as retrain_api
from mlops_operator.reconcile import modeldeployment as rmd
from mlops_operator.reconcile import modeldeployment_retrain as mretrain
from mlops_operator.reconcile import workload as rworkload

NOW = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
SETTINGS = rworkload.WorkloadSettings(workload_image="mlops-workloads:test")
V1 = "pvc://models/iris/aaaa"
V2 = "pvc://models/iris/bbbb"
D1 = "1" * 64
D2 = "2" * 64

TEMPLATE = {
    "datasetRef": {"name": "iris-feedback", "version": D1[:12]},
    "model": {"estimator": "LogisticRegression", "params": {"max_iter": 500}},
}


def spec(**retrain: Any) -> dict[str, Any]:
    policy: dict[str, Any] = {"template": {"trainingJob": TEMPLATE}, **retrain}
    return {
        "model": {"modelRef": {"name": "iris"}},
        "canary": {"trafficPercent": 20},
        "logging": {"storageUri": "pvc://capture/rows", "review": {"enabled": True}},
        "retrain": policy,
    }


def deployment(
    spec_: dict[str, Any], status: dict[str, Any] | None = None, annotations: dict[str, str] | None = None
) -> api.ModelDeployment:
    return api.ModelDeployment.from_body(
        {
            "metadata": {
                "name": "iris",
                "namespace": "ml",
                "uid": "u-1",
                "generation": 2,
                "annotations": annotations or {},
            },
            "spec": spec_,
            "status": status or {"servedModelUri": V1, "servedModelVersion": 1, "phase": "Ready"},
        }
    )


def model(champion: int = 1, versions: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    base = [
        {
            "version": 1,
            "modelUri": V1,
            "source": {"kind": "TrainingJob", "name": "iris-train"},
            "datasetDigest": D1,
        },
        *versions,
    ]
    return {
        "metadata": {"name": "iris", "namespace": "ml"},
        "status": {"aliases": [{"name": "champion", "version": champion}], "versions": base[::-1]},
    }


def dataset(
    digest: str = D1,
    *,
    request: str | None = None,
    acted: str | None = None,
    completed: bool = True,
    reason: str = "Prepared",
    phase: str = "Ready",
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "iris-feedback",
            "annotations": {"mlops.dev/refresh": request} if request else {},
        },
        "spec": {},
        "status": {
            "phase": phase,
            "reason": reason,
            "digest": digest,
            "storageUri": f"pvc://data/iris/{digest[:12]}",
            "versions": [{"digest": digest, "storageUri": f"pvc://data/iris/{digest[:12]}"}],
            "lastRefreshRequest": acted,
            "completionTime": "2026-01-01T11:00:00Z" if completed else None,
        },
    }


def challenger_done(name: str = "iris-challenger-1", phase: str = "Succeeded") -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {
            "phase": phase,
            "modelUri": V2,
            "reason": "Failed" if phase == "Failed" else "Completed",
            "message": "the trainer crashed" if phase == "Failed" else "",
            "completionTime": "2026-01-01T12:00:00Z",
        },
    }


V2_RECORD = {
    "version": 2,
    "modelUri": V2,
    "source": {"kind": "TrainingJob", "name": "iris-challenger-1"},
    "datasetDigest": D2,
}


def evaluation(
    result: dict[str, Any] | None, *, failed: bool = False
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    job = {
        "metadata": {"name": "iris-evaluate-1"},
        "status": {"conditions": [{"type": "Failed" if failed else "Complete", "status": "True"}]},
    }
    term: dict[str, Any] = {"exitCode": 3 if failed else 0}
    if result is not None:
        term["message"] = json.dumps(result)
    pods = [
        {
            "metadata": {"name": "iris-evaluate-1-x", "creationTimestamp": "2026-01-01T12:00:00Z"},
            "status": {
                "phase": "Failed" if failed else "Succeeded",
                "containerStatuses": [{"name": "evaluate", "state": {"terminated": term}}],
            },
        }
    ]
    return job, pods


def result(champion: float, challenger: float, *, metric: str = "accuracy") -> dict[str, Any]:
    return {
        "ok": True,
        "metric": metric,
        "test": {"rows": 30, "champion": champion, "challenger": challenger},
        "reviewed": {"rows": 12, "excluded": 3, "champion": 0.5, "challenger": 0.9},
        "overall": {"rows": 42, "champion": champion, "challenger": challenger},
    }


def step(
    md: api.ModelDeployment, *, drift: bool = False, now: datetime.datetime = NOW, **observed: Any
) -> mretrain.Step:
    return mretrain.step(md, mretrain.Observed(**observed), drift_detected=drift, now=now, settings=SETTINGS)


def after(
    md: api.ModelDeployment, out: mretrain.Step, annotations: dict[str, str] | None = None
) -> api.ModelDeployment:
    status = md.status.to_api()
    status["retrain"] = out.status.to_api()
    return deployment(
        md.spec.to_api(), status, annotations if annotations is not None else md.metadata.annotations
    )


def test_evaluation_metrics_are_the_builtin_ones() -> None:
    assert set(typing.get_args(retrain_api.EvaluationMetric)) == set(
        estimators.CLASSIFICATION_METRICS + estimators.REGRESSION_METRICS
    )


def test_spec_rules_need_an_alias_and_review_for_labelled_rows() -> None:
    bad = spec()
    bad["model"] = {"modelRef": {"name": "iris", "version": 3}}
    with pytest.raises(ValueError, match="alias"):
        api.ModelDeploymentSpec.model_validate(bad)
    labels = spec(triggers={"labelledRows": 5})
    labels["logging"] = {"storageUri": "pvc://capture/rows"}
    with pytest.raises(ValueError, match="review"):
        api.ModelDeploymentSpec.model_validate(labels)
    both = spec()
    both["drift"] = {"retrain": {"spec": TEMPLATE}}
    with pytest.raises(ValueError, match=r"drift\.retrain"):
        api.ModelDeploymentSpec.model_validate(both)
    with pytest.raises(ValueError, match="exactly one"):
        api.ModelDeploymentSpec.model_validate(spec(template={"trainingJob": TEMPLATE, "sweep": {}}))
    with pytest.raises(ValueError, match=r"cron|schedule"):
        api.ModelDeploymentSpec.model_validate(spec(triggers={"schedule": "every day"}))


def test_invalid_template_names_the_field_and_starts_nothing() -> None:
    bad = spec(template={"trainingJob": {"datasetRef": {"name": "d"}, "model": {"estimator": "nope.Nope"}}})
    out = step(deployment(bad, annotations={"mlops.dev/retrain": "now"}), model=model(), dataset=dataset())
    assert out.condition[1] == "InvalidTemplate"
    assert "spec.retrain.template.trainingJob.model" in out.condition[2]
    assert out.status.current is None and not out.create_once and not out.patch


def test_idle_without_a_trigger() -> None:
    out = step(deployment(spec()), model=model(), dataset=dataset(D1), labelled_rows=0)
    assert out.status.current is None and out.status.runs == 0
    assert out.condition == ("False", "Idle", "no run is going on")
    assert out.status.labelled_rows == 0  # the baseline: labels given before the policy do not count


def test_manual_run_promotes_a_better_challenger_step_by_step() -> None:
    md = deployment(spec(), annotations={"mlops.dev/retrain": "2026-01-01"})
    # 1. The annotation starts run 1: the Dataset is refreshed first.
    out = step(md, model=model(), dataset=dataset(D1))
    run = out.status.current
    assert run is not None and run.phase == "Refreshing" and run.trigger == "Manual"
    assert out.status.last_request == "2026-01-01" and out.status.runs == 1
    assert out.patch == [
        (
            mretrain.rplan.ChildRef("mlops.dev/v1alpha1", "Dataset", "iris-feedback"),
            {"metadata": {"annotations": {"mlops.dev/refresh": "retrain/iris/1"}}},
        )
    ]
    assert out.events[0][:2] == ("Normal", "RetrainingStarted")
    md = after(md, out)
    # 2. The Dataset has not acted on it yet (its previous round finished): still waiting.
    out = step(md, model=model(), dataset=dataset(D1, request="retrain/iris/1"))
    assert out.status.current is not None and out.status.current.phase == "Refreshing"
    # ... nor while its round runs.
    out = step(
        md,
        model=model(),
        dataset=dataset(D1, request="retrain/iris/1", acted="retrain/iris/1", completed=False),
    )
    assert out.status.current is not None and out.status.current.phase == "Refreshing"
    # 3. Refreshed into version D2: the challenger TrainingJob is created, registering into the Model.
    out = step(md, model=model(), dataset=dataset(D2, request="retrain/iris/1", acted="retrain/iris/1"))
    run = out.status.current
    assert run is not None and run.phase == "Training" and run.dataset_digest == D2
    (tj,) = out.create_once
    assert tj["kind"] == "TrainingJob" and tj["metadata"]["name"] == "iris-challenger-1"
    assert tj["spec"]["registerAs"] == "iris"
    assert tj["spec"]["datasetRef"] == {"name": "iris-feedback"}  # a pinned version is dropped
    assert tj["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert out.condition[0] == "True"
    md = after(md, out)
    # 4. Training ...
    running = {"metadata": {"name": "iris-challenger-1"}, "status": {"phase": "Running"}}
    out = step(md, model=model(), dataset=dataset(D2), challenger=running)
    assert out.status.current is not None and out.status.current.phase == "Training" and not out.create_once
    # ... done, but the Model has not registered it yet.
    out = step(md, model=model(), dataset=dataset(D2), challenger=challenger_done())
    assert out.status.current is not None and out.status.current.reason == "Registering"
    # 5. Registered as v2: the evaluation Job scores v2 against the champion v1.
    out = step(md, model=model(versions=(V2_RECORD,)), dataset=dataset(D2), challenger=challenger_done())
    run = out.status.current
    assert run is not None and run.phase == "Evaluating" and run.challenger_version == 2
    (job,) = out.create_once
    assert job["kind"] == "Job" and job["metadata"]["name"] == "iris-evaluate-1"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "mlops_workloads.evaluate"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    config = retrain_api.EvaluateConfig.model_validate(json.loads(env["MLOPS_CONFIG"]))
    assert "MLOPS_CONFIG_FILE" not in env
    assert config.champion.uri == V1 and config.champion.version == 1
    assert config.challenger.uri == V2 and config.challenger.version == 2
    assert config.dataset_uri == f"pvc://data/iris/{D2[:12]}"
    assert config.reviewed_uri == "pvc://capture/rows/ml/iris"
    claims = sorted(
        v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v
    )
    assert claims == ["capture", "data", "models"]  # one volume per claim, read-only
    assert all(m.get("readOnly") for m in container["volumeMounts"] if m["name"].startswith("input-"))
    assert not any("configMap" in v for v in pod["volumes"])
    assert job["spec"]["ttlSecondsAfterFinished"] == mretrain.EVALUATION_TTL_SECONDS
    md = after(md, out)
    # 6. It wins: the alias moves, as field manager mlops-retrain.
    job_body, pods = evaluation(result(0.80, 0.93))
    out = step(
        md,
        model=model(versions=(V2_RECORD,)),
        dataset=dataset(D2),
        challenger=challenger_done(),
        evaluation=job_body,
        evaluation_pods=pods,
    )
    assert out.status.current is None
    (done,) = out.status.history
    assert done.phase == "Promoted" and done.reason == "BeatChampion"
    assert done.overall is not None and done.overall.challenger == 0.93 and done.overall.rows == 42
    assert done.reviewed is not None and done.reviewed.rows == 12
    assert out.apply_as == [
        (
            "mlops-retrain",
            {
                "apiVersion": "mlops.dev/v1alpha1",
                "kind": "Model",
                "metadata": {
                    "name": "iris",
                    "namespace": "ml",
                    "annotations": {"alias.mlops.dev/champion": "2"},
                },
            },
        )
    ]
    (event,) = [e for e in out.events if e.reason == "ChallengerPromoted"]
    assert "0.93" in event.message and "0.8" in event.message and "v2 vs champion v1" in event.message
    assert out.status.dataset_digest == D2
    assert out.condition[:2] == ("False", "Promoted")
    # 7. The canary's verdict on v2 lands in the run.
    status = md.status.to_api()
    status["retrain"] = out.status.to_api()
    status["canary"] = {"state": "Progressing", "modelVersion": 2}
    out = step(deployment(md.spec.to_api(), status, md.metadata.annotations), model=model(2, (V2_RECORD,)))
    assert out.status.history[0].rollout == "Progressing"
    assert out.status.current is None  # the same annotation value starts no second run


def _to_evaluation(md: api.ModelDeployment) -> api.ModelDeployment:
    """A deployment whose run 1 is evaluating v2 against v1."""
    run = retrain_api.RetrainRun(
        run=1,
        trigger="NewDatasetVersion",
        phase="Evaluating",
        started="2026-01-01T11:00:00Z",
        challenger="iris-challenger-1",
        challenger_kind="TrainingJob",
        challenger_version=2,
        champion_version=1,
        dataset_digest=D2,
    )
    status = md.status.to_api()
    status["retrain"] = retrain_api.RetrainStatus(runs=1, current=run, last_run_time=run.started).to_api()
    return deployment(md.spec.to_api(), status)


def test_worse_challenger_is_registered_but_not_promoted() -> None:
    md = _to_evaluation(deployment(spec(evaluation={"minImprovement": 0.02})))
    job_body, pods = evaluation(result(0.90, 0.91))
    out = step(
        md, model=model(versions=(V2_RECORD,)), dataset=dataset(D2), evaluation=job_body, evaluation_pods=pods
    )
    (done,) = out.status.history
    assert done.phase == "Rejected" and done.reason == "DidNotBeatChampion"
    assert not out.apply_as
    (event,) = [e for e in out.events if e.reason == "ChallengerRejected"]
    assert event.type == "Warning"
    assert "0.91 vs 0.9" in event.message and "needed ≥ 0.02" in event.message


def test_minimize_metric_and_ties() -> None:
    md = _to_evaluation(deployment(spec(evaluation={"metric": "log_loss"})))
    job_body, pods = evaluation(result(0.40, 0.30, metric="log_loss"))
    out = step(
        md, model=model(versions=(V2_RECORD,)), dataset=dataset(D2), evaluation=job_body, evaluation_pods=pods
    )
    assert out.status.history[0].phase == "Promoted" and out.status.history[0].direction == "minimize"
    job_body, pods = evaluation(result(0.9, 0.9))
    out = step(
        _to_evaluation(deployment(spec())),
        model=model(versions=(V2_RECORD,)),
        evaluation=job_body,
        evaluation_pods=pods,
    )
    assert out.status.history[0].phase == "Rejected"  # a tie is no improvement


def test_champion_moved_during_the_evaluation_is_not_overridden() -> None:
    md = _to_evaluation(deployment(spec()))
    job_body, pods = evaluation(result(0.5, 0.9))
    v3 = {**V2_RECORD, "version": 3, "source": {"kind": "TrainingJob", "name": "other"}}
    out = step(md, model=model(3, (V2_RECORD, v3)), evaluation=job_body, evaluation_pods=pods)
    assert out.status.history[0].reason == "ChampionMoved" and not out.apply_as


def test_failures_end_the_run_with_a_reason() -> None:
    md = _to_evaluation(deployment(spec()))
    job_body, pods = evaluation(
        {"ok": False, "reason": "NothingToEvaluate", "message": "no rows"}, failed=True
    )
    out = step(
        md, model=model(versions=(V2_RECORD,)), dataset=dataset(D2), evaluation=job_body, evaluation_pods=pods
    )
    assert out.status.history[0].phase == "Failed"
    assert out.status.history[0].reason == "NothingToEvaluate"
    assert [e.reason for e in out.events] == ["RetrainingFailed"]
    # A failed challenger.
    status = md.status.to_api()
    status["retrain"]["current"]["phase"] = "Training"
    training = deployment(md.spec.to_api(), status)
    out = step(training, model=model(), dataset=dataset(D2), challenger=challenger_done(phase="Failed"))
    assert out.status.history[0].reason == "TrainingFailed"
    assert "the trainer crashed" in out.status.history[0].message
    # A refresh that failed.
    status["retrain"]["current"].update(phase="Refreshing", refreshRequest="retrain/iris/1")
    refreshing = deployment(md.spec.to_api(), status)
    failed = dataset(D1, request="retrain/iris/1", acted="retrain/iris/1", reason="RefreshFailed")
    out = step(refreshing, model=model(), dataset=failed)
    assert out.status.history[0].reason == "DatasetRefreshFailed"


def test_new_dataset_version_trains_without_a_refresh_and_only_once() -> None:
    md = deployment(spec())
    out = step(md, model=model(), dataset=dataset(D1))  # the champion's own version: nothing new
    assert out.status.current is None
    out = step(md, model=model(), dataset=dataset(D2))
    run = out.status.current
    assert run is not None and run.trigger == "NewDatasetVersion" and run.phase == "Training"
    assert not out.patch and len(out.create_once) == 1
    # Once a run trained on D2, D2 is no longer new (after the cooldown too).
    finished = out.status.model_copy(
        update={"current": None, "dataset_digest": D2, "last_run_time": "2026-01-01T00:00:00Z"}
    )
    status = md.status.to_api()
    status["retrain"] = finished.to_api()
    out = step(deployment(md.spec.to_api(), status), model=model(), dataset=dataset(D2))
    assert out.status.current is None


def test_cooldown_holds_triggers_but_not_the_annotation() -> None:
    status = {
        "servedModelUri": V1,
        "servedModelVersion": 1,
        "retrain": {"runs": 1, "lastRunTime": "2026-01-01T11:55:00Z", "datasetDigest": D1},
    }
    md = deployment(spec(triggers={"drift": True}, cooldownSeconds=600), status)
    assert step(md, drift=True, model=model(), dataset=dataset(D2)).status.current is None
    later = NOW + datetime.timedelta(minutes=6)
    out = step(md, drift=True, model=model(), dataset=dataset(D2), now=later)
    assert out.status.current is not None and out.status.current.trigger == "Drift"
    manual = deployment(md.spec.to_api(), status, {"mlops.dev/retrain": "x"})
    out = step(manual, model=model(), dataset=dataset(D1))
    assert out.status.current is not None and out.status.current.trigger == "Manual"


def test_labelled_rows_count_from_the_baseline() -> None:
    md = deployment(spec(triggers={"labelledRows": 10, "newDatasetVersion": False}))
    out = step(md, model=model(), dataset=dataset(D2), labelled_rows=4)
    assert out.status.labelled_rows == 4 and out.status.current is None
    md = after(md, out)
    assert step(md, model=model(), dataset=dataset(D2), labelled_rows=13).status.current is None
    out = step(md, model=model(), dataset=dataset(D2), labelled_rows=14)
    run = out.status.current
    assert run is not None and run.trigger == "LabelledRows" and run.phase == "Refreshing"
    assert "10 newly labelled rows" in run.trigger_message
    assert out.status.labelled_rows == 14


def test_schedule_starts_a_run_when_due() -> None:
    md = deployment(spec(triggers={"schedule": "0 * * * *", "newDatasetVersion": False}))
    out = step(md, model=model(), dataset=dataset(D1))
    assert out.status.next_schedule == "2026-01-01T13:00:00Z" and out.status.current is None
    md = after(md, out)
    out = step(md, model=model(), dataset=dataset(D1), now=NOW + datetime.timedelta(hours=1, seconds=5))
    assert out.status.current is not None and out.status.current.trigger == "Schedule"
    assert out.status.next_schedule == "2026-01-01T14:00:00Z"


def test_no_run_without_a_champion() -> None:
    md = deployment(spec(), annotations={"mlops.dev/retrain": "now"})
    empty = {"metadata": {"name": "iris"}, "status": {}}
    out = step(md, model=empty, dataset=dataset(D2))
    assert out.status.current is None and out.condition[1] == "NoChampion"
    assert out.status.last_request is None  # the request waits for a champion


def test_history_is_bounded_and_old_challengers_go() -> None:
    old = [
        retrain_api.RetrainRun(
            run=n,
            trigger="Manual",
            phase="Rejected",
            challenger=f"iris-challenger-{n}",
            challenger_kind="TrainingJob",
        )
        for n in (3, 2, 1)
    ]
    md = _to_evaluation(deployment(spec(historyLimit=3)))
    status = md.status.to_api()
    status["retrain"]["history"] = [h.to_api() for h in old]
    status["retrain"]["current"]["run"] = 4
    md = deployment(md.spec.to_api(), status)
    job_body, pods = evaluation(result(0.9, 0.8))
    out = step(md, model=model(versions=(V2_RECORD,)), evaluation=job_body, evaluation_pods=pods)
    assert [h.run for h in out.status.history] == [4, 3, 2]
    assert out.delete == [mretrain.rplan.ChildRef("mlops.dev/v1alpha1", "TrainingJob", "iris-challenger-1")]


def test_sweep_template_promotes_its_best_trial_as_challenger() -> None:
    sweep = {
        "trialTemplate": TEMPLATE,
        "searchSpace": [{"name": "C", "type": "float", "low": 0.01, "high": 10, "log": True}],
        "objective": {"metric": "accuracy"},
        "algorithm": {"name": "random"},
        "maxTrials": 4,
    }
    md = deployment(spec(template={"sweep": sweep}), annotations={"mlops.dev/retrain": "1"})
    out = step(md, model=model(), dataset=dataset(D2))
    md = after(md, out)
    out = step(md, model=model(), dataset=dataset(D2, request="retrain/iris/1", acted="retrain/iris/1"))
    (created,) = out.create_once
    assert created["kind"] == "HyperparameterSweep"
    assert created["spec"]["promote"] == {"model": "iris", "alias": "challenger"}
    md = after(md, out)
    record = {
        **V2_RECORD,
        "source": {"kind": "HyperparameterSweep", "name": "iris-challenger-1", "trial": "t-3"},
    }
    done = {"metadata": {"name": "iris-challenger-1"}, "status": {"phase": "Succeeded"}}
    out = step(md, model=model(versions=(record,)), dataset=dataset(D2), challenger=done)
    assert out.status.current is not None and out.status.current.phase == "Evaluating"
    assert out.status.current.challenger_version == 2


def test_plan_carries_the_retraining_step() -> None:
    md = deployment(spec(), annotations={"mlops.dev/retrain": "go"})
    observed = rmd.Observed(
        sources={("Model", "iris"): model()},
        retrain=mretrain.Observed(model=model(), dataset=dataset(D1)),
    )
    plan = rmd.plan(md, observed=observed, now=NOW, settings=SETTINGS)
    assert plan.status.retrain is not None and plan.status.retrain.current is not None
    cond = plan.status.condition("Retraining")
    assert cond is not None and cond.status == "True" and cond.reason == "Refreshing"
    assert plan.patch and plan.patch[0][0].kind == "Dataset"
    assert any(e.reason == "RetrainingStarted" for e in plan.events)
    # Without spec.retrain nothing of it appears.
    plain = rmd.plan(
        deployment({"model": {"modelRef": {"name": "iris"}}}), observed=observed, now=NOW, settings=SETTINGS
    )
    assert plain.status.retrain is None and not plain.patch and plain.status.condition("Retraining") is None


def test_turning_retraining_off_drops_its_condition_and_keeps_the_history() -> None:
    md = deployment(spec(), annotations={"mlops.dev/retrain": "go"})
    observed = rmd.Observed(
        sources={("Model", "iris"): model()}, retrain=mretrain.Observed(model=model(), dataset=dataset(D1))
    )
    on = rmd.plan(md, observed=observed, now=NOW, settings=SETTINGS).status
    assert on.condition("Retraining") is not None
    plain = {k: v for k, v in spec().items() if k != "retrain"}
    off = rmd.plan(deployment(plain, on.to_api()), observed=observed, now=NOW, settings=SETTINGS).status
    assert off.condition("Retraining") is None and off.retrain is not None and off.retrain.runs == 1


def test_a_model_promotion_rule_on_the_served_alias_blocks_runs() -> None:
    ruled = {**model(), "spec": {"promotion": {"alias": "champion", "metric": "accuracy"}}}
    md = deployment(spec(), annotations={"mlops.dev/retrain": "now"})
    out = step(md, model=ruled, dataset=dataset(D2))
    assert out.condition[1] == "ConflictingPromotionRule" and "spec.promotion" in out.condition[2]
    assert out.status.current is None and not out.patch
    other = {**model(), "spec": {"promotion": {"alias": "staging", "metric": "accuracy"}}}
    assert step(md, model=other, dataset=dataset(D2)).status.current is not None
