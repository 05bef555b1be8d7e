"""Model handler: read the version ConfigMaps and the sources, let the pure reconciler decide,
carry it out.

Thin on purpose: what to register, which number, which alias moves, the status and the Events
are decided in ``reconcile.model``. This module lists the Model's version ConfigMaps (by label)
and the namespace's TrainingJobs and sweeps (the sources name the Model in their spec, which no
selector can match), writes the new records, and hands the status and Events to the framework.

A source finishing must wake its Model: user TrainingJobs carry no operator label and a sweep
is no child of the Model, so ``on_source_event`` watches both kinds and reconciles the Model a
Succeeded one names (``spec.registerAs``, ``spec.promote.model``), once per burst. A missed
event costs one resync, never a version: registration is level-triggered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import kopf

from mlops_operator.api import common
from mlops_operator.api import model as api
from mlops_operator.handlers import framework
from mlops_operator.reconcile import model as rmodel
from mlops_operator.reconcile import model_build

RESYNC_SECONDS = 60.0
DEBOUNCE_SECONDS = 0.5


def reconcile(ctx: framework.Context, body: Mapping[str, Any]) -> framework.Outcome:
    resource = api.Model.from_body(body)
    namespace = resource.metadata.namespace
    observed = rmodel.Observed(
        config_maps=ctx.kube.list(
            "v1", "ConfigMap", namespace, label_selector=model_build.selector(resource)
        ),
        trainingjobs=ctx.kube.list(common.API_VERSION, "TrainingJob", namespace),
        sweeps=ctx.kube.list(common.API_VERSION, "HyperparameterSweep", namespace),
        managed_fields=list((body.get("metadata") or {}).get("managedFields") or []),
    )
    plan = rmodel.plan(resource, observed=observed, now=ctx.now)
    if plan.create_once:
        names = ", ".join(m["metadata"]["name"] for m in plan.create_once)
        ctx.logger.info("registering %s", names)
    return framework.carry_out(ctx, namespace, plan)


REGISTRATION = framework.register(
    kind=api.Model.crd.kind,
    plural=api.Model.crd.plural,
    reconcile=reconcile,
    interval=RESYNC_SECONDS,
    status_model=api.ModelStatus,
)


def named_model(body: Mapping[str, Any]) -> str | None:
    """The Model a Succeeded TrainingJob or sweep registers into, if any."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    if status.get("phase") != "Succeeded":
        return None
    name = spec.get("registerAs") or (spec.get("promote") or {}).get("model")
    return str(name) if name else None


_PENDING: set[tuple[str, str]] = set()


async def on_source_event(event: kopf.RawEvent, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    """A TrainingJob or sweep that names a Model changed while Succeeded: reconcile that Model."""
    body = event.get("object") or {}
    if event.get("type") == "DELETED":
        return  # a deleted source changes no version
    name = named_model(body)
    if name is None:
        return
    namespace = str((body.get("metadata") or {}).get("namespace", "default"))
    key = (namespace, name)
    if key in _PENDING:
        return
    _PENDING.add(key)
    try:
        await asyncio.sleep(DEBOUNCE_SECONDS)
    finally:
        _PENDING.discard(key)
    ctx = framework.memo_context(memo, logger)
    await asyncio.get_running_loop().run_in_executor(
        getattr(memo, "executor", None),
        framework.reconcile_by_name,
        api.Model.crd.plural,
        ctx,
        name,
        namespace,
    )


for _plural in ("trainingjobs", "hyperparametersweeps"):
    kopf.on.event(common.GROUP, common.VERSION, _plural, id="model-source")(on_source_event)
