"""Retraining of a ModelDeployment (``spec.retrain``), pure: triggers, one run's steps, the decision.

A run goes Refreshing → Training → Evaluating → Promoted | Rejected | Failed, one step per pass
at most, from what the handler read (the Model, the template's Dataset, the run's challenger,
its evaluation Job and pods, the review server's label count) and ``status.retrain``:

- Refreshing: every trigger but a new Dataset version first sets the Dataset's
  ``mlops.dev/refresh`` annotation to ``retrain/<deployment>/<run>`` and waits until the Dataset
  has acted on it (``status.lastRefreshRequest``) and finished that round;
- Training: the challenger ``<deployment>-challenger-<run>`` (a TrainingJob registering into the
  served Model, or a sweep promoting its best trial there under the alias ``challenger``) is
  created once; when it succeeded, the run waits for the Model to list the version it produced;
- Evaluating: the Job ``<deployment>-evaluate-<run>`` scores the champion (the version the
  alias names) and the challenger on the same rows (``mlops_workloads.evaluate``); its result
  decides: better by ``minImprovement`` → the alias annotation is applied to the Model as field
  manager ``mlops-retrain`` (Promoted; the deployment's canary then rolls it out); otherwise
  Rejected, with the numbers in the Event and the history either way.

Nothing is kept in memory: the names are deterministic and the state is ``status.retrain``, so
a pass after a crash finds the run's objects (a missing one is made again).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any, Literal

import pydantic

from mlops_operator.api import common
from mlops_operator.api import dataset as dataset_api
from mlops_operator.api import model as model_api
from mlops_operator.api import modeldeployment as api
from mlops_operator.api import retrain as retrain_api
from mlops_operator.api import sweep as sweep_api
from mlops_operator.api import trainingjob as tj_api
from mlops_operator.reconcile import jobs as rjobs
from mlops_operator.reconcile import modeldeployment_build as build
from mlops_operator.reconcile import modeldeployment_source as msource
from mlops_operator.reconcile import plan as rplan
from mlops_operator.reconcile import workload as rworkload

COMPONENT_CHALLENGER = "challenger"
COMPONENT_EVALUATE = "evaluate"
CONTAINER = "evaluate"
LABEL_RUN = "mlops.dev/retrain-run"
ANNOTATION_TRIGGER = "mlops.dev/retrain-trigger"
CHALLENGER_ALIAS = "challenger"
REFRESH_TIMEOUT_SECONDS = 3600
REGISTER_TIMEOUT_SECONDS = 600
EVALUATION_DEADLINE_SECONDS = 3600
EVALUATION_TTL_SECONDS = 86400
Kind = Literal["TrainingJob", "HyperparameterSweep"]


@dataclasses.dataclass
class Observed:
    """What the handler read for retraining (None: not found, or not read this pass)."""

    model: dict[str, Any] | None = None
    dataset: dict[str, Any] | None = None
    challenger: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    evaluation_pods: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    labelled_rows: int | None = None


@dataclasses.dataclass
class Step:
    """One pass's retraining decisions, merged into the deployment's plan."""

    status: retrain_api.RetrainStatus
    condition: tuple[str, str, str]  # (status, reason, message) of the Retraining condition
    create_once: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    patch: list[tuple[rplan.ChildRef, dict[str, Any]]] = dataclasses.field(default_factory=list)
    apply_as: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    delete: list[rplan.ChildRef] = dataclasses.field(default_factory=list)
    events: list[rplan.EventNote] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Template:
    """The policy's template, checked against its kind's schema."""

    kind: Kind
    spec: dict[str, Any]
    dataset: str


def challenger_name(md: api.ModelDeployment, run: int) -> str:
    return build.owner(md).child_name(COMPONENT_CHALLENGER, run)


def evaluation_name(md: api.ModelDeployment, run: int) -> str:
    return build.owner(md).child_name(COMPONENT_EVALUATE, run)


def model_name(md: api.ModelDeployment) -> str:
    ref = md.spec.model.model_ref
    assert ref is not None, "spec.retrain needs model.modelRef (admission checks it)"
    return ref.name


def alias(md: api.ModelDeployment) -> str:
    ref = md.spec.model.model_ref
    assert ref is not None
    return ref.effective_alias() or "champion"


def _error_text(exc: pydantic.ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc") or ())
    return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))


def template(md: api.ModelDeployment) -> Template:
    """The challenger's kind and spec (registering into the served Model); ValueError names the
    field of the template that its kind's schema refuses."""
    policy = md.spec.retrain
    assert policy is not None
    model = model_name(md)
    if policy.template.training_job is not None:
        spec = json.loads(json.dumps(policy.template.training_job))
        spec["registerAs"] = model
        ref = spec.get("datasetRef")
        if isinstance(ref, dict):
            ref.pop("version", None)  # a challenger trains on the latest version
        try:
            parsed = tj_api.TrainingJobSpec.model_validate(spec)
        except pydantic.ValidationError as exc:
            raise ValueError(f"spec.retrain.template.trainingJob.{_error_text(exc)}") from exc
        return Template("TrainingJob", spec, parsed.dataset_ref.name)
    spec = json.loads(json.dumps(policy.template.sweep or {}))
    spec["promote"] = {"model": model, "alias": CHALLENGER_ALIAS}
    trial = spec.get("trialTemplate")
    if isinstance(trial, dict) and isinstance(trial.get("datasetRef"), dict):
        trial["datasetRef"].pop("version", None)
    try:
        parsed_sweep = sweep_api.HyperparameterSweepSpec.model_validate(spec)
    except pydantic.ValidationError as exc:
        raise ValueError(f"spec.retrain.template.sweep.{_error_text(exc)}") from exc
    return Template("HyperparameterSweep", spec, parsed_sweep.trial_template.dataset_ref.name)


