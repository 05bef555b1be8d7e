"""The workloads' storage interface against the test cluster's real S3 server (versitygw).

The same code the pods run, in-process: ``mlops_workloads.storage`` directly, then the whole
chain without a volume — prepare a Dataset from a prefix of several Parquet files into an
``s3://`` storage, train on that version into an ``s3://`` output, and load the served model
from S3 as the model server does at start. Credentials reach the code as the pods get them:
files of the ``mlops-s3`` Secret under ``<secrets root>/s3/mlops-s3/``.
"""

from __future__ import annotations

import json
import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import localcluster
import pandas as pd
import pytest
import seed_s3

from conftest import Cluster
from mlops_operator.api import common
from mlops_operator.api import dataset as ds_api
from mlops_operator.api import modeldeployment as md_api
from mlops_operator.api import trainingjob as tj_api
from mlops_workloads import runtime, storage
from mlops_workloads.prepare import pipeline
from mlops_workloads.serve import __main__ as serve_main
from mlops_workloads.serve import bundle as bundle_mod
from mlops_workloads.train import run as train_run
from mlops_workloads.train import staging

pytestmark = pytest.mark.integration
SECRET = "mlops-s3"


@pytest.fixture(scope="module")
def info(cluster: Cluster) -> dict[str, str]:
    found: dict[str, str] = localcluster.s3_info()
    seed_s3.seed(found)
    return found


