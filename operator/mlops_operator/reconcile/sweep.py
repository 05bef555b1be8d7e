"""HyperparameterSweep, pure: (sweep, its observed trial TrainingJobs, now) -> what to do and the status.

The sweep remembers nothing between passes: every pass rebuilds the algorithm's history from
the trials (``sweep_build.observe``), asks ``search`` for as many trials as free slots allow,
and summarises the trials in a status that stays small whatever their number: counts, best
trial, last few failures, the largest measured use and suggestion (``rightsizing``), never
the list (katib#1847). With ``trialTemplate.resources.auto`` new trials get that suggestion.

Terminal states: ``Failed`` when more than ``maxFailedTrials`` trials failed or the search
space is invalid (before any trial); ``Succeeded`` when the goal is reached, ``maxTrials`` trials
finished or the space is exhausted. Goal and failure are final (unfinished trials are then
stopped); "maxTrials reached" is not: raising ``maxTrials`` resumes the sweep, as Katib does.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

from mlops_operator import search
from mlops_operator.api import common, sweep
from mlops_operator.reconcile import plan as rplan
from mlops_operator.reconcile import sweep_build
from mlops_operator.search import trials

STICKY_REASONS = ("GoalReached", "TooManyFailedTrials")
MAX_PARAM_CHARS = 128


@dataclasses.dataclass(frozen=True)
class PendingPromotion:
    """A promotion this pass decided on, before the handler looked at the target ModelDeployment."""

    best: sweep.BestTrial


@dataclasses.dataclass
class Plan(rplan.Plan[sweep.HyperparameterSweepStatus]):
    """One pass's decisions: the status, trials to create (``create_once``, in index order) and to
    stop (``delete``), and the promotion, which ``decide_promotion`` settles once the handler has
    read the target ModelDeployment."""

    promote: PendingPromotion | None = None


# --------------------------------------------------------------------------------------------
# Status
# --------------------------------------------------------------------------------------------


def _s3(raw: dict[str, Any] | None) -> common.S3Connection | None:
    """A trial's ``status.modelS3`` as read back (None when absent or not what we wrote)."""
    if not raw:
        return None
    try:
        return common.S3Connection.model_validate(raw)
    except ValueError:
        return None


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_PARAM_CHARS:
        return value[: MAX_PARAM_CHARS - 3] + "..."
    return value


def best_trial(
    observed: Sequence[sweep_build.ObservedTrial],
    previous: sweep.BestTrial | None,
    direction: trials.Direction,
    budget_parameter: str | None,
    budgets: Mapping[int, Any],
) -> sweep.BestTrial | None:
    """The best scored trial (ties: the earliest), never worse than the one already reported."""
    best: sweep.BestTrial | None = previous
    for o in observed:
        t = o.trial
        if not t.scored or t.value is None:
            continue
        if best is not None and not (
            trials.is_better(t.value, best.objective_value, direction)
            or (t.value == best.objective_value and t.index < best.index)
        ):
            continue
        params = {k: _short(v) for k, v in t.params.items()}
        if budget_parameter is not None and t.rung in budgets:
            params[budget_parameter] = budgets[t.rung]
        best = sweep.BestTrial(
            name=o.name,
            index=t.index,
            params=params,
            objective_value=t.value,
            model_uri=o.model_uri,
            model_s3=_s3(o.model_s3),
            rung=t.rung if budget_parameter else None,
        )
    return best


def goal_reached(spec: sweep.HyperparameterSweepSpec, best: sweep.BestTrial | None) -> bool:
    goal = spec.objective.goal
    if goal is None or best is None:
        return False
    if spec.objective.effective_direction() == "maximize":
        return best.objective_value >= goal
    return best.objective_value <= goal


def last_failures(observed: Sequence[sweep_build.ObservedTrial]) -> list[sweep.TrialFailure]:
    failed = [o for o in observed if o.trial.state == "Failed"]
    failed.sort(key=lambda o: o.trial.finish_key(), reverse=True)
    return [
        sweep.TrialFailure(trial=o.name, reason=(o.reason or "Failed")[:128], message=o.message[:512])
        for o in failed[: sweep.MAX_FAILURES_KEPT]
    ]


def _failure_summary(failures: Sequence[sweep.TrialFailure]) -> str:
    return "; ".join(
        f"{f.trial}: {f.reason}" + (f" ({f.message[:120]})" if f.message else "") for f in failures[:3]
    )


