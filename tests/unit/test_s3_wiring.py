"""s3:// locations end to end in the pure code: URIs, what the reconcilers build (no volume for
an object store, the credentials Secret mounted read-only, the connection in the config), how a
trained model's connection reaches the ModelDeployment, and the storage interface on local disk."""

from __future__ import annotations

import datetime
import json
import pathlib
from typing import Any

import pydantic
import pytest

from mlops_operator.api import common, workload
from mlops_operator.api import dataset as ds_api
from mlops_operator.api import modeldeployment as md_api
from mlops_operator.api import trainingjob as tj_api
from mlops_operator.reconcile import dataset_build
from mlops_operator.reconcile import modeldeployment as rmd
from mlops_operator.reconcile import modeldeployment_build as md_build
from mlops_operator.reconcile import owner as rowner
from mlops_operator.reconcile import trainingjob as rtj
from mlops_operator.reconcile import workload as rworkload
from mlops_workloads import runtime, storage
from mlops_workloads.train import staging

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
SETTINGS = rworkload.WorkloadSettings(workload_image="mlops-workloads:test")
S3 = {
    "endpoint": "http://10.244.1.1:26900",
    "region": "us-east-1",
    "secretRef": {"name": "mlops-s3"},
    "virtualAddressing": False,
}
SECRET_DIR = f"{workload.SECRETS_DIR}/s3/mlops-s3"


