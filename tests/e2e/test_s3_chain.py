"""The chain with no volume at all, for real on the kubelet node: a Dataset read from several
Parquet objects under one prefix of the cluster's S3 server (versitygw) and versioned in S3, a
TrainingJob that downloads that version and uploads its model to S3, and a ModelDeployment whose
pods download the model at start and answer a prediction. The examples are applied as written,
only moved into the test's namespace (with a copy of the ``mlops-s3`` Secret)."""

from __future__ import annotations

import io
import json
import pathlib
from typing import Any

import localcluster
import pyarrow.parquet as pq
import pytest
import seed_s3
import yaml

from conftest import Cluster
from e2e import install, pods
from e2e.conftest import RealNode

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _example(path: str) -> dict[str, Any]:
    [doc] = [d for d in yaml.safe_load_all((EXAMPLES / path).read_text()) if d]
    return dict(doc)


def _copy_secret(cluster: Cluster, name: str, ns: str) -> None:
    secret = cluster.get("secret", name, "default")
    assert secret is not None, f"make cluster-up applies default/{name}"
    copy = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": secret["data"]}
    cluster.apply(copy, ns)


@pytest.fixture
def operator_ns(cluster: Cluster, real_node: RealNode, e2e_namespace: str) -> str:
    install.helm_install(cluster, real_node, e2e_namespace)
    _copy_secret(cluster, "mlops-s3", e2e_namespace)
    return e2e_namespace


def test_s3_dataset_to_s3_model_to_prediction(cluster: Cluster, operator_ns: str) -> None:
    ns = operator_ns
    info = localcluster.s3_info()
    seed_s3.seed(info)

    def operator_log() -> str:
        return str(
            cluster.kubectl(
                "logs", "-n", ns, "-l", "app.kubernetes.io/name=mlops-operator", "--tail=60", check=False
            ).stdout
        )

    # A prefix of this test's own: the examples' paths, under the namespace.
    dataset = _example("datasets/s3-parquet.yaml")
    dataset["spec"]["storage"] = f"s3://{info['bucket']}/{ns}/versions/breast-cancer-s3"
    training = _example("trainingjobs/s3-output.yaml")
    model_uri = f"s3://{info['bucket']}/{ns}/models/breast-cancer-s3"
    training["spec"]["output"]["storageUri"] = model_uri
    deployment = _example("deployments/s3-model.yaml")
    for doc in (dataset, training, deployment):
        assert not any(k in json.dumps(doc) for k in ("pvc://", "file://")), doc
        cluster.apply(doc, ns)

    ds = pods.wait(
        cluster,
        ns,
        lambda: pods.phase(cluster, "dataset", "breast-cancer-s3", ns, "Ready"),
        timeout=400,
        what="the Dataset prepared from S3 into S3",
        logs=operator_log,
    )["status"]
    assert ds["rows"]["input"] == 569 and ds["storageUri"].startswith("s3://"), ds
    fs = seed_s3.filesystem(info)
    version = ds["storageUri"].removeprefix("s3://")
    assert fs.get_file_info(f"{version}/manifest.json").size > 0

    tj = pods.wait(
        cluster,
        ns,
        lambda: pods.phase(cluster, "trainingjob", "breast-cancer-s3", ns, "Succeeded"),
        timeout=400,
        what="the TrainingJob from an S3 version to an S3 model",
        logs=operator_log,
    )["status"]
    # The model is published as a version under the output: <output>/<modelVersion>.
    assert tj["modelUri"] == f"{model_uri}/{tj['modelVersion']}" and tj["datasetDigest"] == ds["digest"], tj
    assert tj["modelS3"]["secretRef"]["name"] == "mlops-s3", tj
    assert tj["metrics"]["accuracy"]["validation"] > 0.9, tj
    with fs.open_input_stream(f"{tj['modelUri'].removeprefix('s3://')}/model_card.json") as stream:
        card = json.loads(stream.read())
    assert card["dataset"]["digest"] == ds["digest"], card

    md = pods.wait(
        cluster,
        ns,
        lambda: pods.phase(cluster, "modeldeployment", "breast-cancer-s3", ns, "Ready"),
        timeout=300,
        what="the model served from S3",
        logs=operator_log,
    )["status"]
    assert md["servedModelUri"] == tj["modelUri"], md
    with fs.open_input_file(f"{version}/test.parquet") as handle:
        frame = pq.read_table(io.BytesIO(handle.read())).to_pandas()
    rows = frame.drop(columns=[ds["target"]]).head(20).to_dict(orient="records")
    svc = cluster.get("service", "breast-cancer-s3", ns)
    assert svc is not None
    answer = pods.post_json(
        cluster,
        ns,
        f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}/v1/models/breast-cancer-s3:predict",
        {"instances": rows},
    )
    truth = list(frame[ds["target"]].head(20))
    accuracy = sum(int(p == t) for p, t in zip(answer["predictions"], truth, strict=True)) / 20
    assert accuracy >= 0.8, answer
    # Nothing mounted a volume: the pods of the chain had only their config (a ConfigMap, or a
    # training run's own annotation through the downward API), /tmp and the Secret.
    for pod in cluster.list("pod", ns, selector="app.kubernetes.io/managed-by=mlops-operator"):
        kinds = {k for v in pod["spec"].get("volumes") or [] for k in v if k != "name"}
        assert kinds <= {"configMap", "downwardAPI", "emptyDir", "secret", "projected"}, (
            pod["metadata"]["name"],
            kinds,
        )