def _with_phase(
    status: sweep.HyperparameterSweepStatus,
    phase: str,
    reason: str,
    message: str,
    *,
    now: datetime.datetime,
    generation: int,
) -> sweep.HyperparameterSweepStatus:
    flags = {
        "Running": phase in ("Pending", "Running"),
        "Succeeded": phase == "Succeeded",
        "Failed": phase == "Failed",
    }
    for type_, on in flags.items():
        status = status.with_condition(
            type_,
            "True" if on else "False",
            reason=reason,
            message=message if on else "",
            now=now,
            generation=generation,
        )
    # GitOps tools: Reconciling while trials run, Ready once it Succeeded, Stalled once it Failed.
    progress: common.Progress = (
        "Stalled" if phase == "Failed" else "Current" if phase == "Succeeded" else "InProgress"
    )
    status = status.with_progress(
        progress, ready=phase == "Succeeded", reason=reason, message=message, now=now, generation=generation
    )
    return status.model_copy(update={"phase": phase, "reason": reason, "message": message[:1024]})


FINAL_REASONS = (*STICKY_REASONS, "MaxTrialsReached", "SearchSpaceExhausted", "InvalidSearchSpace")


def settled(resource: sweep.HyperparameterSweep) -> bool:
    """Whether a pass has nothing left to do, judging by the stored status alone.

    True for an ended sweep whose spec has not changed since (raising maxTrials bumps the
    generation), that has no unfinished trial and whose promotion, if any, is decided. The
    handler then skips listing the trials: an ended 1,000-trial sweep costs no LIST of 1,000
    objects per resync. A failure the framework wrote (ChildRejected, ...) is never settled:
    the next pass retries.
    """
    status = resource.status
    if status.phase not in ("Succeeded", "Failed") or status.reason not in FINAL_REASONS:
        return False
    if status.observed_generation != resource.metadata.generation:
        return False
    if status.trials.pending or status.trials.running:
        return False
    return not (
        status.phase == "Succeeded" and promotes_deployment(resource) and status.condition("Promoted") is None
    )


def promotes_deployment(resource: sweep.HyperparameterSweep) -> bool:
    """Whether the sweep hands its best model to a ModelDeployment (``promote.model`` alone is
    carried out by the Model's reconciler, which reads the sweep's status)."""
    return resource.spec.promote is not None and resource.spec.promote.model_deployment is not None


