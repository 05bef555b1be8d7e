"""Prepare then train, end to end on the local disk: the two workloads agree on the data contract.

The Dataset's real prepare workload writes a version directory (including a categorical
column it one-hot encodes); the training workload reads it through the operator's config
path and writes a model directory whose Pipeline predicts from raw rows.
"""

from __future__ import annotations

import json
import pathlib

import pandas as pd
import pytest

from mlops_operator.api import dataset as dataset_api
from mlops_operator.api import trainingjob, workload
from mlops_operator.reconcile import trainingjob as rtj
from mlops_operator.reconcile import workload as rworkload
from mlops_workloads import runtime
from mlops_workloads.prepare import pipeline
from mlops_workloads.train import artifacts, run

CSV = "a,b,color,y\n" + "".join(
    f"{i % 17},{(i * 7) % 11 * 0.5},{['red', 'blue', 'green'][i % 3]},{'dog' if (i % 17) > 8 else 'cat'}\n"
    for i in range(240)
)


def test_prepare_then_train(tmp_path: pathlib.Path) -> None:
    (tmp_path / "cm" / "0").mkdir(parents=True)
    (tmp_path / "cm" / "0" / "rows.csv").write_text(CSV)
    spec = dataset_api.DatasetSpec.model_validate(
        {
            "storage": f"file://{tmp_path}/datasets/rows",
            "sources": [{"configMap": {"name": "inline", "key": "rows.csv"}}],
            "schema": {"target": "y"},
        }
    )
    prepared = pipeline.prepare(
        dataset_api.PrepareConfig(dataset="rows", spec=spec, config_map_root=str(tmp_path / "cm")),
        scratch_dir=str(tmp_path),
    )
    # The operator's view of the Ready Dataset → the TrainingJob's config.
    ready = {
        "status": {
            "phase": "Ready",
            "digest": prepared["digest"],
            "storageUri": prepared["storageUri"],
            "task": prepared["task"],
        }
    }
    tj = trainingjob.TrainingJob.from_body(
        {
            "metadata": {"name": "rows-hgb", "namespace": "team"},
            "spec": {
                "datasetRef": {"name": "rows"},
                "model": {"estimator": "HistGradientBoostingClassifier", "params": {"max_iter": 20}},
                "metrics": ["accuracy", "roc_auc"],
                "crossValidation": {"folds": 3},
            },
        }
    )
    plan = rtj.plan(
        tj,
        observed=rtj.Observed(dataset=ready),
        now=pd.Timestamp("2025-01-01", tz="UTC"),
        settings=rworkload.WorkloadSettings(),
    )
    job = next(o for o in plan.apply if o["kind"] == "Job")
    # The pod's config file is its template's annotation (a downwardAPI volume): write the text
    # where $MLOPS_CONFIG_FILE names it and let the trainer read it as in the pod.
    config_file = tmp_path / "config" / workload.CONFIG_KEY
    config_file.parent.mkdir()
    config_file.write_text(job["spec"]["template"]["metadata"]["annotations"]["mlops.dev/config"])
    config = runtime.load_config(trainingjob.TrainConfig, {workload.CONFIG_FILE_ENV: str(config_file)})
    assert config.output_uri == f"file://{tmp_path}/datasets/models/team/rows-hgb"

    result = run.train(config)
    assert result["datasetDigest"] == prepared["digest"]
    assert result["metrics"]["test"]["accuracy"] > 0.8
    assert set(result["metrics"]["cv"]) == {"accuracy", "roc_auc"}
    out = pathlib.Path(result["modelUri"].removeprefix("file://"))
    model = artifacts.load_skops(out / "model.skops")
    rows = pd.DataFrame({"a": [2, 15], "b": [1.0, 2.5], "color": ["red", "purple"]})
    assert list(model.predict(rows)) == ["cat", "dog"]
    card = json.loads((out / "model_card.json").read_text())
    assert card["dataset"]["digest"] == prepared["digest"] and card["classes"] == ["cat", "dog"]
    assert json.loads((out / "schema.json").read_text())["target"] == "y"


def test_train_refuses_a_dataset_version_other_than_the_pinned_one(tmp_path: pathlib.Path) -> None:
    spec = dataset_api.DatasetSpec.model_validate(
        {"storage": f"file://{tmp_path}/datasets/iris", "sources": [{"sklearn": {"name": "iris"}}]}
    )
    prepared = pipeline.prepare(
        dataset_api.PrepareConfig(dataset="iris", spec=spec), scratch_dir=str(tmp_path)
    )
    config = trainingjob.TrainConfig(
        name="x",
        estimator="LogisticRegression",
        import_path="sklearn.linear_model.LogisticRegression",
        task="classification",
        metrics=["accuracy"],
        objective_metric="accuracy",
        objective_direction="maximize",
        dataset_uri=prepared["storageUri"],
        dataset_digest="sha256:other",
        output_uri=f"file://{tmp_path}/m",
    )
    from mlops_workloads import runtime

    with pytest.raises(runtime.WorkloadError) as err:
        run.train(config)
    assert err.value.reason == "DatasetDigestMismatch"