def _pod(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def test_s3_uris_parse_join_and_have_no_local_path() -> None:
    loc = common.StorageLocation.parse("s3://mlops-examples/datasets/bc/")
    assert (loc.scheme, loc.bucket, loc.path, loc.remote) == ("s3", "mlops-examples", "datasets/bc", True)
    assert loc.join("abc").uri() == "s3://mlops-examples/datasets/bc/abc"
    assert (
        common.StorageLocation.parse("s3://mlops-examples").join("m", "x").uri() == "s3://mlops-examples/m/x"
    )
    with pytest.raises(ValueError, match="no local path"):
        loc.local_path()
    assert not common.StorageLocation.parse("pvc://data/x").remote


@pytest.mark.parametrize(
    ("conn", "fragment"),
    [
        ({"endpoint": "ftp://x"}, "pattern"),
        ({"endpoint": "http://host:9000", "secretRef": {"name": "Bad_Name"}}, "pattern"),
        ({"region": "US East"}, "pattern"),
        ({"accessKey": "AKIA..."}, "Extra inputs"),  # credentials never go in a spec
    ],
)
def test_bad_s3_connections_are_refused(conn: dict[str, Any], fragment: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=fragment):
        common.S3Connection.model_validate(conn)


def _dataset(spec: dict[str, Any]) -> ds_api.Dataset:
    return ds_api.Dataset.from_body(
        {"metadata": {"name": "bc", "namespace": "team", "uid": "u-1", "generation": 1}, "spec": spec}
    )


def test_an_s3_dataset_mounts_no_storage_volume_only_its_secret() -> None:
    ds = _dataset(
        {
            "sources": [{"file": {"uri": "s3://mlops-examples/datasets/bc/", "format": "parquet"}}],
            "storage": "s3://mlops-examples/versions/bc",
            "s3": S3,
        }
    )
    pod = _pod(dataset_build.build_job(ds, settings=SETTINGS))
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert not any("hostPath" in v or "persistentVolumeClaim" in v for v in volumes.values())
    secret = [v for v in volumes.values() if "secret" in v]
    assert secret == [{"name": "s3-0", "secret": {"secretName": "mlops-s3", "optional": True}}]
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts[SECRET_DIR]["readOnly"] is True
    config = dataset_build.prepare_config(ds, settings=SETTINGS)
    assert config.spec.s3 is not None and config.spec.s3.credentials_dir(config.secrets_root) == SECRET_DIR
    # Nothing secret in the config: the Secret's name only.
    assert "mlops-s3" in config.model_dump_json() and "AWS_SECRET" not in config.model_dump_json()


def test_a_local_dataset_mounts_no_secret_even_with_s3_settings() -> None:
    ds = _dataset({"sources": [{"sklearn": {"name": "iris"}}], "storage": "pvc://data/iris", "s3": S3})
    pod = _pod(dataset_build.build_job(ds, settings=SETTINGS))
    assert not any("secret" in v for v in pod["volumes"])


READY_S3 = {
    "spec": {"s3": S3},
    "status": {
        "phase": "Ready",
        "digest": "ab" * 32,
        "storageUri": "s3://mlops-examples/versions/bc/" + "ab" * 32,
        "task": "classification",
    },
}


def _tj(spec: dict[str, Any]) -> tj_api.TrainingJob:
    return tj_api.TrainingJob.from_body(
        {
            "metadata": {"name": "bc", "namespace": "team", "uid": "u-2", "generation": 1},
            "spec": {"datasetRef": {"name": "bc"}, "model": {"estimator": "LogisticRegression"}, **spec},
        }
    )


def _started(tj: tj_api.TrainingJob, dataset: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    plan = rtj.plan(tj, observed=rtj.Observed(dataset=dataset), now=NOW, settings=SETTINGS)
    kinds = {o["kind"]: o for o in plan.apply}
    assert "ConfigMap" not in kinds  # the config travels in the pod template
    annotations = kinds["Job"]["spec"]["template"]["metadata"]["annotations"]
    config: dict[str, Any] = json.loads(annotations["mlops.dev/config"])
    return kinds["Job"], config


def test_training_on_an_s3_dataset_stages_data_and_model_through_tmp() -> None:
    job, config = _started(_tj({}), READY_S3)
    # The default output is models/<ns>/<name> in the Dataset's bucket, with its connection.
    assert config["outputUri"] == "s3://mlops-examples/models/team/bc"
    assert config["outputS3"] == config["datasetS3"] == S3
    assert config["data"]["dir"] == f"{workload.STAGING_DIR}/data"
    assert config["data"]["train"] == f"{workload.STAGING_DIR}/data/train.parquet"
    assert config["outputDir"] == f"{workload.STAGING_DIR}/model"
    pod = _pod(job)
    assert [v for v in pod["volumes"] if "hostPath" in v or "persistentVolumeClaim" in v] == []
    assert [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v] == ["mlops-s3"]


def test_an_own_output_connection_wins_and_both_secrets_are_mounted() -> None:
    other = {
        "endpoint": "https://s3.eu-west-1.amazonaws.com",
        "secretRef": {"name": "team-models"},
        "virtualAddressing": True,
    }
    spec = {"output": {"storageUri": "s3://team-models/bc", "s3": other}}
    job, config = _started(_tj(spec), READY_S3)
    assert config["outputS3"] == other and config["datasetS3"] == S3
    assert sorted(v["secret"]["secretName"] for v in _pod(job)["volumes"] if "secret" in v) == [
        "mlops-s3",
        "team-models",
    ]


def test_a_pvc_output_from_an_s3_dataset_mounts_the_claim() -> None:
    job, config = _started(_tj({"output": {"storageUri": "pvc://models/bc"}}), READY_S3)
    # The trainer writes into the staging directory; the claim is mounted for the publish.
    assert "outputS3" not in config and config["outputDir"] == "/tmp/mlops-staging/model"
    assert {"name": "output", "mountPath": "/mnt/mlops/pvc/models"} in [
        {k: m[k] for k in ("name", "mountPath")} for m in _pod(job)["containers"][0]["volumeMounts"]
    ]
    assert any(v.get("persistentVolumeClaim", {}).get("claimName") == "models" for v in _pod(job)["volumes"])


def test_the_succeeded_run_records_how_to_reach_its_model() -> None:
    tj = _tj({})
    plan = rtj.plan(tj, observed=rtj.Observed(dataset=READY_S3), now=NOW, settings=SETTINGS)
    job = next(o for o in plan.apply if o["kind"] == "Job")
    stored = tj_api.TrainingJob.from_body(
        {
            "metadata": tj.metadata.model_dump(by_alias=True),
            "spec": tj.spec.to_api(),
            "status": plan.status.to_api(),
        }
    )
    job["status"] = {
        "succeeded": 1,
        "conditions": [{"type": "Complete", "status": "True"}],
        "startTime": "2026-01-02T03:04:05Z",
        "completionTime": "2026-01-02T03:05:05Z",
    }
    result = {
        "ok": True,
        "modelUri": "s3://mlops-examples/models/team/bc",
        "metrics": {"validation": {"accuracy": 0.9}},
    }
    pod = {
        "metadata": {
            "name": "bc-train-x",
            "labels": {"batch.kubernetes.io/job-name": job["metadata"]["name"]},
        },
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {"name": "train", "state": {"terminated": {"exitCode": 0, "message": json.dumps(result)}}}
            ],
        },
    }
    done = rtj.plan(
        stored,
        observed=rtj.Observed(dataset=READY_S3, job=job, pods=[pod]),
        now=NOW,
        settings=SETTINGS,
    )
    assert done.status.phase == "Succeeded", done.status.message
    assert done.status.model_s3 is not None and done.status.model_s3.to_api() == S3
    # A status written before status.modelS3 existed: the Job's config annotation still knows it.
    older = stored.model_copy(update={"status": stored.status.model_copy(update={"model_s3": None})})
    done = rtj.plan(
        older, observed=rtj.Observed(dataset=READY_S3, job=job, pods=[pod]), now=NOW, settings=SETTINGS
    )
    assert done.status.model_s3 is not None and done.status.model_s3.to_api() == S3


def _md(model: dict[str, Any]) -> md_api.ModelDeployment:
    return md_api.ModelDeployment.from_body(
        {
            "metadata": {"name": "bc", "namespace": "team", "uid": "u-3", "generation": 1},
            "spec": {"model": model},
        }
    )