@pytest.fixture(scope="module")
def secrets_root(info: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """The Secret's keys as the kubelet mounts them."""
    root = tmp_path_factory.mktemp("secrets")
    folder = root / "s3" / SECRET
    folder.mkdir(parents=True)
    (folder / common.S3_ACCESS_KEY_ID).write_text(info["access_key"])
    (folder / common.S3_SECRET_ACCESS_KEY).write_text(info["secret_key"])
    return str(root)


@pytest.fixture(scope="module")
def connection(info: dict[str, str]) -> common.S3Connection:
    return common.S3Connection(
        endpoint=info["endpoint"], region=info["region"], secret_ref=common.SecretRef(name=SECRET)
    )


@pytest.fixture
def prefix(info: dict[str, str]) -> Iterator[str]:
    """A fresh ``s3://<bucket>/t-<hex>`` prefix, emptied afterwards."""
    key = f"t-{uuid.uuid4().hex[:8]}"
    yield f"s3://{info['bucket']}/{key}"
    root = common.StorageLocation.parse(f"s3://{info['bucket']}/{key}")
    storage.Store(location=root, fs=seed_s3.filesystem(info), path=f"{info['bucket']}/{key}").remove()


def test_store_round_trip_markers_and_removal(
    prefix: str, connection: common.S3Connection, secrets_root: str, tmp_path: pathlib.Path
) -> None:
    store = storage.open_store(prefix, connection=connection, secrets_root=secrets_root).join("v1")
    assert not store.is_dir()
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    (src / "train.parquet").write_bytes(b"p" * (6 << 20))  # big enough for a multipart upload
    (src / "nested" / "b.json").write_text("{}")
    (src / "manifest.json").write_text('{"digest": "x"}')
    store.upload(src, marker="manifest.json")
    assert store.is_dir() and store.is_file("manifest.json")
    assert [p.rsplit("/", 1)[-1] for p in store.files()] == ["manifest.json", "b.json", "train.parquet"]
    local = storage.fetch(store, scratch=tmp_path / "down", marker="manifest.json")
    assert (local / "nested" / "b.json").read_text() == "{}"
    assert (local / "train.parquet").stat().st_size == 6 << 20
    parent = storage.open_store(prefix, connection=connection, secrets_root=secrets_root)
    assert parent.children() == ["v1"]
    store.write_bytes("extra.txt", b"x")
    assert store.read_bytes("extra.txt") == b"x"
    store.remove()
    assert not store.is_dir()
    with pytest.raises(runtime.WorkloadError, match=r"manifest\.json is missing"):
        storage.fetch(store, scratch=tmp_path / "again", marker="manifest.json")


def test_wrong_credentials_fail_with_the_servers_answer(
    prefix: str, connection: common.S3Connection, tmp_path: pathlib.Path
) -> None:
    folder = tmp_path / "s3" / SECRET
    folder.mkdir(parents=True)
    (folder / common.S3_ACCESS_KEY_ID).write_text("AKIAWRONGWRONGWRONG1")
    (folder / common.S3_SECRET_ACCESS_KEY).write_text("not-the-secret-key-at-all-0123456789abcd")
    store = storage.open_store(prefix, connection=connection, secrets_root=str(tmp_path))
    with pytest.raises(runtime.WorkloadError) as err:
        store.is_file("anything")
    assert err.value.reason == "StorageUnreadable"
    assert "not-the-secret-key" not in err.value.message


def _prepare(
    info: dict[str, str], prefix: str, connection: common.S3Connection, secrets_root: str
) -> dict[str, Any]:
    spec = ds_api.DatasetSpec.model_validate(
        {
            "sources": [
                {
                    "file": {
                        "uri": f"s3://{info['bucket']}/datasets/breast-cancer-parquet/",
                        "format": "parquet",
                    }
                }
            ],
            "storage": f"{prefix}/datasets/bc",
            "s3": connection.to_api(),
        }
    )
    config = ds_api.PrepareConfig(dataset="bc", namespace="t", spec=spec, secrets_root=secrets_root)
    return pipeline.prepare(config)


def test_prepare_train_and_serve_through_s3_only(
    info: dict[str, str],
    prefix: str,
    connection: common.S3Connection,
    secrets_root: str,
    tmp_path: pathlib.Path,
) -> None:
    summary = _prepare(info, prefix, connection, secrets_root)
    assert summary["rows"]["input"] == 569  # 190 + 190 + 189 rows in three objects
    version = summary["storageUri"]
    assert version == f"{prefix}/datasets/bc/{summary['digest']}" and not summary["reused"]
    store = storage.open_store(version, connection=connection, secrets_root=secrets_root)
    manifest = json.loads(store.read_bytes("manifest.json"))
    assert manifest["digest"] == summary["digest"]
    assert all(store.is_file(name) for name in manifest["files"])
    # The same data again: the version is found by its manifest and not written twice.
    assert _prepare(info, prefix, connection, secrets_root)["reused"] is True

    config = tj_api.TrainConfig.model_validate(
        {
            "name": "bc",
            "namespace": "t",
            "estimator": "LogisticRegression",
            "importPath": "sklearn.linear_model.LogisticRegression",
            "task": "classification",
            "params": {"max_iter": 500},
            "metrics": ["accuracy"],
            "objectiveMetric": "accuracy",
            "objectiveDirection": "maximize",
            "datasetUri": version,
            "datasetDigest": summary["digest"],
            "datasetS3": connection.to_api(),
            "outputUri": f"{prefix}/models/t/bc",
            "outputS3": connection.to_api(),
            "outputDir": str(tmp_path / "staging" / "model"),
            "data": {
                "dir": str(tmp_path / "staging" / "data"),
                "train": str(tmp_path / "staging" / "data" / "train.parquet"),
                "validation": str(tmp_path / "staging" / "data" / "validation.parquet"),
                "test": str(tmp_path / "staging" / "data" / "test.parquet"),
                "preprocessor": str(tmp_path / "staging" / "data" / "preprocessor.skops"),
                "schema": str(tmp_path / "staging" / "data" / "schema.json"),
            },
            "secretsRoot": secrets_root,
        }
    )
    result = train_run.train(config)
    # Published as an immutable version: <output>/<version>, the card last.
    model_version = result["modelVersion"]
    assert len(model_version) == 16 and result["modelUri"] == f"{prefix}/models/t/bc/{model_version}"
    assert result["metrics"]["validation"]["accuracy"] > 0.9
    model_store = storage.open_store(result["modelUri"], connection=connection, secrets_root=secrets_root)
    assert model_store.is_file("model_card.json") and model_store.is_file("model.skops")
    card = json.loads(model_store.read_bytes("model_card.json"))
    assert card["version"] == model_version and card["modelUri"] == result["modelUri"]
    # The same staged model published again is found by its card and not written over.
    again = staging.publish(config, tmp_path / "staging" / "model")
    assert again == staging.Published(version=model_version, uri=result["modelUri"], existed=True)
    assert json.loads(model_store.read_bytes("model_card.json")) == card

    serve = md_api.ServeConfig(
        model_dir=result["modelUri"],
        s3=connection,
        secrets_root=secrets_root,
        staging_dir=str(tmp_path / "serve"),
    )
    local = serve_main.model_path(serve)
    assert pathlib.Path(local, "model.skops").is_file()
    bundle = bundle_mod.load(local)
    test = pd.read_parquet(tmp_path / "staging" / "data" / "test.parquet")
    predicted = bundle.pipeline.predict(test.drop(columns=["target"]))
    assert (predicted == test["target"]).mean() > 0.9


def test_one_object_in_memory_and_the_same_data_streamed(
    info: dict[str, str], prefix: str, connection: common.S3Connection, secrets_root: str
) -> None:
    """``datasets/iris.csv`` is one small object: read in memory; forced to stream
    (``scale.inMemoryRows`` below its rows) it makes the very same version."""
    digests = []
    for in_memory_rows in (1_000_000, 10):
        spec = ds_api.DatasetSpec.model_validate(
            {
                "sources": [{"file": {"uri": f"s3://{info['bucket']}/datasets/iris.csv"}}],
                "storage": f"{prefix}/datasets/iris-{in_memory_rows}",
                "s3": connection.to_api(),
                "scale": {"inMemoryRows": in_memory_rows},
            }
        )
        config = ds_api.PrepareConfig(dataset="iris", namespace="t", spec=spec, secrets_root=secrets_root)
        summary = pipeline.prepare(config)
        assert summary["rows"]["input"] == 150 and summary["task"] == "classification", summary
        digests.append(summary["digest"])
    assert digests[0] == digests[1]
