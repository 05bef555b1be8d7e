"""The device a model ACTUALLY trained on, and GPUUnavailable when GPUs were asked for and not used.

There is no GPU here and XGBoost is the ``xgboost-cpu`` wheel, which accepts ``device="cuda"``
and trains on the CPU: exactly the case that used to be recorded as ``cuda``. It now fails
with GPUUnavailable, or with ``allowCPUFallback`` trains on the CPU and records ``cpu``.
"""

from __future__ import annotations

import json
import pathlib
import warnings
from typing import Any

import _train_data
import numpy as np
import pytest
import torch
import xgboost

from mlops_operator.api import trainingjob
from mlops_operator.reconcile import trainingjob_build as build
from mlops_operator.reconcile import workload as rworkload
from mlops_workloads import runtime
from mlops_workloads.train import device, run


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return _train_data.make_prepared(tmp_path_factory.mktemp("d"), "iris")


def config(
    data_dir: pathlib.Path | None,
    out: pathlib.Path,
    estimator: str,
    params: dict[str, Any],
    *,
    gpu: int,
    fallback: bool = False,
) -> trainingjob.TrainConfig:
    tj = trainingjob.TrainingJob.from_body(
        {
            "metadata": {"name": "dev", "namespace": "ns"},
            "spec": {
                "datasetRef": {"name": "d"},
                "model": {"estimator": estimator, "params": params},
                "metrics": ["accuracy"],
                "resources": {"gpu": gpu},
                "allowCPUFallback": fallback,
                "output": {"storageUri": f"file://{out}"},
            },
        }
    )
    uri = f"file://{data_dir}" if data_dir else "file:///nowhere"
    config = build.train_config(tj, dataset_uri=uri, dataset_digest="", settings=rworkload.WorkloadSettings())
    return _train_data.staged(config, out.with_name(f"{out.name}.staging"))


# -- the pieces ----------------------------------------------------------------------------------


def test_requested_and_cpu_names(tmp_path: pathlib.Path) -> None:
    assert device.requested(config(None, tmp_path, "XGBClassifier", {}, gpu=1)) == "cuda"
    assert device.requested(config(None, tmp_path, "XGBClassifier", {}, gpu=0)) == "cpu"
    assert device.is_cpu("cpu") and device.is_cpu("CPU") and not device.is_cpu("cuda:0 (NVIDIA H200)")
    assert device.torch_name(torch.device("cpu")) == "cpu" and device.torch_name("cpu") == "cpu"


