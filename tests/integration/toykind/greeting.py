"""A toy kind written by following operator/mlops_operator/README.md's recipe (kept under 100
lines by tests/integration/test_toy_kind.py): a Greeting makes one ConfigMap with its message."""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from typing import Any, ClassVar

import pydantic

from mlops_operator.api import common
from mlops_operator.handlers import framework, settings
from mlops_operator.reconcile import owner as rowner
from mlops_operator.reconcile import plan as rplan


# 1. api: spec, status and CRD metadata (the CRD is generated from these).
class GreetingSpec(common.ApiModel):
    message: str = pydantic.Field(min_length=1, max_length=256, description="What the ConfigMap says.")


class GreetingStatus(common.StatusBase):
    config_map: str | None = pydantic.Field(default=None, description="The child ConfigMap.")


class Greeting(common.Resource):
    crd: ClassVar[common.CRDMeta] = common.CRDMeta(
        kind="Greeting",
        plural="greetings",
        singular="greeting",
        short_names=(),
        printer_columns=(common.PrinterColumn(name="Phase", json_path=".status.phase"),),
        description="A toy kind: one ConfigMap holding a message.",
        categories=(),
    )
    spec: GreetingSpec
    status: GreetingStatus = pydantic.Field(default_factory=GreetingStatus)


# 2. reconcile: a pure plan from (resource, observed child, now).
def plan(
    g: Greeting, *, observed: dict[str, Any] | None, now: datetime.datetime
) -> rplan.Plan[GreetingStatus]:
    owner = rowner.Owner.of(g)
    name = owner.child_name("greeting")
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": owner.labels("greeting"),
            "ownerReferences": [owner.reference()],
        },
        "data": {"message": g.spec.message},
    }
    done = ((observed or {}).get("data") or {}).get("message") == g.spec.message
    message = f"ConfigMap {name} says {g.spec.message!r}" if done else f"writing ConfigMap {name}"
    status = GreetingStatus(
        conditions=g.status.conditions,
        config_map=name,
        phase="Ready" if done else "Pending",
        observed_generation=g.metadata.generation,
    ).with_progress(
        "Current" if done else "InProgress",
        ready=done,
        reason="Written" if done else "Writing",
        message=message,
        now=now,
        generation=g.metadata.generation,
    )
    events = [rplan.EventNote.normal("Ready", message)] if done and g.status.phase != "Ready" else []
    return rplan.Plan(status=status, apply=[child], events=events)


# 3. handlers: observe, then let the framework carry out the plan; register the kind.
def reconcile(ctx: framework.Context, body: Mapping[str, Any]) -> framework.Outcome:
    g = Greeting.from_body(body)
    observed = ctx.kube.get(
        "v1", "ConfigMap", rowner.Owner.of(g).child_name("greeting"), g.metadata.namespace
    )
    return framework.carry_out(ctx, g.metadata.namespace, plan(g, observed=observed, now=ctx.now))


REGISTRATION = framework.register(kind="Greeting", plural="greetings", reconcile=reconcile, interval=5.0)
framework.watch_children("", "v1", "configmaps")
settings.configure(settings.OperatorConfig(metrics_port=0, namespaces=(os.environ["TOY_NAMESPACE"],)))