def dataset_name(md: api.ModelDeployment) -> str | None:
    """The Dataset the template trains on (None when the template is invalid)."""
    try:
        return template(md).dataset
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# Reading what the handler observed
# ---------------------------------------------------------------------------------------------


def _status_of(body: dict[str, Any] | None) -> dict[str, Any]:
    return dict((body or {}).get("status") or {})


def _versions(model: dict[str, Any] | None) -> list[model_api.ModelVersion]:
    out: list[model_api.ModelVersion] = []
    for raw in _status_of(model).get("versions") or []:
        try:
            out.append(model_api.ModelVersion.model_validate(raw))
        except pydantic.ValidationError:
            continue
    return out


def _dataset_status(dataset: dict[str, Any] | None) -> dataset_api.DatasetStatus | None:
    if dataset is None:
        return None
    try:
        return dataset_api.DatasetStatus.model_validate(_status_of(dataset))
    except pydantic.ValidationError:
        return None


def _dataset_s3(dataset: dict[str, Any] | None) -> common.S3Connection | None:
    raw = ((dataset or {}).get("spec") or {}).get("s3")
    try:
        return common.S3Connection.model_validate(raw) if raw else None
    except pydantic.ValidationError:
        return None


def _ready_digest(dataset: dict[str, Any] | None) -> str | None:
    status = _dataset_status(dataset)
    if status is None or status.phase != "Ready" or not status.digest:
        return None
    return status.digest


def _version_dir(dataset: dict[str, Any] | None, digest: str | None) -> str | None:
    """Where the Dataset keeps version ``digest`` (None: it no longer keeps it)."""
    status = _dataset_status(dataset)
    if status is None or not digest:
        return None
    for version in status.versions:
        if version.digest == digest and version.storage_uri:
            return version.storage_uri
    return status.storage_uri if status.digest == digest else None


def _registered(
    model: dict[str, Any] | None, kind: Kind, name: str, challenger: dict[str, Any] | None
) -> model_api.ModelVersion | None:
    """The version the run's challenger was registered as (its modelUri when it reported one)."""
    uri = _status_of(challenger).get("modelUri") if kind == "TrainingJob" else None
    for version in _versions(model):
        if version.source.kind != kind or version.source.name != name:
            continue
        if uri and version.model_uri and version.model_uri != uri:
            continue
        return version
    return None


