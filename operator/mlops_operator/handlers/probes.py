"""Liveness probe details: kopf serves /healthz when started with a liveness endpoint."""

from __future__ import annotations

import datetime
from typing import Any

import kopf

from mlops_operator.handlers import framework


@kopf.on.probe(id="now")
def now(**_: Any) -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


@kopf.on.probe(id="kinds")
def kinds(**_: Any) -> list[str]:
    return sorted(framework.REGISTRY)
