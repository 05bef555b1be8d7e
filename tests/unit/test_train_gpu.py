"""The GPU path: a TrainingJob with resources.gpu trains XGBoost with device=cuda.

There is no GPU here, so this checks the decision (the config the operator writes and the
estimator the workload builds from it), not CUDA itself.
"""

from __future__ import annotations

import pytest

from mlops_operator.api import trainingjob as api
from mlops_operator.reconcile import trainingjob_build as build
from mlops_operator.reconcile import workload as rworkload
from mlops_workloads.train import estimator


def config(estimator_name: str, gpu: int, params: dict[str, object] | None = None) -> api.TrainConfig:
    tj = api.TrainingJob.from_body(
        {
            "metadata": {"name": "g", "namespace": "ns"},
            "spec": {
                "datasetRef": {"name": "d"},
                "model": {"estimator": estimator_name, "params": params or {}},
                "resources": {"gpu": gpu},
            },
        }
    )
    return build.train_config(
        tj, dataset_uri="pvc://data/d/x", dataset_digest="x", settings=rworkload.WorkloadSettings()
    )


@pytest.mark.parametrize("name", ["XGBClassifier", "XGBRegressor"])
def test_gpu_selects_xgboost_cuda(name: str) -> None:
    model = estimator.build(config(name, gpu=1))
    params = model.get_params()
    assert params["device"] == "cuda" and params["tree_method"] == "hist"
    assert estimator.device(model) == "cuda"


def test_cpu_job_leaves_xgboost_on_cpu() -> None:
    model = estimator.build(config("XGBClassifier", gpu=0))
    assert model.get_params()["device"] is None and estimator.device(model) == "cpu"


def test_user_device_wins() -> None:
    model = estimator.build(config("XGBClassifier", gpu=2, params={"device": "cuda:1"}))
    assert model.get_params()["device"] == "cuda:1"


def test_gpu_error_is_reported_as_gpu_unavailable() -> None:
    from mlops_workloads.train import run

    err = run._fit_error(config("XGBClassifier", gpu=1), RuntimeError("XGBoost is not compiled with CUDA"))
    assert err.reason == "GPUUnavailable"