def _finished(body: dict[str, Any] | None) -> tuple[str, str, str] | None:
    """(phase, reason, message) once a TrainingJob or sweep succeeded or failed."""
    status = _status_of(body)
    phase = status.get("phase")
    if phase not in ("Succeeded", "Failed"):
        return None
    reason = str(status.get("reason") or phase)
    message = str(status.get("message") or "")
    if not message:
        for cond in status.get("conditions") or []:
            if cond.get("type") in ("Failed", "Succeeded") and cond.get("status") == "True":
                message = str(cond.get("message") or "")
    return str(phase), reason, message


def _promotion_conflict(md: api.ModelDeployment, model: dict[str, Any] | None) -> str | None:
    """Why no run may start: the Model's own promotion rule moves the served alias (on a new
    version's validation score, before any evaluation: the challenger would take the alias at
    registration and then be scored against itself)."""
    rule = (((model or {}).get("spec") or {}).get("promotion")) or {}
    if not rule or (rule.get("alias") or "champion") != alias(md):
        return None
    return (
        f"Model {model_name(md)}'s spec.promotion moves alias {alias(md)!r} by itself on a version's "
        "validation score; remove it (or let it move another alias) so that only the evaluation "
        "of spec.retrain moves it"
    )


def _elapsed(since: str | None, now: datetime.datetime) -> float:
    start = common.parse_rfc3339(since)
    return 0.0 if start is None else (now - start).total_seconds()


# ---------------------------------------------------------------------------------------------
# Triggers
# ---------------------------------------------------------------------------------------------


def _request(md: api.ModelDeployment) -> str | None:
    value = md.metadata.annotations.get(retrain_api.RETRAIN_ANNOTATION)
    return value[: retrain_api.RETRAIN_REQUEST_MAX] if value else None


def _next_schedule(policy: retrain_api.RetrainPolicy, after: datetime.datetime) -> datetime.datetime | None:
    triggers = policy.triggers
    if triggers.schedule is None:
        return None
    refresh = dataset_api.Refresh(schedule=triggers.schedule, time_zone=triggers.time_zone)
    return refresh.next_after(after)


def _trigger(
    md: api.ModelDeployment,
    rs: retrain_api.RetrainStatus,
    observed: Observed,
    *,
    champion: model_api.ModelVersion | None,
    drift_detected: bool,
    now: datetime.datetime,
) -> tuple[retrain_api.Trigger, str] | None:
    """Why a run starts now (the first trigger that fires, the annotation first), or None."""
    policy = md.spec.retrain
    assert policy is not None
    request = _request(md)
    if request is not None and request != rs.last_request:
        return "Manual", f"{retrain_api.RETRAIN_ANNOTATION}={request}"
    if policy.suspend:
        return None
    if rs.last_run_time is not None and _elapsed(rs.last_run_time, now) < policy.cooldown_seconds:
        return None
    triggers = policy.triggers
    if triggers.drift and drift_detected:
        return "Drift", "the deployment's DriftDetected condition is True"
    if (
        triggers.labelled_rows is not None
        and observed.labelled_rows is not None
        and rs.labelled_rows is not None
    ):
        new = observed.labelled_rows - rs.labelled_rows
        if new >= triggers.labelled_rows:
            return "LabelledRows", f"{new} newly labelled rows (threshold {triggers.labelled_rows})"
    digest = _ready_digest(observed.dataset)
    if triggers.new_dataset_version and digest is not None:
        known = {rs.dataset_digest, champion.dataset_digest if champion else None}
        if digest not in known:
            return "NewDatasetVersion", f"Dataset version {digest[:12]} is new to the champion"
    due = common.parse_rfc3339(rs.next_schedule)
    if due is not None and due <= now:
        return "Schedule", f"scheduled for {rs.next_schedule} ({triggers.schedule})"
    return None


# ---------------------------------------------------------------------------------------------
# Children
# ---------------------------------------------------------------------------------------------


