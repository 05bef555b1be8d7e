"""Imports every handler module, so that ``kopf run -m mlops_operator.handlers.all`` (or
``python -m mlops_operator``) registers the whole operator."""

from __future__ import annotations

from mlops_operator.handlers import (  # noqa: F401 - imported for their registrations
    children,
    dataset,
    model,
    modeldeployment,
    probes,
    settings,
    sweep,
    trainingjob,
)
