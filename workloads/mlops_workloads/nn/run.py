"""The training run of the PyTorch networks (``train.run`` sends library ``pytorch`` here).

The same Dataset loading and checks, the same metrics and the same result keys as every
other estimator, with what a network adds:
- the device is chosen (cuda when the pod has GPUs and PyTorch sees one) and the one the
  parameters really lived on is recorded; GPUs requested but none usable is
  ``GPUUnavailable`` unless ``allowCPUFallback``;
- with ``WORLD_SIZE`` > 1 every rank joins one process group (gloo on the CPU, nccl on
  GPUs) for the fit only; rank 0 alone evaluates, exports and writes the model directory,
  the other ranks report a small result and write nothing;
- the model directory holds ``model.onnx`` (the network, run by onnxruntime in the server)
  and ``preprocessor.skops`` (the Dataset's fitted preprocessor) instead of ``model.skops``,
  and the card adds the framework, the world size, the epochs trained, the best epoch, a
  bounded per-epoch loss history and the largest difference between onnxruntime's and
  PyTorch's predictions on the test split.

Cross-validation (a world of one only) clones the network into each fold like any
estimator; a fold has no validation split, so it trains for ``epochs`` epochs.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from typing import Any

import torch
import torch.distributed

from mlops_operator.api import trainingjob
from mlops_workloads import runtime, usage
from mlops_workloads.nn import distributed, mlp, onnx_io
from mlops_workloads.train import artifacts, staging
from mlops_workloads.train import device as device_mod
from mlops_workloads.train import estimator as est_mod
from mlops_workloads.train import run as train_run

FRAMEWORK = "pytorch"
ONNX_TOLERANCE = 1e-5
"""Above this max |onnxruntime - PyTorch| (relative to the output's scale) the result warns."""


def _log_progress() -> None:
    """Per-epoch progress on stderr (the pod's log), unless logging is set up already."""
    if not mlp.LOG.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        mlp.LOG.addHandler(handler)
        mlp.LOG.setLevel(logging.INFO)


def _split_matrix(dataset: artifacts.PreparedDataset, split: str) -> tuple[Any, Any] | None:
    if len(dataset.splits[split]) == 0:
        return None
    x, y = dataset.xy(split)
    return mlp.as_matrix(dataset.preprocessor.transform(x)), y


def train(
    config: trainingjob.TrainConfig,
    *,
    dataset: artifacts.PreparedDataset,
    classes: list[Any],
    notes: train_run.Warnings,
    started: float,
) -> dict[str, Any]:
    """Fit, (on rank 0) evaluate, export and save one network; return the termination result."""
    from sklearn import pipeline

    _log_progress()

    world = distributed.from_env(workers=config.workers)
    torch_device, why = device_mod.choose_torch(config, local_rank=world.local_rank)
    if why:
        device_mod.check(config, device_mod.CPU, why=why, warn=notes.add)
    model = est_mod.build(config, classes=classes)
    model.set_params(device=str(torch_device))

    x_train, y_train = dataset.xy("train")
    train_matrix = mlp.as_matrix(dataset.preprocessor.transform(x_train))
    validation = _split_matrix(dataset, "validation")
    if validation is None:
        notes.add("no validation split: no early stopping, the last epoch's weights are kept")
    cv: dict[str, dict[str, float]] = {}
    try:
        if config.cv_folds and world.distributed:
            notes.add(f"crossValidation is not run with workers={world.size}")
        elif config.cv_folds:
            cv = train_run._cross_validate(
                config, dataset=dataset, model=model, x=x_train, y=y_train, classes=classes, notes=notes
            )
        with distributed.session(world, torch_device), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(train_matrix, y_train, eval_set=validation)
    except torch.OutOfMemoryError as exc:
        raise runtime.WorkloadError(
            "OutOfMemory",
            f"{torch_device} ran out of memory: lower batch_size or hidden_units ({exc})"[:1024],
        ) from exc
    except RuntimeError as exc:
        text = str(exc).lower()
        lost = isinstance(exc, torch.distributed.DistError) or (
            world.distributed and ("cuda" not in text or "nccl" in text)
        )
        if not lost:
            raise train_run._fit_error(config, exc) from exc
        # A lost peer or rendezvous (gloo raises a plain RuntimeError): retried, not permanent.
        raise runtime.WorkloadError(
            "DistributedFailed",
            f"torch.distributed failed on rank {world.rank} of {world.size} (a worker failed or was lost): "
            f"{exc}"[:1024],
        ) from exc
    except (ValueError, TypeError) as exc:
        raise train_run._fit_error(config, exc) from exc
    notes.record(caught)
    fit_seconds = float(model.fit_seconds_)
    device = device_mod.check(config, model.device_, why=why or "the network ran on the CPU", warn=notes.add)
    requested = device_mod.requested(config)
    common_keys = {
        "estimator": config.estimator,
        "datasetDigest": dataset.digest,
        "framework": FRAMEWORK,
        "worldSize": world.size,
        "epochs": model.epochs_trained_,
        "bestEpoch": model.best_epoch_,
        "device": device,
        "deviceRequested": requested,
        "fitSeconds": round(fit_seconds, 3),
    }
    if not world.main:
        return {
            **common_keys,
            "rank": world.rank,
            "durationSeconds": round(time.perf_counter() - started, 3),
            "warnings": notes.items,
            "resourcesUsed": usage.measure(),
        }

    fitted = pipeline.Pipeline([("preprocess", dataset.preprocessor), ("model", model)])
    outcome = train_run.evaluate_fitted(
        config, fitted, dataset, notes, started, fit_seconds=fit_seconds, classes=classes, cv=cv
    )
    rows = outcome.rows

    onnx_model = onnx_io.export(model, estimator=config.estimator)
    check_split = "test" if rows["test"] else "validation" if rows["validation"] else "train"
    check_x = (
        train_matrix
        if check_split == "train"
        else mlp.as_matrix(dataset.preprocessor.transform(dataset.xy(check_split)[0]))
    )
    difference = onnx_io.max_difference(onnx_model, model, check_x)
    scale = 1.0 if config.task == "classification" else max(1.0, abs(model.y_mean_) + model.y_std_)
    if difference > ONNX_TOLERANCE * scale:
        notes.add(f"model.onnx differs from the PyTorch model by up to {difference:.3g} on {check_split}")

    used = usage.measure()  # one measure for the card and the result
    card = train_run.model_card(
        config,
        model,
        outcome,
        classes=classes,
        device=device,
        extra={
            "framework": FRAMEWORK,
            "format": "onnx",
            "worldSize": world.size,
            "epochs": model.epochs_trained_,
            "bestEpoch": model.best_epoch_,
            "bestValidationLoss": model.best_validation_loss_,
            "history": model.history(),
            "onnx": {
                "file": artifacts.ONNX_MODEL,
                "opset": onnx_io.OPSET,
                "input": onnx_io.INPUT,
                "output": onnx_io.output_name(model),
                "featuresIn": model.n_features_in_,
                "check": {"split": check_split, "maxAbsDifference": difference},
            },
            "image": config.image or None,
        },
        hardware={"worldSize": world.size},
        used=used,
    )
    out = staging.output_dir(config)
    size = artifacts.write_onnx_model_dir(
        out, model=onnx_model, card=card, dataset=dataset, output_uri=config.output_uri
    )
    published = staging.publish(config, out)  # rank 0 only: the other ranks returned above
    return {
        **common_keys,
        **train_run.final_result(config, outcome, device=device, size=size, published=published, used=used),
    }
