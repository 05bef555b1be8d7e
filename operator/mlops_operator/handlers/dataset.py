"""Dataset handler: read the prepare Jobs, ConfigMaps and pods, let the pure reconciler decide,
carry it out.

Thin on purpose: names, the Job, the status and the Events are all decided in
``reconcile.dataset``. This module lists the children by label, deletes those of an older
spec hash or refresh round (a Job's pod template is immutable, so a spec change or a re-read
means a new Job), applies what the plan asks with server-side apply, and hands the status and
Events to the framework. It runs on every change of the Dataset (a new ``mlops.dev/refresh``
annotation included), at start-up, every ``RESYNC_SECONDS`` and whenever a prepare Job or pod changes;
deleting the Dataset removes its children through their owner references. A Dataset with
feedback sources also reads the ModelDeployments they name (one GET each per pass); one that
waits for its deployment (or for the deployment's spec.logging) is prepared on the first
resync after it appears.

A change of the ``mlops.dev/refresh`` annotation is a watch event like any other, so it is
acted on at once. A refresh schedule finer than the resync (``* * * * *``) sets the plan's
``wake_at``: the framework reconciles the Dataset at that time (a one-shot wake-up; whether a
round is due is decided from the status and the clock alone).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlops_operator.api import common
from mlops_operator.api import dataset as api
from mlops_operator.handlers import framework
from mlops_operator.reconcile import dataset as rds
from mlops_operator.reconcile import dataset_build as rds_build

RESYNC_SECONDS = 60.0


def reconcile(ctx: framework.Context, body: Mapping[str, Any]) -> framework.Outcome:
    resource = api.Dataset.from_body(body)
    namespace = resource.metadata.namespace
    selector = rds_build.selector(resource)
    observed = rds.Observed(
        jobs=ctx.kube.list("batch/v1", "Job", namespace, label_selector=selector),
        configmaps=ctx.kube.list("v1", "ConfigMap", namespace, label_selector=selector),
        pods=ctx.kube.list("v1", "Pod", namespace, label_selector=selector),
        deployments={
            name: ctx.kube.get(common.API_VERSION, "ModelDeployment", name, namespace)
            for name in rds_build.feedback_deployments(resource)
        },
    )
    plan = rds.plan(resource, observed=observed, settings=ctx.settings, now=ctx.now)
    if plan.delete:
        stale = ", ".join(f"{r.kind}/{r.name}" for r in plan.delete)
        ctx.logger.info("deleting %s of an earlier spec or refresh round", stale)
    return framework.carry_out(ctx, namespace, plan)


REGISTRATION = framework.register(
    kind=api.Dataset.crd.kind,
    plural=api.Dataset.crd.plural,
    reconcile=reconcile,
    interval=RESYNC_SECONDS,
)