def test_serving_an_s3_model_downloads_it_with_the_trainingjobs_connection() -> None:
    trained = {
        ("TrainingJob", "bc"): {
            "status": {"phase": "Succeeded", "modelUri": "s3://mlops-examples/models/team/bc", "modelS3": S3}
        }
    }
    plan = rmd.plan(
        _md({"trainingJobRef": "bc"}), observed=rmd.Observed(sources=trained), now=NOW, settings=SETTINGS
    )
    deployment = next(o for o in plan.apply if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    config = json.loads(next(e["value"] for e in container["env"] if e["name"] == "MLOPS_CONFIG"))
    assert config["modelDir"] == "s3://mlops-examples/models/team/bc" and config["s3"] == S3
    assert [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v] == ["mlops-s3"]
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"]["sizeLimit"] == md_build.REMOTE_MODEL_TMP
    # The spec's own connection wins over the TrainingJob's.
    own = {"endpoint": "http://other:9000", "virtualAddressing": False}
    plan = rmd.plan(
        _md({"trainingJobRef": "bc", "s3": own}),
        observed=rmd.Observed(sources=trained),
        now=NOW,
        settings=SETTINGS,
    )
    deployment = next(o for o in plan.apply if o["kind"] == "Deployment")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert json.loads(next(e["value"] for e in env if e["name"] == "MLOPS_CONFIG"))["s3"] == own


# ---------------------------------------------------------------------------------------------
# The storage interface on local disk (the S3 side runs against the real server in
# tests/integration/test_storage_s3.py)
# ---------------------------------------------------------------------------------------------


def test_local_store_lists_uploads_fetches_and_removes(tmp_path: pathlib.Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.parquet").write_bytes(b"a")
    (src / "sub" / "b.parquet").write_bytes(b"bb")
    (src / ".hidden.parquet").write_bytes(b"h")
    (src / "_SUCCESS").write_bytes(b"")
    (src / "card.json").write_text("{}")
    store = storage.open_store(f"file://{tmp_path}/dst")
    assert not store.is_dir() and store.files() == []
    store.upload(src, marker="card.json")
    assert store.is_file("card.json") and store.is_dir()
    assert [p.rsplit("/", 1)[-1] for p in store.files(suffixes=(".parquet",))] == ["a.parquet", "b.parquet"]
    assert storage.fetch(store, scratch=tmp_path / "unused", marker="card.json") == store.local_path()
    assert store.read_bytes("sub/b.parquet") == b"bb"
    store.write_bytes("x/y.txt", b"y")
    assert (tmp_path / "dst" / "x" / "y.txt").read_bytes() == b"y"
    assert storage.open_store(f"file://{tmp_path}").children() == ["dst", "src"]
    store.remove()
    assert not (tmp_path / "dst").exists()


def test_an_incomplete_directory_is_refused(tmp_path: pathlib.Path) -> None:
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "train.parquet").write_bytes(b"x")
    with pytest.raises(runtime.WorkloadError, match=r"manifest\.json is missing"):
        storage.fetch(
            storage.open_store(f"file://{tmp_path}/v"), scratch=tmp_path / "s", marker="manifest.json"
        )


def test_missing_credentials_name_the_secret_and_the_keys(tmp_path: pathlib.Path) -> None:
    conn = common.S3Connection.model_validate(S3)
    with pytest.raises(runtime.WorkloadError) as err:
        storage.filesystem(conn, secrets_root=str(tmp_path))
    assert err.value.reason == "CredentialsMissing"
    assert "'mlops-s3'" in err.value.message and common.S3_ACCESS_KEY_ID in err.value.message


def test_staging_paths_follow_the_config() -> None:
    config = tj_api.TrainConfig.model_validate(
        {
            "name": "bc",
            "task": "classification",
            "metrics": ["accuracy"],
            "objectiveMetric": "accuracy",
            "objectiveDirection": "maximize",
            "datasetUri": "pvc://data/versions/x",
            "outputUri": "s3://bkt/models/bc",
        }
    )
    assert staging.dataset_dir(config) == pathlib.Path("/mnt/mlops/pvc/data/versions/x")
    assert staging.output_dir(config) == pathlib.Path(f"{workload.STAGING_DIR}/model")


def test_new_spec_fields_at_their_defaults_keep_the_jobs_name() -> None:
    """An upgrade must not re-prepare every Dataset: the hash of a spec that leaves out the
    fields added since (s3, scale, refresh, retention) is the hash of the old spec."""
    old = {"sources": [{"sklearn": {"name": "iris"}}], "storage": "pvc://data/iris"}
    baseline = _dataset(old)
    wire = {k: v for k, v in baseline.spec.to_api().items() if k not in ("scale", "retention")}
    assert dataset_build.spec_hash(baseline) == rowner.spec_hash(wire)
    explicit = _dataset({**old, "scale": {"inMemoryRows": 1_000_000}, "retention": {"keepVersions": 5}})
    assert dataset_build.child_name(explicit) == dataset_build.child_name(baseline)
    assert dataset_build.child_name(
        _dataset({**old, "scale": {"sampleRows": 5000}})
    ) != dataset_build.child_name(baseline)