def plan(
    resource: sweep.HyperparameterSweep,
    *,
    children: Sequence[Mapping[str, Any]],
    now: datetime.datetime,
) -> Plan:
    """Everything one pass decides. ``children``: the sweep's TrainingJobs as read from the API."""
    spec = resource.spec
    old = resource.status
    generation = resource.metadata.generation
    stamp = common.rfc3339(now)
    seed = sweep_build.seed_of(resource)
    observed = sweep_build.observe(children, metric=spec.objective.metric)
    live = [o for o in observed if not o.deleting]
    history = [o.trial for o in live]
    status = old.model_copy(update={"observed_generation": generation, "seed": seed})

    problems = sweep_build.validate(resource)
    if problems:
        message = "invalid search space: " + "; ".join(problems)
        status = _with_phase(status, "Failed", "InvalidSearchSpace", message, now=now, generation=generation)
        status = status.model_copy(update={"completion_time": old.completion_time or stamp})
        return Plan(status=status, events=transition_events(old, status))

    algorithm = search.make(spec, seed=seed)
    budget_name = algorithm.budget_parameter
    budgets = dict(enumerate(algorithm.scheduler.budgets))
    direction = spec.objective.effective_direction()
    created = max([old.trials.created, *[o.trial.index + 1 for o in observed]])
    unfinished = [o for o in live if not o.trial.done]
    finished = sum(1 for o in live if o.trial.done)
    best = best_trial(live, old.best_trial, direction, budget_name, budgets)
    failures = last_failures(live)
    failed_count = sum(1 for o in live if o.trial.state == "Failed")
    reached = goal_reached(spec, best)

    # Decide the phase; final decisions stay final.
    create: list[dict[str, Any]] = []
    terminal: tuple[str, str, str] | None = None
    if old.phase in ("Succeeded", "Failed") and old.reason in STICKY_REASONS:
        terminal = (old.phase, old.reason or "", old.message or "")
    elif failed_count > spec.max_failed_trials:
        terminal = (
            "Failed",
            "TooManyFailedTrials",
            f"{failed_count} trials failed (maxFailedTrials {spec.max_failed_trials}); last: "
            + _failure_summary(failures),
        )
    elif reached and best is not None:
        terminal = (
            "Succeeded",
            "GoalReached",
            f"{best.name} reached {spec.objective.metric} {best.objective_value:g} "
            f"(goal {spec.objective.goal:g})",
        )
    else:
        slots = spec.parallelism - len(unfinished)
        room = spec.max_trials - created
        wanted = max(0, min(slots, room))
        suggestions = algorithm.suggest(history, wanted) if wanted else []
        pinned = sweep_build.pinned_dataset(observed)
        requests = sweep_build.auto_requests(resource, live) if suggestions else None
        for offset, suggestion in enumerate(suggestions):
            manifest = sweep_build.trial_manifest(
                resource,
                index=created + offset,
                suggestion=suggestion,
                algorithm=algorithm,
                dataset_version=pinned,
                resources=requests,
            )
            create.append(manifest)
        exhausted = wanted > 0 and not suggestions
        if not unfinished and not create and (room <= 0 or exhausted):
            reason = "MaxTrialsReached" if room <= 0 else "SearchSpaceExhausted"
            terminal = (
                "Succeeded",
                reason,
                f"{finished} trials finished; best: "
                + (f"{best.name} {spec.objective.metric} {best.objective_value:g}" if best else "none"),
            )
    created += len(create)

    counts = sweep.TrialCounts(
        created=created,
        pending=sum(1 for o in live if o.trial.state == "Pending") + len(create),
        running=sum(1 for o in live if o.trial.state == "Running"),
        succeeded=sum(1 for o in live if o.trial.state == "Succeeded"),
        failed=failed_count,
        pruned=len(algorithm.pruned(history)),
    )
    delete: list[rplan.ChildRef] = []
    if terminal is not None and terminal[0] in ("Succeeded", "Failed") and terminal[1] in STICKY_REASONS:
        delete = [rplan.ChildRef(common.API_VERSION, "TrainingJob", o.name) for o in unfinished]
        counts = counts.model_copy(
            update={"pending": 0, "running": 0, "stopped": max(0, created - counts.succeeded - counts.failed)}
        )
    planned = spec.max_trials
    if algorithm.capacity is not None and algorithm.scheduler.mode == "single":
        planned = min(planned, algorithm.capacity)
    status = status.model_copy(
        update={
            "trials": counts,
            "progress": f"{counts.succeeded + counts.failed}/{planned}",
            "best_trial": best,
            "goal_reached": reached if spec.objective.goal is not None else None,
            "last_failures": failures,
            "start_time": old.start_time or (stamp if created else None),
            "rightsizing": sweep_build.rightsizing_status(
                [*live, *sweep_build.observe(create, metric=spec.objective.metric)]
            ),
        }
    )
    if terminal is not None:
        status = _with_phase(status, terminal[0], terminal[1], terminal[2], now=now, generation=generation)
        status = status.model_copy(update={"completion_time": old.completion_time or stamp})
    else:
        phase = "Running" if created else "Pending"
        message = (
            f"{counts.running} running, {counts.pending} pending, {counts.succeeded + counts.failed} finished"
        )
        status = _with_phase(
            status, phase, "TrialsRunning" if created else "Starting", message, now=now, generation=generation
        )
        status = status.model_copy(update={"completion_time": None})

    promote: PendingPromotion | None = None
    if status.phase == "Succeeded" and promotes_deployment(resource):
        status, promote = _promotion(resource, status, now=now)
    return Plan(
        status=status,
        create_once=create,
        delete=delete,
        promote=promote,
        events=transition_events(old, status),
    )


def _promotion(
    resource: sweep.HyperparameterSweep, status: sweep.HyperparameterSweepStatus, *, now: datetime.datetime
) -> tuple[sweep.HyperparameterSweepStatus, PendingPromotion | None]:
    promote = resource.spec.promote
    assert promote is not None and promote.model_deployment is not None
    best = status.best_trial
    generation = resource.metadata.generation
    if best is None:
        return status.with_condition(
            "Promoted",
            "False",
            reason="NoSucceededTrial",
            message="no trial succeeded; nothing to promote",
            now=now,
            generation=generation,
        ), None
    threshold = promote.threshold
    if threshold is not None and trials.is_better(
        threshold, best.objective_value, resource.spec.objective.effective_direction()
    ):
        message = (
            f"best {resource.spec.objective.metric} {best.objective_value:g} does not clear the threshold "
            f"{threshold:g}; {promote.model_deployment} left unchanged"
        )
        return status.with_condition(
            "Promoted", "False", reason="BelowThreshold", message=message, now=now, generation=generation
        ), None
    done = status.promotion
    if done is not None and done.trial == best.name and done.model_deployment == promote.model_deployment:
        return status, None
    return status, PendingPromotion(best=best)


@dataclasses.dataclass(frozen=True)
class PromotionDecision:
    """What to do about the target ModelDeployment, and the status and Events that say so."""

    status: sweep.HyperparameterSweepStatus
    apply: dict[str, Any] | None  # the ModelDeployment to server-side apply, or None: write nothing
    events: list[rplan.EventNote]