def test_xgboost_told_cuda_really_trains_on_the_cpu_here() -> None:
    x = np.random.default_rng(0).normal(size=(60, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = xgboost.XGBClassifier(n_estimators=2, device="cuda").fit(x, (x[:, 0] > 0).astype(int))
    assert model.get_params()["device"] == "cuda"  # what it was told ...
    assert device.actual(model, library="xgboost") == "cpu"  # ... and what it did
    assert not device.xgboost_has_cuda()


def test_other_libraries_compute_on_the_cpu() -> None:
    assert device.actual(object(), library="scikit-learn") == "cpu"
    assert device.actual(object(), library="lightgbm") == "cpu"


def test_torch_device_choice_without_and_with_a_gpu(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpu_job = config(None, tmp_path, "TorchMLPClassifier", {}, gpu=0)
    gpu_job = config(None, tmp_path, "TorchMLPClassifier", {}, gpu=1)
    assert device.choose_torch(cpu_job) == (torch.device("cpu"), None)
    chosen, why = device.choose_torch(gpu_job)
    assert chosen == torch.device("cpu") and why and "torch.cuda.is_available() is False" in why
    # With a (pretend) GPU: cuda:<LOCAL_RANK>, named as the driver names it.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "NVIDIA H200")
    assert device.choose_torch(gpu_job) == (torch.device("cuda", 0), None)
    assert device.choose_torch(gpu_job, local_rank=1) == (torch.device("cuda", 1), None)
    assert device.choose_torch(gpu_job, local_rank=5) == (torch.device("cuda", 0), None)
    assert device.choose_torch(cpu_job) == (torch.device("cpu"), None)
    assert device.torch_name(torch.device("cuda", 1)) == "cuda:1 (NVIDIA H200)"


def test_check_fails_warns_or_passes(tmp_path: pathlib.Path) -> None:
    notes: list[str] = []
    strict = config(None, tmp_path, "XGBClassifier", {}, gpu=1)
    with pytest.raises(runtime.WorkloadError) as info:
        device.check(strict, "cpu", why="no driver", warn=notes.append)
    assert info.value.reason == "GPUUnavailable"
    assert "no driver" in info.value.message and "allowCPUFallback" in info.value.message
    lenient = config(None, tmp_path, "XGBClassifier", {}, gpu=1, fallback=True)
    assert lenient.allow_cpu_fallback
    assert device.check(lenient, "cpu", why="no driver", warn=notes.append) == "cpu"
    assert notes and "GPUUnavailable" in notes[0]
    assert device.check(strict, "cuda:0", why="", warn=notes.append) == "cuda:0"
    cpu_job = config(None, tmp_path, "XGBClassifier", {}, gpu=0)
    assert device.check(cpu_job, "cpu", why="", warn=notes.append) == "cpu" and len(notes) == 1


# -- the training run ----------------------------------------------------------------------------


def test_xgboost_gpu_job_on_the_cpu_wheel_fails_gpu_unavailable(
    iris: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    with pytest.raises(runtime.WorkloadError) as info:
        run.train(config(iris, tmp_path / "m", "XGBClassifier", {"n_estimators": 3}, gpu=1))
    assert info.value.reason == "GPUUnavailable" and "xgboost-cpu" in info.value.message
    assert not (tmp_path / "m").exists()  # refused before any work was done


def test_xgboost_gpu_job_with_fallback_records_cpu(iris: pathlib.Path, tmp_path: pathlib.Path) -> None:
    result = run.train(
        config(iris, tmp_path / "m", "XGBClassifier", {"n_estimators": 3}, gpu=1, fallback=True)
    )
    assert result["device"] == "cpu" and result["deviceRequested"] == "cuda"
    assert any("GPUUnavailable" in w for w in result["warnings"])
    card = json.loads((_train_data.model_dir(result) / "model_card.json").read_text())
    assert card["hardware"]["device"] == "cpu" and card["hardware"]["deviceRequested"] == "cuda"


def test_xgboost_falling_back_at_fit_time_is_caught_after_fit(
    iris: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A CUDA build on a node without a usable GPU: XGBoost trains on the CPU, the booster says so.
    monkeypatch.setattr(device, "xgboost_has_cuda", lambda: True)
    with pytest.raises(runtime.WorkloadError) as info:
        run.train(config(iris, tmp_path / "m", "XGBClassifier", {"n_estimators": 3}, gpu=1))
    assert info.value.reason == "GPUUnavailable" and "fell back" in info.value.message
    result = run.train(
        config(iris, tmp_path / "m", "XGBClassifier", {"n_estimators": 3}, gpu=1, fallback=True)
    )
    assert result["device"] == "cpu"


def test_cpu_jobs_record_cpu(iris: pathlib.Path, tmp_path: pathlib.Path) -> None:
    result = run.train(config(iris, tmp_path / "m", "XGBClassifier", {"n_estimators": 3}, gpu=0))
    assert result["device"] == "cpu" and result["deviceRequested"] == "cpu" and result["warnings"] == []


def test_estimator_without_gpu_learner_warns(iris: pathlib.Path, tmp_path: pathlib.Path) -> None:
    # The apiserver refuses this unless spec.image is set; the workload still says what happened.
    job = config(iris, tmp_path / "m", "LogisticRegression", {"max_iter": 200}, gpu=0)
    job = job.model_copy(update={"gpu": 1})
    result = run.train(job)
    assert result["device"] == "cpu" and result["deviceRequested"] == "cuda"
    assert any("does not use GPUs" in w for w in result["warnings"])


def test_torch_gpu_job_without_a_gpu(iris: pathlib.Path, tmp_path: pathlib.Path) -> None:
    params = {"epochs": 3, "hidden_units": 8}
    with pytest.raises(runtime.WorkloadError) as info:
        run.train(config(iris, tmp_path / "m", "TorchMLPClassifier", params, gpu=1))
    assert (
        info.value.reason == "GPUUnavailable" and "torch.cuda.is_available() is False" in info.value.message
    )
    assert not (tmp_path / "m").exists()
    result = run.train(config(iris, tmp_path / "m", "TorchMLPClassifier", params, gpu=1, fallback=True))
    assert result["device"] == "cpu" and result["deviceRequested"] == "cuda"
    assert any("GPUUnavailable" in w for w in result["warnings"])
    card = json.loads((_train_data.model_dir(result) / "model_card.json").read_text())
    assert card["hardware"]["device"] == "cpu" and card["params"]["device"] == "cpu"
