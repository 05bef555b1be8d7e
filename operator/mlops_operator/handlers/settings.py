"""kopf settings and the operator's lifecycle: startup (client, settings, metrics server), cleanup.

Everything the reconcilers need is built once here and handed over in kopf's ``memo``:
the ``Kube`` client over one ``ApiClient`` and the ``Settings`` dataclass. Finalizers and
progress are stored under the ``mlops.dev`` prefix, so the operator's bookkeeping on users'
objects is recognisably ours.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import threading
from typing import Any

import kopf
import prometheus_client

from mlops_operator import metrics
from mlops_operator.handlers import children, framework
from mlops_operator.k8s import cache, client
from mlops_operator.mlflow_export import client as mlflow_client
from mlops_operator.reconcile import workload as rworkload


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    """Process-level options (from flags or environment), fixed at startup."""

    metrics_port: int = 8000
    metrics_host: str = "0.0.0.0"
    kubeconfig: str | None = None
    peering: str | None = None
    max_workers: int = 20
    namespaces: tuple[str, ...] = ()  # watched namespace patterns; empty: all
    settings: rworkload.WorkloadSettings = dataclasses.field(default_factory=rworkload.WorkloadSettings)
    # The MLflow tracking server Model versions are exported to (MLOPS_MLFLOW_TRACKING_URI,
    # MLOPS_MLFLOW_EXPERIMENT_PREFIX, and MLflow's own MLFLOW_TRACKING_TOKEN or
    # MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD); None: no export, no calls.
    mlflow: mlflow_client.Config | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> OperatorConfig:
        env = dict(os.environ if environ is None else environ)
        defaults = rworkload.WorkloadSettings()
        settings = rworkload.WorkloadSettings(
            workload_image=env.get("MLOPS_WORKLOAD_IMAGE", defaults.workload_image),
            workload_gpu_image=env.get("MLOPS_WORKLOAD_GPU_IMAGE", defaults.workload_gpu_image),
            image_pull_policy=env.get("MLOPS_IMAGE_PULL_POLICY", defaults.image_pull_policy),
            service_account=env.get("MLOPS_WORKLOAD_SERVICE_ACCOUNT") or None,
            node_selector=_json_env(env, "MLOPS_WORKLOAD_NODE_SELECTOR", dict),
            tolerations=tuple(_json_env(env, "MLOPS_WORKLOAD_TOLERATIONS", list)),
        )
        return cls(
            metrics_port=int(env.get("MLOPS_METRICS_PORT", "8000")),
            kubeconfig=env.get("MLOPS_KUBECONFIG") or None,
            peering=env.get("MLOPS_PEERING") or None,
            max_workers=int(env.get("MLOPS_MAX_WORKERS", "20")),
            settings=settings,
            mlflow=mlflow_client.Config.from_env(env),
        )


def _json_env(env: dict[str, str], name: str, kind: type[Any]) -> Any:
    """A JSON object or list from the environment; a malformed value stops the operator at once."""
    raw = env.get(name, "").strip()
    if not raw:
        return kind()
    value = json.loads(raw)
    if not isinstance(value, kind):
        raise ValueError(f"{name} must be a JSON {kind.__name__}, got {raw!r}")
    return value


CONFIG: OperatorConfig = OperatorConfig()
_METRICS_SERVER: list[Any] = []
_METRICS_LOCK = threading.Lock()


def configure(config: OperatorConfig) -> None:
    """Set the process configuration before kopf starts (called by ``__main__`` and tests)."""
    global CONFIG  # noqa: PLW0603 - set once before the event loop starts
    CONFIG = config


def apply_kopf_settings(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    settings.persistence.finalizer = "mlops.dev/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="mlops.dev")
    # The framework registers only watch-event handlers (level-triggered passes): kopf keeps no
    # diff base and no progress for them, so it writes nothing to the objects. These name where
    # it would, under our prefix, should a change handler ever be added.
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="mlops.dev", key="last-handled-configuration"
    )
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    settings.execution.max_workers = config.max_workers
    settings.posting.level = logging.WARNING
    settings.peering.name = config.peering or "mlops-operator"
    settings.peering.standalone = config.peering is None
    settings.peering.mandatory = config.peering is not None
    settings.queueing.error_delays = (1, 2, 5, 10, 30, 60)


def start_metrics_server(config: OperatorConfig) -> None:
    with _METRICS_LOCK:
        if _METRICS_SERVER or config.metrics_port <= 0:
            return
        server = prometheus_client.start_http_server(
            config.metrics_port, addr=config.metrics_host, registry=metrics.REGISTRY
        )
        _METRICS_SERVER.append(server)


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    apply_kopf_settings(settings, CONFIG)
    memo.kube = cache.CachedKube(client.connect(CONFIG.kubeconfig))
    memo.settings = CONFIG.settings
    memo.executor = settings.execution.executor  # where child-triggered passes run (kopf's thread pool)
    start_metrics_server(CONFIG)
    logger.info(
        "mlops-operator started (metrics on :%s, workload image %s, MLflow export %s)",
        CONFIG.metrics_port,
        CONFIG.settings.workload_image,
        CONFIG.mlflow.base_url if CONFIG.mlflow is not None else "off",
    )


@kopf.on.startup()
async def start_caches(memo: kopf.Memo, logger: Any, **_: Any) -> None:
    """The watch-fed caches the passes read from, synced before the first pass."""
    await children.start(memo, logger, CONFIG.namespaces)


@kopf.on.startup()
async def start_resync(memo: kopf.Memo, logger: Any, **_: Any) -> None:
    memo.resync = asyncio.get_running_loop().create_task(
        framework.resync_forever(memo, logger, CONFIG.namespaces)
    )


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_: Any) -> None:
    framework.cancel_wakes()
    task = getattr(memo, "resync", None)
    if task is not None:
        task.cancel()
    kube = getattr(memo, "kube", None)
    if isinstance(kube, cache.CachedKube):
        kube.stop()
    if kube is not None:
        kube.close()
