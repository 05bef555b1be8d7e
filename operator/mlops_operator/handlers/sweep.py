"""HyperparameterSweep handler: read the trials, let the pure reconciler decide, carry it out.

Thin on purpose: every decision (which trials, which parameters, which phase, what to
promote) is in ``reconcile.sweep``; this module only lists the sweep's TrainingJobs, creates
the new ones (server-side apply under deterministic names, so a retried pass is a no-op),
stops unfinished trials when the sweep ended, and hands the best model on: it reads the target
ModelDeployment and applies what ``reconcile.sweep.decide_promotion`` says (only ever one that the
operator creates or created itself; a user's or GitOps' spec is never written). The framework
runs it on every change of the sweep, at start-up, every ``RESYNC_SECONDS`` and whenever a trial TrainingJob
changes (they carry the sweep as controller owner), and writes the status.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from mlops_operator.api import common, sweep
from mlops_operator.handlers import framework
from mlops_operator.reconcile import sweep as rsweep
from mlops_operator.reconcile import sweep_build

RESYNC_SECONDS = 30.0


def promote(
    ctx: framework.Context, resource: sweep.HyperparameterSweep, plan: rsweep.Plan
) -> rsweep.PromotionDecision:
    """Read the target ModelDeployment, let the reconciler decide, apply only what the operator owns."""
    assert resource.spec.promote is not None and resource.spec.promote.model_deployment is not None
    existing = ctx.kube.get(
        common.API_VERSION,
        "ModelDeployment",
        resource.spec.promote.model_deployment,
        resource.metadata.namespace,
    )
    decision = rsweep.decide_promotion(
        resource, plan, target=sweep_build.observe_target(existing), now=ctx.now
    )
    if decision.apply is not None:
        ctx.kube.apply(decision.apply)
    return decision


def reconcile(ctx: framework.Context, body: Mapping[str, Any]) -> framework.Outcome:
    resource = sweep.HyperparameterSweep.from_body(body)
    if rsweep.settled(resource):
        return framework.Outcome(status=None)  # ended and nothing pending: no need to list the trials
    meta = resource.metadata
    started = time.perf_counter()
    children = ctx.kube.list(
        common.API_VERSION, "TrainingJob", meta.namespace, label_selector=sweep_build.selector(resource)
    )
    listed = time.perf_counter()
    plan = rsweep.plan(resource, children=children, now=ctx.now)
    planned = time.perf_counter()
    if plan.promote is not None:
        decision = promote(ctx, resource, plan)
        plan.status, plan.events = decision.status, decision.events
    outcome = framework.carry_out(ctx, meta.namespace, plan)
    if plan.create_once:
        ctx.logger.info(
            "created %d trial(s); %s finished (list %d trials %.2fs, plan %.2fs, create %.2fs)",
            len(plan.create_once),
            plan.status.progress,
            len(children),
            listed - started,
            planned - listed,
            time.perf_counter() - planned,
        )
    return outcome


REGISTRATION = framework.register(
    kind=sweep.HyperparameterSweep.crd.kind,
    plural=sweep.HyperparameterSweep.crd.plural,
    reconcile=reconcile,
    interval=RESYNC_SECONDS,
)
