"""ModelDeployment reconcile, pure: (resource, observed children and metrics, now) → plan.

The handler reads the model source (TrainingJob / sweep), the serving Deployments, their
pods and each ready pod's parsed ``/metrics``; this module decides everything:
- which model each track serves: a source that is not ready yet never takes down what is
  already served (the last served URI stays until the new one resolves);
- how many pods: fixed ``replicas``, the KPA decision (``autoscale.decide``) or an HPA;
- the canary's share (replica weighting behind one Service) and its rollback verdict, on both
  tracks' requests over the rollback policy's sliding window (``Observed.pod_history``);
- drift: the ``DriftDetected`` condition and an optional retraining TrainingJob;
- the review server of the captured rows (``spec.logging.review``, ``modeldeployment_review``);
- retraining (``spec.retrain``, ``modeldeployment_retrain``): a challenger trained, scored
  against the champion and promoted by moving the alias only when it wins;
- the status (phase, URL, ready/desired, served URI and digest, conditions) and Events.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from mlops_operator.api import common
from mlops_operator.api import modeldeployment as api
from mlops_operator.api import retrain as retrain_api
from mlops_operator.reconcile import jobs as rjobs
from mlops_operator.reconcile import modeldeployment_activator as mactivator
from mlops_operator.reconcile import modeldeployment_autoscale as autoscale
from mlops_operator.reconcile import modeldeployment_build as build
from mlops_operator.reconcile import modeldeployment_canary as mcanary
from mlops_operator.reconcile import modeldeployment_metrics as mmetrics
from mlops_operator.reconcile import modeldeployment_retrain as mretrain
from mlops_operator.reconcile import modeldeployment_review as review
from mlops_operator.reconcile import modeldeployment_source as msource
from mlops_operator.reconcile import plan as rplan
from mlops_operator.reconcile import workload as rworkload


@dataclasses.dataclass
class Observed:
    """What the handler read. ``sources`` maps ("TrainingJob" | "HyperparameterSweep", name) to the body.

    ``pod_metrics`` is each scraped pod's latest scrape by track (drift, digests).
    ``pod_history`` is, by track, each scraped pod's recent scrapes (oldest first, ending with
    that latest one) for the canary verdict's window; a track missing there is judged on
    ``pod_metrics`` alone, i.e. on each pod's counters whole.
    """

    sources: dict[tuple[str, str], dict[str, Any] | None] = dataclasses.field(default_factory=dict)
    deployments: dict[str, dict[str, Any] | None] = dataclasses.field(default_factory=dict)
    pod_metrics: dict[str, list[mmetrics.PodMetrics]] = dataclasses.field(default_factory=dict)
    pod_history: dict[str, list[tuple[mmetrics.PodMetrics, ...]]] = dataclasses.field(default_factory=dict)
    pods: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # serving pods, both tracks
    load_sample: float | None = None
    retrain_job: dict[str, Any] | None = None
    retrain: mretrain.Observed = dataclasses.field(default_factory=mretrain.Observed)  # spec.retrain
    activator_ready: bool = False  # autoscaling.minReplicas 0: an activator pod is ready
    activator: mactivator.Metrics | None = None  # its scraped /metrics
    private_service_ip: str | None = None  # autoscaling.minReplicas 0: the activator's upstream


Plan = rplan.Plan[api.ModelDeploymentStatus]

# Resolution lives in modeldeployment_source; these names stay here for the handler and tests.
Resolved = msource.Resolved
resolve = msource.resolve
source_refs = msource.source_refs


def _ready(deployment: dict[str, Any] | None) -> int:
    return int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0)


def _rolled_out(deployment: dict[str, Any] | None, want: int | None) -> bool:
    if deployment is None:
        return False
    meta = deployment.get("metadata") or {}
    status = deployment.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return False
    replicas = want if want is not None else int((deployment.get("spec") or {}).get("replicas") or 0)
    return (
        int(status.get("updatedReplicas") or 0) >= replicas
        and int(status.get("replicas") or 0) <= replicas
        and _ready(deployment) >= replicas
    )


def _total_replicas(
    md: api.ModelDeployment, observed: Observed, now: datetime.datetime
) -> tuple[int | None, api.ScaleDecision | None, api.AutoscalerState | None]:
    """(pods for all tracks or None for an HPA, the decision, the KPA state)."""
    if md.spec.stage == "archived":
        return (
            0,
            api.ScaleDecision(
                desired=0, reason="Archived", message="stage is archived", time=common.rfc3339(now)
            ),
            None,
        )
    scaling = md.spec.autoscaling
    if scaling is None:
        count = 1 if md.spec.replicas is None else md.spec.replicas
        return (
            count,
            api.ScaleDecision(
                desired=count, reason="Fixed", message="spec.replicas", time=common.rfc3339(now)
            ),
            None,
        )
    if scaling.autoscaler == "hpa":
        return None, None, None
    ready = sum(_ready(d) for d in observed.deployments.values())
    previous = md.status.last_scale.desired if md.status.last_scale else None
    current = previous if previous is not None else max(1, scaling.min_replicas)  # start with a pod
    stamp = now.timestamp()
    samples = [] if observed.load_sample is None else [api.AutoscalerSample(t=stamp, v=observed.load_sample)]
    decision = autoscale.decide(
        current=current,
        ready=ready or current,
        policy=autoscale.Policy.of(scaling),
        state=md.status.autoscaler,
        new_samples=samples,
        now=stamp,
    )
    keep_time = (
        md.status.last_scale is not None
        and md.status.last_scale.desired == decision.desired
        and md.status.last_scale.reason == decision.reason
    )
    when = md.status.last_scale.time if keep_time and md.status.last_scale else common.rfc3339(now)
    return (
        decision.desired,
        api.ScaleDecision(
            desired=decision.desired, reason=decision.reason, message=decision.message[:1024], time=when
        ),
        decision.state,
    )


def plan(
    md: api.ModelDeployment,
    *,
    observed: Observed,
    now: datetime.datetime,
    settings: rworkload.WorkloadSettings,
) -> Plan:
    spec = md.spec
    generation = md.metadata.generation
    old = md.status
    events: list[rplan.EventNote] = []
    apply: list[dict[str, Any]] = []
    delete: list[rplan.ChildRef] = []
    status = old.model_copy(deep=True)
    status.observed_generation = generation
    status.stage = spec.stage
    status.url = build.url(md)

    stable = resolve(spec.model, observed.sources)
    stable_uri = stable.uri or old.served_model_uri
    if stable_uri is None:
        status.phase = "Failed" if stable.failed else "Pending"
        status = status.with_progress(
            "Stalled" if stable.failed else "InProgress",
            ready=False,
            reason=stable.reason,
            message=stable.message,
            now=now,
            generation=generation,
        )
        status = status.with_condition(
            "Progressing",
            "False" if stable.failed else "True",
            reason=stable.reason,
            message=stable.message,
            now=now,
            generation=generation,
        )
        status.ready = "0/0"
        if old.phase != status.phase:
            events.append(
                rplan.EventNote("Warning" if stable.failed else "Normal", stable.reason, stable.message)
            )
        return Plan(apply=[], delete=[], status=status, events=events)

    total, scale, kpa_state = _total_replicas(md, observed, now)
    status.autoscaler = kpa_state
    if scale is not None:
        if old.last_scale is not None and old.last_scale.desired != scale.desired:
            verb = "ScaledUp" if scale.desired > old.last_scale.desired else "ScaledDown"
            events.append(
                rplan.EventNote(
                    "Normal",
                    verb,
                    f"{old.last_scale.desired} → {scale.desired} pods ({scale.reason}): {scale.message}"[
                        :1024
                    ],
                )
            )
        status.last_scale = scale

    # Scale to zero (autoscaling.minReplicas 0): where the Service points; pods drain first.
    zero: mactivator.Step | None = None
    if mactivator.enabled(md) and total is not None:
        zero = mactivator.step(
            total=total,
            ready=sum(_ready(d) for d in observed.deployments.values()),
            activator_ready=observed.activator_ready,
            metrics=observed.activator,
            old=old.scale_to_zero,
            now=now,
        )
        total = zero.total
        status.scale_to_zero = zero.status
        events.extend(zero.events)
    else:
        status.scale_to_zero = None

    # Which model each track serves; the canary's verdict.
    stable_dep = observed.deployments.get("stable")
    tracks = mcanary.decide(
        md,
        stable=stable,
        canary_source=(
            resolve(spec.canary.model, observed.sources) if spec.canary and spec.canary.model else None
        ),
        pod_metrics=observed.pod_metrics,
        pod_history=observed.pod_history,
        stable_serving=build.model_uri_of(stable_dep) if _rolled_out(stable_dep, None) else None,
        now=now,
    )
    events.extend(tracks.events)
    stable_uri = tracks.stable_uri or stable_uri
    canary_uri, canary_s3, canary_status = tracks.canary_uri, tracks.canary_s3, tracks.canary
    status.canary = canary_status

    # Children.
    hpa = spec.autoscaling is not None and spec.autoscaling.autoscaler == "hpa" and spec.stage != "archived"
    if total is None:
        stable_pods: int | None = None
        canary_pods = 1 if canary_uri else 0
    else:
        percent = spec.canary.traffic_percent if spec.canary else 0
        stable_pods, canary_pods = build.split_replicas(total, percent, canary=canary_uri is not None)
    service = build.service(md)
    if zero is not None:
        service = mactivator.route(service, md, to_activator=zero.to_activator)
        apply.append(mactivator.private_service(md))
        if observed.private_service_ip:  # the activator connects to it by IP: no cluster DNS needed
            apply.append(mactivator.deployment(md, upstream=observed.private_service_ip, settings=settings))
    elif old.scale_to_zero is not None:  # minReplicas is no longer 0: the activator goes
        delete.extend(mactivator.children(md))
    apply.append(service)
    apply.append(
        build.deployment(
            md,
            track="stable",
            model_uri=stable_uri,
            model_s3=tracks.stable_s3,
            replicas=stable_pods,
            settings=settings,
        )
    )
    if canary_uri is not None:
        apply.append(
            build.deployment(
                md,
                track="canary",
                model_uri=canary_uri,
                model_s3=canary_s3,
                replicas=canary_pods,
                settings=settings,
            )
        )
    elif observed.deployments.get("canary") is not None:
        delete.append(rplan.ChildRef("apps/v1", "Deployment", build.deployment_name(md, "canary")))
    want_pdb = (total or 0) > 1 or (
        hpa and spec.autoscaling is not None and spec.autoscaling.min_replicas > 1
    )
    pdb_name = build.owner(md).child_name("pdb")
    if want_pdb:
        apply.append(build.pod_disruption_budget(md))
    else:
        delete.append(rplan.ChildRef("policy/v1", "PodDisruptionBudget", pdb_name))
    if hpa:
        apply.append(build.horizontal_pod_autoscaler(md))
    elif spec.autoscaling is not None or old.last_scale is None or old.last_scale.reason != "Fixed":
        delete.append(
            rplan.ChildRef("autoscaling/v2", "HorizontalPodAutoscaler", build.owner(md).child_name("hpa"))
        )
    if review.enabled(md):  # spec.logging.review: the page where people label the captured rows
        apply.extend([review.service(md), review.deployment(md, settings=settings)])
        status.review = api.ReviewStatus(url=review.url(md))
    elif old.review is not None:  # turned off (or logging removed): its children go
        delete.extend(review.children(md))
        status.review = None

    # Replicas and rollout state.
    canary_dep = observed.deployments.get("canary")
    ready_total = _ready(stable_dep) + (_ready(canary_dep) if canary_uri else 0)
    desired_total = (
        stable_pods
        if stable_pods is not None
        else int(((stable_dep or {}).get("spec") or {}).get("replicas") or 0)
    ) + canary_pods
    status.ready_replicas = ready_total
    status.desired_replicas = desired_total
    status.ready = f"{ready_total}/{desired_total}"
    if canary_status is not None:
        canary_status.replicas = canary_pods
        canary_status.traffic_percent = round(100 * canary_pods / desired_total, 1) if desired_total else 0.0
    if stable.uri is not None or spec.model.model_ref is None:
        if (
            tracks.stable_version is not None
            and old.served_model_version is not None
            and tracks.stable_version != old.served_model_version
        ):
            what = stable.message if tracks.stable_uri == stable.uri else f"version {tracks.stable_version}"
            events.append(
                rplan.EventNote(
                    "Normal",
                    "ModelVersionChanged",
                    f"rolling out {what or stable_uri} (was version {old.served_model_version})",
                )
            )
        status.served_model_version = tracks.stable_version
    status.served_model_uri = stable_uri
    remote = common.StorageLocation.parse(stable_uri).remote
    status.served_model_s3 = tracks.stable_s3 if remote else None
    digests = {p.digest for p in observed.pod_metrics.get("stable", []) if p.digest}
    if len(digests) == 1:
        status.model_digest = digests.pop()
    rolled_out = _rolled_out(stable_dep, stable_pods) and (
        canary_uri is None or _rolled_out(canary_dep, canary_pods)
    )
    stale_uri = stable.uri is None  # serving the previous model while the new source resolves
    if spec.stage == "archived":
        phase, reason, message = "Archived", "Archived", "stage is archived; scaled to zero"
    elif desired_total == 0 and total is not None:
        phase, reason = "ScaledToZero", "ScaledToZero"
        message = (
            "idle, scaled to zero: the activator holds requests while a pod starts"
            if zero is not None and zero.status.activator_ready
            else "spec.replicas is 0"
        )
    elif _ready(stable_dep) == 0 and (stable_pods or 0) > 0:
        phase, reason, message = "Pending", "NoReadyPods", "waiting for a serving pod to load the model"
    elif not rolled_out:
        phase, reason, message = "Progressing", "RollingOut", f"{ready_total}/{desired_total} pods ready"
    else:
        phase, reason, message = "Ready", "Serving", f"serving {stable_uri}"
    refusal = model_refusal(observed.pods) if phase != "Archived" else None
    if refusal is not None:
        phase, reason, message = "Failed", refusal[0], refusal[1]
    if stale_uri and phase != "Archived":
        message = f"{message}; new model not ready: {stable.message}"
    serving = (_ready(stable_dep) > 0 or phase == "Ready") and phase not in {"Archived", "ScaledToZero"}
    if zero is not None and zero.status.activator_ready and refusal is None:
        serving = True  # at zero or starting, the activator holds requests until a pod answers
    progressing = (
        phase in {"Progressing", "Pending"}
        or stale_uri
        or (canary_status is not None and canary_status.state == "Progressing")
    )
    # GitOps tools: Stalled when what the spec asks cannot be reached without a change to it (the
    # canary was rolled back, the new model's source failed), even while the stable model serves.
    rolled_back = canary_status is not None and canary_status.state == "RolledBack"
    stalled = rolled_back or (stale_uri and stable.failed) or refusal is not None
    # Reconciling / Stalled name what the rollout waits on: the new model's source when it lags.
    stall_reason, stall_message = (stable.reason if stale_uri else reason), message
    if rolled_back and canary_status is not None:
        stall_reason, stall_message = "CanaryRolledBack", f"{message}; canary: {canary_status.message}"
    status = status.with_progress(
        "Stalled" if stalled else "InProgress" if progressing else "Current",
        ready=serving,
        reason=stall_reason,
        message=stall_message,
        now=now,
        generation=generation,
    )
    # Ready says whether the service answers, and why, whatever the rollout waits on.
    status = status.with_condition(
        "Ready",
        "True" if serving else "False",
        reason=reason,
        message=message,
        now=now,
        generation=generation,
    )
    status = status.with_condition(
        "Progressing",
        "True" if progressing else "False",
        reason=reason if not stale_uri else stable.reason,
        message=message,
        now=now,
        generation=generation,
    )
    status.phase = phase
    if old.phase != phase:
        events.append(
            rplan.EventNote(
                "Warning" if refusal else "Normal", phase if not refusal else reason, message[:1024]
            )
        )
    if refusal is not None or status.condition("Failed") is not None:
        failed: common.ConditionStatus = "True" if refusal is not None else "False"
        status = status.with_condition(
            "Failed", failed, reason=reason, message=message, now=now, generation=generation
        )

    # Drift.
    status = _drift(md, observed, status=status, apply=apply, events=events, now=now)
    if spec.retrain is None:
        # Turned off: the condition goes (it would describe a policy that is not there); the
        # history stays in status.retrain for people to read.
        status.conditions = [c for c in status.conditions if c.type != retrain_api.CONDITION]
        return Plan(
            apply=apply, delete=delete, status=status, events=events, wake_at=zero.wake_at if zero else None
        )

    # Retraining (spec.retrain): its run's next step; serving above never waits on it.
    step = mretrain.step(
        md, observed.retrain, drift_detected=status.is_true("DriftDetected"), now=now, settings=settings
    )
    status.retrain = step.status
    cond_status, cond_reason, cond_message = step.condition
    status = status.with_condition(
        retrain_api.CONDITION,
        "True" if cond_status == "True" else "False",
        reason=cond_reason,
        message=cond_message,
        now=now,
        generation=generation,
    )
    return Plan(
        apply=apply,
        delete=[*delete, *step.delete],
        status=status,
        events=[*events, *step.events],
        create_once=step.create_once,
        patch=step.patch,
        apply_as=step.apply_as,
        wake_at=zero.wake_at if zero else None,
    )


MODEL_REFUSED_REASONS = frozenset({"UntrustedModel"})
"""Serving failures no restart can heal: the server refused the model file and never served."""


def model_refusal(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(reason, message) when a stable-track serving container exited refusing its model file.

    The serve workload writes ``{ok: false, reason, error}`` to its termination message and
    exits before it binds its port; the kubelet keeps it in ``lastState`` while the pod sits
    in CrashLoopBackOff, so the reason is there to read on every pass.
    """
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if labels.get(build.LABEL_TRACK, "stable") != "stable":
            continue
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            for state in (cs.get("state") or {}, cs.get("lastState") or {}):
                term = state.get("terminated") or {}
                detail = rjobs.parse_result(term.get("message")) or {}
                if detail.get("ok") is False and detail.get("reason") in MODEL_REFUSED_REASONS:
                    return str(detail["reason"]), str(detail.get("error") or detail["reason"])[:1024]
    return None


