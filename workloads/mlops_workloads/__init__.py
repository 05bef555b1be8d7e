"""Container entrypoints: prepare (Dataset), train (TrainingJob), serve (ModelDeployment).

The package also carries the trainer contract for your own training code
(``mlops_workloads.trainer``, re-exported here: ``import mlops_workloads as mw; cfg = mw.config();
...; mw.report(...)``). That module imports only the standard library, so the package stays light.
"""

from mlops_workloads.trainer import (
    ReportError,
    TrainerConfig,
    config,
    device,
    fail,
    load_skops,
    log_epoch,
    param_env_name,
    param_env_value,
    report,
)

__all__ = [
    "ReportError",
    "TrainerConfig",
    "config",
    "device",
    "fail",
    "load_skops",
    "log_epoch",
    "param_env_name",
    "param_env_value",
    "report",
]