def challenger(md: api.ModelDeployment, chosen: Template, run: retrain_api.RetrainRun) -> dict[str, Any]:
    """The run's TrainingJob or sweep (owned by the deployment, not controlled by it)."""
    owner = build.owner(md)
    labels = owner.labels(COMPONENT_CHALLENGER)
    labels[LABEL_RUN] = str(run.run)
    return {
        "apiVersion": common.API_VERSION,
        "kind": chosen.kind,
        "metadata": {
            "name": challenger_name(md, run.run),
            "namespace": md.metadata.namespace,
            "labels": labels,
            "annotations": {ANNOTATION_TRIGGER: f"{run.trigger}: {run.trigger_message}"[:256]},
            "ownerReferences": [owner.reference(controller=False)],
        },
        "spec": chosen.spec,
    }


def _evaluation_volumes(
    uris: list[str], settings: rworkload.WorkloadSettings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Read-only volumes for the mounted (pvc://, file://) inputs, one per claim or path."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    seen: set[str] = set()
    for uri in uris:
        loc = common.StorageLocation.parse(uri)
        if loc.remote:
            continue
        key = f"pvc:{loc.claim}" if loc.scheme == "pvc" else f"file:{loc.path}"
        if key in seen:
            continue
        seen.add(key)
        volume, mount = rworkload.storage_volume(loc, settings, name=f"input-{len(seen) - 1}")
        volumes.append(volume)
        mounts.append({**mount, "readOnly": True})
    return volumes, mounts


def evaluation_job(
    md: api.ModelDeployment,
    config: retrain_api.EvaluateConfig,
    *,
    run: int,
    settings: rworkload.WorkloadSettings,
) -> dict[str, Any]:
    """The evaluation Job: ``python -m mlops_workloads.evaluate`` with its config in the pod spec."""
    policy = md.spec.retrain
    assert policy is not None
    uris = [config.dataset_uri, config.champion.uri, config.challenger.uri]
    if config.reviewed_uri:
        uris.append(config.reviewed_uri)
    volumes, mounts = _evaluation_volumes(uris, settings)
    secret_volumes, secret_mounts = rworkload.s3_secret_mounts(
        [config.dataset_s3, config.champion.s3, config.challenger.s3, config.reviewed_s3]
    )
    container = rworkload.batch_container(
        settings,
        name=CONTAINER,
        image=md.spec.image or settings.workload_image,
        command=["python", "-m", "mlops_workloads.evaluate"],
        mounts=[*mounts, *secret_mounts],
        resources=policy.evaluation.resources.to_requirements(gpu_resource=settings.gpu_resource),
        config_json=json.dumps(config.to_api(), sort_keys=True, separators=(",", ":")),
    )
    node_selector, tolerations = rworkload.placement(settings)
    return rworkload.job(
        build.owner(md),
        settings,
        name=evaluation_name(md, run),
        component=COMPONENT_EVALUATE,
        config_map=None,
        container=container,
        volumes=[*volumes, *secret_volumes],
        backoff_limit=1,
        active_deadline_seconds=EVALUATION_DEADLINE_SECONDS,
        labels={LABEL_RUN: str(run)},
        node_selector=node_selector,
        tolerations=tolerations,
        spec_extra={"ttlSecondsAfterFinished": EVALUATION_TTL_SECONDS},
    )


def alias_move(md: api.ModelDeployment, version: int) -> dict[str, Any]:
    """The Model's alias annotation, applied as ``mlops-retrain`` (only this field is sent)."""
    return {
        "apiVersion": common.API_VERSION,
        "kind": "Model",
        "metadata": {
            "name": model_name(md),
            "namespace": md.metadata.namespace,
            "annotations": {model_api.ALIAS_ANNOTATION_PREFIX + alias(md): str(version)},
        },
    }


def _reviewed(md: api.ModelDeployment) -> tuple[str | None, common.S3Connection | None]:
    policy = md.spec.retrain
    logging = md.spec.logging
    if policy is None or not policy.evaluation.include_reviewed or logging is None:
        return None, None
    uri = logging.root_uri(md.metadata.namespace, md.metadata.name)
    return uri, logging.s3 if common.StorageLocation.parse(uri).remote else None


# ---------------------------------------------------------------------------------------------
# The decision
# ---------------------------------------------------------------------------------------------


def _scores(raw: Any) -> retrain_api.EvaluationScores | None:
    if not isinstance(raw, dict):
        return None
    try:
        return retrain_api.EvaluationScores.model_validate(
            {k: raw.get(k) for k in ("rows", "champion", "challenger") if raw.get(k) is not None}
        )
    except pydantic.ValidationError:
        return None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def decide(
    md: api.ModelDeployment, run: retrain_api.RetrainRun, result: dict[str, Any]
) -> retrain_api.RetrainRun:
    """The run with the evaluation's numbers and its verdict (Promoted or Rejected)."""
    policy = md.spec.retrain
    assert policy is not None
    metric = str(result.get("metric") or policy.evaluation.metric or "")
    direction = policy.evaluation.effective_direction(metric)
    test, reviewed, overall = (_scores(result.get(k)) for k in ("test", "reviewed", "overall"))
    judged = overall or test
    run = run.model_copy(
        update={
            "metric": metric or None,
            "direction": direction,
            "test": test,
            "reviewed": reviewed,
            "overall": overall,
        }
    )
    margin = policy.evaluation.min_improvement
    parts = [f"{metric} on {judged.rows if judged else 0} held-out rows"]
    if test is not None:
        parts.append(
            f"test {test.rows} rows: champion {_fmt(test.champion)}, challenger {_fmt(test.challenger)}"
        )
    if reviewed is not None:
        parts.append(
            f"reviewed {reviewed.rows} rows: champion {_fmt(reviewed.champion)}, "
            f"challenger {_fmt(reviewed.challenger)}"
        )
    if judged is None or judged.champion is None or judged.challenger is None:
        message = f"the evaluation gave no comparable {metric or 'metric'} ({'; '.join(parts)})"
        return run.model_copy(
            update={"phase": "Rejected", "reason": "NotComparable", "message": message[:1024]}
        )
    gain = judged.challenger - judged.champion
    if direction == "minimize":
        gain = -gain
    needed = f"> {margin:g}" if margin == 0 else f"≥ {margin:g}"
    summary = (
        f"v{run.challenger_version} vs champion v{run.champion_version}: {metric} "
        f"{_fmt(judged.challenger)} vs {_fmt(judged.champion)} ({gain:+.4g}, {direction}, needed {needed})"
    )
    wins = gain > 0 if margin == 0 else gain >= margin - 1e-12
    message = f"{summary}; {'; '.join(parts[1:])}" if len(parts) > 1 else summary
    if wins:
        return run.model_copy(
            update={"phase": "Promoted", "reason": "BeatChampion", "message": message[:1024]}
        )
    return run.model_copy(
        update={"phase": "Rejected", "reason": "DidNotBeatChampion", "message": message[:1024]}
    )


# ---------------------------------------------------------------------------------------------
# One pass
# ---------------------------------------------------------------------------------------------


def _finish(
    md: api.ModelDeployment,
    rs: retrain_api.RetrainStatus,
    run: retrain_api.RetrainRun,
    now: datetime.datetime,
) -> tuple[retrain_api.RetrainStatus, list[rplan.ChildRef]]:
    """Move the run into the history (newest first, bounded); the challengers of the runs that
    fall off it are deleted (their Model versions stay)."""
    policy = md.spec.retrain
    assert policy is not None
    done = run.model_copy(update={"finished": common.rfc3339(now)})
    history = [done, *[h for h in rs.history if h.run != done.run]]
    kept, dropped = history[: policy.history_limit], history[policy.history_limit :]
    delete = [
        rplan.ChildRef(common.API_VERSION, h.challenger_kind, h.challenger)
        for h in dropped
        if h.challenger and h.challenger_kind
    ]
    digest = done.dataset_digest or rs.dataset_digest
    return rs.model_copy(update={"current": None, "history": kept, "dataset_digest": digest}), delete


def _failed(run: retrain_api.RetrainRun, reason: str, message: str) -> retrain_api.RetrainRun:
    return run.model_copy(update={"phase": "Failed", "reason": reason, "message": message[:1024]})


def _rollout(md: api.ModelDeployment, run: retrain_api.RetrainRun) -> str | None:
    """The canary's verdict on a promoted run's version, as the deployment's status has it."""
    status = md.status
    canary = status.canary
    if canary is not None and canary.model_version == run.challenger_version:
        return {"Promoted": "Promoted", "RolledBack": "RolledBack"}.get(canary.state, "Progressing")
    if status.served_model_version == run.challenger_version:
        return "Serving"
    return run.rollout


def step(
    md: api.ModelDeployment,
    observed: Observed,
    *,
    drift_detected: bool,
    now: datetime.datetime,
    settings: rworkload.WorkloadSettings,
) -> Step:
    policy = md.spec.retrain
    assert policy is not None
    rs = (md.status.retrain or retrain_api.RetrainStatus()).model_copy(deep=True)
    if observed.labelled_rows is not None and rs.labelled_rows is None:
        rs.labelled_rows = observed.labelled_rows  # labels given before the policy do not count
    if policy.triggers.schedule is None:
        rs.next_schedule = None
    elif rs.next_schedule is None:
        nxt = _next_schedule(policy, now)
        rs.next_schedule = common.rfc3339(nxt) if nxt is not None else None
    if rs.history and rs.history[0].phase == "Promoted":
        rs.history[0].rollout = _rollout(md, rs.history[0])
    try:
        chosen = template(md)
    except ValueError as exc:
        return Step(status=rs, condition=("False", "InvalidTemplate", str(exc)[:1024]))
    conflict = _promotion_conflict(md, observed.model)
    if conflict is not None:
        return Step(status=rs, condition=("False", "ConflictingPromotionRule", conflict))
    champion = msource.resolve(md.spec.model, {("Model", model_name(md)): observed.model})
    champion_record = next((v for v in _versions(observed.model) if v.version == champion.version), None)
    out = Step(status=rs, condition=("False", "Idle", "no run is going on"))
    if rs.current is None:
        found = _trigger(md, rs, observed, champion=champion_record, drift_detected=drift_detected, now=now)
        if found is None:
            last = rs.history[0] if rs.history else None
            if policy.suspend:
                out.condition = ("False", "Suspended", "spec.retrain.suspend is true")
            elif last is not None:
                out.condition = ("False", last.phase, f"run {last.run}: {last.message}"[:1024])
            return out
        if champion.version is None:
            out.condition = ("False", "NoChampion", f"waiting to start a run: {champion.message}"[:1024])
            return out
        trigger, why = found
        number = rs.runs + 1
        run = retrain_api.RetrainRun(
            run=number,
            trigger=trigger,
            trigger_message=why[:512],
            phase="Training",
            started=common.rfc3339(now),
            challenger=challenger_name(md, number),
            challenger_kind=chosen.kind,
            champion_version=champion.version,
        )
        rs.runs = number
        rs.last_run_time = run.started
        if observed.labelled_rows is not None:
            rs.labelled_rows = observed.labelled_rows
        if trigger == "Manual":
            rs.last_request = _request(md)
        nxt = _next_schedule(policy, now)
        rs.next_schedule = common.rfc3339(nxt) if nxt is not None else None
        if trigger != "NewDatasetVersion":
            token = f"retrain/{md.metadata.name}/{number}"[: retrain_api.RETRAIN_REQUEST_MAX]
            run = run.model_copy(update={"phase": "Refreshing", "refresh_request": token})
            out.patch.append(
                (
                    rplan.ChildRef(common.API_VERSION, "Dataset", chosen.dataset),
                    {"metadata": {"annotations": {dataset_api.REFRESH_ANNOTATION: token}}},
                )
            )
        out.events.append(
            rplan.EventNote.normal(
                "RetrainingStarted",
                f"run {number} ({trigger}: {why}); "
                + (
                    f"refreshing Dataset {chosen.dataset} first"
                    if run.phase == "Refreshing"
                    else f"training {run.challenger}"
                ),
            )
        )
        rs.current = run
        if run.phase == "Refreshing":  # the Dataset has not seen the request yet
            out.status = rs
            out.condition = ("True", "Refreshing", f"run {number}: refreshing Dataset {chosen.dataset}")
            return out
    run = rs.current
    assert run is not None
    run = _advance(md, run, observed, chosen=chosen, champion=champion, out=out, now=now, settings=settings)
    if run.finished_run:
        rs, delete = _finish(md, rs, run, now)
        out.delete += delete
        kind = "Normal" if run.phase == "Promoted" else "Warning"
        reason = {"Promoted": "ChallengerPromoted", "Rejected": "ChallengerRejected"}.get(
            run.phase, "RetrainingFailed"
        )
        out.events.append(rplan.EventNote(kind, reason, f"run {run.run}: {run.message}"[:1024]))
        out.condition = ("False", run.phase, f"run {run.run}: {run.message}"[:1024])
    else:
        rs.current = run
        out.condition = ("True", run.phase, f"run {run.run}: {run.message}"[:1024])
    out.status = rs
    return out


def _advance(
    md: api.ModelDeployment,
    run: retrain_api.RetrainRun,
    observed: Observed,
    *,
    chosen: Template,
    champion: msource.Resolved,
    out: Step,
    now: datetime.datetime,
    settings: rworkload.WorkloadSettings,
) -> retrain_api.RetrainRun:
    """Take the run as far as this pass's observations allow (at most to its verdict)."""
    if run.phase == "Refreshing":
        run = _refreshing(run, observed, dataset=chosen.dataset, now=now)
        if run.phase != "Training":
            return run
    if run.phase == "Training":
        run = _training(md, run, observed, chosen=chosen, out=out, now=now)
        if run.phase != "Evaluating":
            return run
    if run.phase == "Evaluating":
        run = _evaluating(md, run, observed, champion=champion, out=out, settings=settings)
    return run


def _refreshing(
    run: retrain_api.RetrainRun, observed: Observed, *, dataset: str, now: datetime.datetime
) -> retrain_api.RetrainRun:
    if observed.dataset is None:
        return _failed(run, "DatasetNotFound", f"Dataset {dataset} does not exist")
    status = _dataset_status(observed.dataset)
    annotations = ((observed.dataset.get("metadata") or {}).get("annotations")) or {}
    token = run.refresh_request
    ours = annotations.get(dataset_api.REFRESH_ANNOTATION) == token
    acted = status is not None and status.last_refresh_request == token
    done = status is not None and status.completion_time is not None and status.phase in ("Ready", "Failed")
    if done and (acted or not ours):  # (another request replaced ours: its round is as fresh)
        assert status is not None
        if status.phase == "Failed" or status.reason == "RefreshFailed":
            return _failed(
                run, "DatasetRefreshFailed", f"Dataset {dataset}: {status.reason}: {status.message or ''}"
            )
        return run.model_copy(
            update={
                "phase": "Training",
                "reason": "Training",
                "message": f"Dataset {dataset} refreshed (version {(status.digest or '')[:12]})",
            }
        )
    if _elapsed(run.started, now) > REFRESH_TIMEOUT_SECONDS:
        return _failed(
            run,
            "DatasetRefreshTimedOut",
            f"Dataset {dataset} did not finish a refresh in {REFRESH_TIMEOUT_SECONDS} s",
        )
    return run.model_copy(
        update={"reason": "Refreshing", "message": f"waiting for Dataset {dataset} to re-read its sources"}
    )


def _training(
    md: api.ModelDeployment,
    run: retrain_api.RetrainRun,
    observed: Observed,
    *,
    chosen: Template,
    out: Step,
    now: datetime.datetime,
) -> retrain_api.RetrainRun:
    name = run.challenger or challenger_name(md, run.run)
    kind: Kind = run.challenger_kind or chosen.kind
    if observed.challenger is None:
        out.create_once.append(challenger(md, chosen, run))
        return run.model_copy(
            update={
                "reason": "Training",
                "message": f"{kind} {name} created; training the challenger",
                "dataset_digest": run.dataset_digest or _ready_digest(observed.dataset),
            }
        )
    finished = _finished(observed.challenger)
    if finished is None:
        return run.model_copy(update={"reason": "Training", "message": f"{kind} {name} is training"})
    phase, reason, message = finished
    if phase == "Failed":
        return _failed(run, "TrainingFailed", f"{kind} {name} failed ({reason}): {message}")
    version = _registered(observed.model, kind, name, observed.challenger)
    if version is None:
        completed = _status_of(observed.challenger).get("completionTime")
        if _elapsed(str(completed) if completed else None, now) > REGISTER_TIMEOUT_SECONDS:
            return _failed(
                run, "NotRegistered", f"Model {model_name(md)} lists no version from {kind} {name}"
            )
        return run.model_copy(
            update={
                "reason": "Registering",
                "message": f"waiting for Model {model_name(md)} to register {name}",
            }
        )
    return run.model_copy(
        update={
            "phase": "Evaluating",
            "reason": "Evaluating",
            "message": f"challenger registered as v{version.version}",
            "challenger_version": version.version,
            "dataset_digest": version.dataset_digest or run.dataset_digest,
        }
    )


def _evaluating(
    md: api.ModelDeployment,
    run: retrain_api.RetrainRun,
    observed: Observed,
    *,
    champion: msource.Resolved,
    out: Step,
    settings: rworkload.WorkloadSettings,
) -> retrain_api.RetrainRun:
    if champion.version is None or champion.uri is None:
        return _failed(run, "NoChampion", champion.message)
    if run.champion_version != champion.version and observed.evaluation is None:
        run = run.model_copy(update={"champion_version": champion.version})  # moved before evaluating
    if observed.evaluation is None:
        version = next((v for v in _versions(observed.model) if v.version == run.challenger_version), None)
        if version is None or not version.model_uri:
            return _failed(
                run, "ChallengerNotFound", f"Model {model_name(md)} lists no v{run.challenger_version}"
            )
        data = _version_dir(observed.dataset, run.dataset_digest)
        if data is None:
            return _failed(
                run,
                "DatasetVersionNotFound",
                f"the Dataset no longer keeps version {(run.dataset_digest or '?')[:12]} the challenger was "
                "trained on (raise spec.retention.keepVersions)",
            )
        reviewed_uri, reviewed_s3 = _reviewed(md)
        config = retrain_api.EvaluateConfig(
            dataset_uri=data,
            dataset_s3=_dataset_s3(observed.dataset) if common.StorageLocation.parse(data).remote else None,
            champion=retrain_api.EvaluatedModel(uri=champion.uri, s3=champion.s3, version=champion.version),
            challenger=retrain_api.EvaluatedModel(
                uri=version.model_uri, s3=version.model_s3, version=version.version
            ),
            metric=md.spec.retrain.evaluation.metric if md.spec.retrain else None,
            reviewed_uri=reviewed_uri,
            reviewed_s3=reviewed_s3,
            pvc_root=settings.pvc_root,
        )
        out.create_once.append(evaluation_job(md, config, run=run.run, settings=settings))
        return run.model_copy(
            update={
                "reason": "Evaluating",
                "message": f"scoring v{version.version} against champion v{champion.version} with Job "
                f"{evaluation_name(md, run.run)}",
            }
        )
    outcome = rjobs.job_outcome(observed.evaluation, observed.evaluation_pods)
    if outcome.state == "Failed":
        return _failed(run, outcome.reason or "EvaluationFailed", f"evaluation failed: {outcome.message}")
    if outcome.state != "Succeeded":
        return run.model_copy(update={"message": f"evaluation {outcome.state.lower()}: {outcome.message}"})
    result = outcome.result or {}
    if not result.get("ok", False):
        return _failed(
            run, str(result.get("reason") or "EvaluationFailed"), str(result.get("message") or "no result")
        )
    decided = decide(md, run, result)
    if decided.phase == "Promoted":
        if champion.version != run.champion_version:
            return decided.model_copy(
                update={
                    "phase": "Rejected",
                    "reason": "ChampionMoved",
                    "message": (
                        f"the alias moved to v{champion.version} during the evaluation; {decided.message}"
                    )[:1024],
                }
            )
        assert decided.challenger_version is not None
        out.apply_as.append((retrain_api.FIELD_MANAGER, alias_move(md, decided.challenger_version)))
    return decided
