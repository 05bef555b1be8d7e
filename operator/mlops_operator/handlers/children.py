"""Watches on the children the operator makes, so an owner is reconciled when one changes.

Only objects labelled ``app.kubernetes.io/managed-by: mlops-operator`` are routed; the owner
is found from the controller owner reference or, for pods, the ``mlops.dev/<kind>`` label.
"""

from __future__ import annotations

from mlops_operator.api import common
from mlops_operator.handlers import framework

framework.watch_children("batch", "v1", "jobs")
framework.watch_children("", "v1", "pods")
framework.watch_children("apps", "v1", "deployments")
framework.watch_children("", "v1", "services")
framework.watch_children(common.GROUP, common.VERSION, "trainingjobs")
framework.watch_children(common.GROUP, common.VERSION, "modeldeployments")