def _drift(
    md: api.ModelDeployment,
    observed: Observed,
    *,
    status: api.ModelDeploymentStatus,
    apply: list[dict[str, Any]],
    events: list[rplan.EventNote],
    now: datetime.datetime,
) -> api.ModelDeploymentStatus:
    policy = md.spec.drift
    score, feature, rows = mmetrics.drift_summary(
        observed.pod_metrics.get("stable", []), min_rows=policy.min_rows
    )
    drift = (status.drift or api.DriftStatus()).model_copy()
    drift.rows = rows
    if score is not None:
        drift.score = round(score, 6)
        drift.feature = feature
    was = status.is_true("DriftDetected")
    generation = md.metadata.generation
    if score is None:
        if status.condition("DriftDetected") is None:
            status = status.with_condition(
                "DriftDetected",
                "Unknown",
                reason="NotEnoughRows",
                message=f"fewer than {policy.min_rows} rows in the window",
                now=now,
                generation=generation,
            )
        status.drift = drift
        return status
    if score > policy.threshold:
        message = f"PSI of {feature} is {score:.3f} (threshold {policy.threshold}) over {rows} rows"
        status = status.with_condition(
            "DriftDetected",
            "True",
            reason="DriftOverThreshold",
            message=message,
            now=now,
            generation=generation,
        )
        if not was:
            events.append(rplan.EventNote("Warning", "DriftDetected", message))
        if policy.retrain is not None:
            last = drift.last_retrain_time
            last_time = common.parse_rfc3339(last)
            if last is not None and last_time is None:  # as before: a bad timestamp fails the pass
                raise ValueError(f"status.drift.lastRetrainTime is not a timestamp: {last!r}")
            cooled = last_time is None or (now - last_time).total_seconds() >= policy.retrain.cooldown_seconds
            if cooled:
                index = drift.retrains + 1
                job = build.retrain_job(md, index=index, reason=message)
                apply.append(job)
                drift.retrains = index
                drift.last_retrain_time = common.rfc3339(now)
                drift.last_retrain_job = job["metadata"]["name"]
                events.append(
                    rplan.EventNote(
                        "Normal", "RetrainingStarted", f"created TrainingJob {job['metadata']['name']}"
                    )
                )
    else:
        status = status.with_condition(
            "DriftDetected",
            "False",
            reason="WithinThreshold",
            message=f"largest PSI {score:.3f} ({feature}) ≤ {policy.threshold}",
            now=now,
            generation=generation,
        )
        if was:
            events.append(rplan.EventNote("Normal", "DriftCleared", f"largest PSI back to {score:.3f}"))
    status.drift = drift
    return status