def decide_promotion(
    resource: sweep.HyperparameterSweep,
    plan: Plan,
    *,
    target: sweep_build.PromotionTarget | None,
    now: datetime.datetime,
) -> PromotionDecision:
    """Carry ``plan.promote`` out against the observed ModelDeployment (``None``: it does not exist).

    Created when missing, updated when the operator made it for this sweep, and otherwise left
    alone: a user's or GitOps' spec is theirs (see ``sweep_build.operator_owns``); the status
    and an Event then say which model to set.
    """
    pending, promote = plan.promote, resource.spec.promote
    assert pending is not None and promote is not None and promote.model_deployment is not None
    best, name = pending.best, promote.model_deployment
    summary = f"{best.name} ({resource.spec.objective.metric} {best.objective_value:g})"
    state: sweep.PromotionState
    if target is None or sweep_build.operator_owns(target, resource):
        state = "Created" if target is None else "Updated"
        apply = sweep_build.promotion_manifest(resource, best)
        reason, message = "Promoted", f"{summary} handed to ModelDeployment {name} ({state.lower()})"
    else:
        state, apply, reason = "NotApplied", None, "OwnedByUser"
        model = ", ".join(f"{k}: {v}" for k, v in sweep_build.promoted_model(resource, best).items())
        message = (
            f"{summary} not applied: ModelDeployment {name} was not created by this sweep, so its spec "
            f"belongs to its user (or GitOps) and the operator does not write it; to serve this model "
            f"set spec.model to {{{model}}} in {name}"
        )
    record = sweep.Promotion(
        model_deployment=name,
        trial=best.name,
        model_uri=best.model_uri,
        objective_value=best.objective_value,
        time=common.rfc3339(now),
        state=state,
    )
    status = plan.status.model_copy(update={"promotion": record}).with_condition(
        "Promoted",
        "True" if apply is not None else "False",
        reason=reason,
        message=message,
        now=now,
        generation=resource.metadata.generation,
    )
    return PromotionDecision(status=status, apply=apply, events=transition_events(resource.status, status))


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------


def transition_events(
    old: sweep.HyperparameterSweepStatus, new: sweep.HyperparameterSweepStatus
) -> list[rplan.EventNote]:
    """The Events a person wants in ``kubectl describe`` for the change from ``old`` to ``new``."""
    events: list[rplan.EventNote] = []
    if new.phase == "Running" and old.phase in (None, "Pending"):
        events.append(rplan.EventNote("Normal", "Started", "the sweep started its first trials"))
    if new.trials.created > old.trials.created:
        n = new.trials.created - old.trials.created
        first, last = old.trials.created, new.trials.created - 1
        which = f"trial {first}" if n == 1 else f"trials {first}-{last}"
        events.append(
            rplan.EventNote("Normal", "TrialsCreated", f"created {which} ({new.trials.created} so far)")
        )
    if new.trials.failed > old.trials.failed and new.last_failures:
        f = new.last_failures[0]
        events.append(
            rplan.EventNote(
                "Warning", "TrialFailed", f"{f.trial} failed: {f.reason} {f.message[:200]}".strip()
            )
        )
    if new.best_trial is not None and (
        old.best_trial is None
        or (new.best_trial.name, new.best_trial.objective_value)
        != (old.best_trial.name, old.best_trial.objective_value)
    ):
        events.append(
            rplan.EventNote(
                "Normal",
                "NewBestTrial",
                f"{new.best_trial.name}: {new.best_trial.objective_value:g} with "
                f"{json.dumps(new.best_trial.params, sort_keys=True)[:400]}",
            )
        )
    if new.phase != old.phase or new.reason != old.reason:
        if new.phase == "Succeeded":
            events.append(
                rplan.EventNote("Normal", new.reason or "Succeeded", new.message or "the sweep succeeded")
            )
        elif new.phase == "Failed":
            events.append(
                rplan.EventNote("Warning", new.reason or "Failed", new.message or "the sweep failed")
            )
        elif new.phase == "Running" and old.phase == "Succeeded":
            events.append(rplan.EventNote("Normal", "Resumed", "maxTrials was raised; the sweep runs again"))
    old_promoted = old.condition("Promoted")
    new_promoted = new.condition("Promoted")
    if new_promoted is not None and (
        old_promoted is None
        or (old_promoted.status, old_promoted.reason, old_promoted.message)
        != (new_promoted.status, new_promoted.reason, new_promoted.message)
    ):
        if new_promoted.status == "True":
            kind, reason = "Normal", "Promoted"
        elif new_promoted.reason == "OwnedByUser":  # by design (GitOps), not a failure
            kind, reason = "Normal", "PromotionNotApplied"
        else:
            kind, reason = "Warning", "PromotionSkipped"
        events.append(rplan.EventNote(kind, reason, new_promoted.message))
    return events
