"""Model handler: read the version ConfigMaps and the sources, let the pure reconciler decide,
carry it out.

Thin on purpose: what to register, which number, which alias moves, the status and the Events
are decided in ``reconcile.model``. This module lists the Model's version ConfigMaps (by label)
and the namespace's TrainingJobs and sweeps (the sources name the Model in their spec, which no
selector can match), writes the new records, and hands the status and Events to the framework.

With an MLflow tracking URI configured, the pass then exports what the status does not list as
exported yet (``mlflow_export``: versions written in this very pass included, so a new version
reaches MLflow at once) and mirrors the aliases; the pure ``mlflow_export.mapping`` turns what it
did into ``status.mlflow``, the ``MLflowExported`` condition and Events. MLflow's failures never
fail the Model nor hold up registration: the records are written first and the export only
reports.

A source finishing must wake its Model: user TrainingJobs carry no operator label and a sweep
is no child of the Model, so ``on_source_event`` watches both kinds and reconciles the Model a
Succeeded one names (``spec.registerAs``, ``spec.promote.model``), once per burst. A missed
event costs one resync, never a version: registration is level-triggered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import kopf

from mlops_operator.api import common
from mlops_operator.api import model as api
from mlops_operator.handlers import framework, settings
from mlops_operator.mlflow_export import client as mlflow_client
from mlops_operator.mlflow_export import export as mlflow_export
from mlops_operator.mlflow_export import mapping as mlflow_mapping
from mlops_operator.reconcile import model as rmodel
from mlops_operator.reconcile import model_build
from mlops_operator.reconcile import plan as rplan

RESYNC_SECONDS = 60.0
DEBOUNCE_SECONDS = 0.5


_EXPORTER: list[mlflow_export.Exporter] = []  # the one exporter of this process, when configured


def configure_export(config: mlflow_client.Config | None) -> mlflow_export.Exporter | None:
    """Export to ``config``'s tracking server from now on (None: stop exporting)."""
    _EXPORTER.clear()
    if config is not None:
        _EXPORTER.append(mlflow_export.Exporter(config))
    return _EXPORTER[0] if _EXPORTER else None


def exporter() -> mlflow_export.Exporter | None:
    return _EXPORTER[0] if _EXPORTER else None


@kopf.on.startup()
def start_export(logger: Any, **_: Any) -> None:
    configured = configure_export(settings.CONFIG.mlflow)
    if configured is not None:
        logger.info(
            "exporting Model versions to MLflow at %s (experiments %s<namespace>/<model>)",
            configured.config.base_url,
            configured.config.experiment_prefix,
        )


def export_versions(
    resource: api.Model, config_maps: Sequence[Mapping[str, Any]], created: Sequence[Mapping[str, Any]]
) -> list[mlflow_mapping.Version]:
    """The Model's version records, those this pass wrote included."""
    found: dict[int, mlflow_mapping.Version] = {}
    for cm in [*config_maps, *created]:
        record = model_build.parse_record(cm, resource.metadata.uid)
        if record is not None and record.mine:
            found[record.version] = mlflow_mapping.Version(
                version=record.version, deleted=record.deleted, data=record.data
            )
    return [found[n] for n in sorted(found)]


def export(
    ctx: framework.Context,
    resource: api.Model,
    plan: rplan.Plan[api.ModelStatus],
    config_maps: Sequence[Mapping[str, Any]],
    *,
    exporting: mlflow_export.Exporter | None,
) -> tuple[api.ModelStatus, list[rplan.EventNote]]:
    """The status with the export's outcome, and its Events (none without an exporter)."""
    if exporting is None:
        return mlflow_mapping.without_export(plan.status), []
    versions = export_versions(resource, config_maps, plan.create_once)
    outcome = exporting.sync(resource, plan.status, versions, now=ctx.now)
    status, notes = mlflow_mapping.with_outcome(
        plan.status, outcome, now=ctx.now, generation=resource.metadata.generation
    )
    return status, [rplan.EventNote(*n) for n in notes]


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
    outcome = framework.carry_out(ctx, namespace, plan)  # the records first: MLflow never holds them up
    status, events = export(ctx, resource, plan, observed.config_maps, exporting=exporter())
    return framework.Outcome(status=status, events=[*outcome.events, *events])


def _forget(uid: str) -> None:
    current = exporter()
    if current is not None:
        current.forget(uid)


REGISTRATION = framework.register(
    kind=api.Model.crd.kind,
    plural=api.Model.crd.plural,
    reconcile=reconcile,
    interval=RESYNC_SECONDS,
    forget=_forget,
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
