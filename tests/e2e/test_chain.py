"""The whole chain for real: the operator installed by its Helm chart runs on the real node and
turns a Dataset, a TrainingJob, a small sweep and a ModelDeployment into pods that prepare
data on a volume, train scikit-learn models, promote the best trial and answer a prediction
through a Service."""

from __future__ import annotations

import pathlib
from typing import Any

import realnode
import yaml

from conftest import Cluster
from e2e import install, pods
from e2e.conftest import RealNode

ROOT = pathlib.Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
SMALL = {"cpu": "100m", "memory": "512Mi"}


def _quickstart(kind: str) -> dict[str, Any]:
    for path in QUICKSTART.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == kind:
                return dict(doc)
    raise AssertionError(f"no {kind} in {QUICKSTART}")


def test_dataset_training_sweep_and_serving_run_for_real(
    cluster: Cluster, real_node: RealNode, e2e_namespace: str
) -> None:
    ns = e2e_namespace
    realnode.ensure_data_claim(ns)
    install.helm_install(cluster, real_node, ns)

    def operator_log() -> str:
        return cluster.kubectl(
            "logs", "-n", ns, "-l", "app.kubernetes.io/name=mlops-operator", "--tail=80", check=False
        ).stdout

    dataset = _quickstart("Dataset")
    dataset["spec"]["resources"] = SMALL
    training = _quickstart("TrainingJob")
    training["spec"]["resources"] = SMALL
    sweep = {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "HyperparameterSweep",
        "metadata": {"name": "iris-c"},
        "spec": {
            "trialTemplate": {
                **training["spec"],
                "model": {"estimator": "LogisticRegression", "params": {"max_iter": 300}},
            },
            "searchSpace": [{"name": "C", "type": "categorical", "values": [0.01, 10.0]}],
            "objective": {"metric": "accuracy", "direction": "maximize"},
            "algorithm": {"name": "grid"},
            "maxTrials": 2,
            "parallelism": 2,
            "promote": {"modelDeployment": "iris-best"},
        },
    }
    serving = _quickstart("ModelDeployment")
    serving["spec"]["resources"] = {"cpu": "100m", "memory": "384Mi"}
    for doc in (dataset, training, sweep, serving):
        cluster.apply(doc, ns)

    ds = pods.wait(
        cluster,
        ns,
        lambda: pods.phase(cluster, "dataset", "iris", ns, "Ready"),
        timeout=300,
        what="the Dataset prepared on the volume",
        logs=operator_log,
    )
    rows = ds["status"]["rows"]
    assert rows["input"] == 150 and rows["train"] + rows["validation"] + rows["test"] == rows["output"] >= 145
    digest = ds["status"]["digest"]
    assert (realnode.volume_path(ns) / "datasets" / digest / "train.parquet").exists()

    tj = pods.wait(
        cluster,
        ns,
        lambda: pods.phase(cluster, "trainingjob", training["metadata"]["name"], ns, "Succeeded"),
        timeout=300,
        what="the TrainingJob trained for real",
        logs=operator_log,
    )
    assert tj["status"]["datasetDigest"] == digest
    assert tj["status"]["objectiveValue"] > 0.8, tj["status"]
    assert tj["status"]["modelUri"].startswith("pvc://mlops-data/")
    assert tj["status"]["modelUri"].endswith(f"/{tj['status']['modelVersion']}"), tj["status"]
    [job_pod] = cluster.list(
        "pod", ns, selector=f"batch.kubernetes.io/job-name={training['metadata']['name']}-train"
    )
    assert job_pod["spec"]["nodeName"] == real_node.name

    hps = pods.wait(
        cluster,
        ns,
        lambda: pods.phase(cluster, "hyperparametersweep", "iris-c", ns, "Succeeded"),
        timeout=400,
        what="the sweep's two real trials",
        logs=operator_log,
    )
    best = hps["status"]["bestTrial"]
    assert best["objectiveValue"] > 0.8 and best["modelUri"], hps["status"]
    assert hps["status"]["progress"].startswith("2/"), hps["status"]
    promoted = pods.wait(
        cluster,
        ns,
        lambda: cluster.get("modeldeployment", "iris-best", ns),
        timeout=60,
        what="the promoted ModelDeployment",
    )
    assert promoted["spec"]["model"].get("storageUri") == best["modelUri"] or promoted["spec"]["model"].get(
        "sweepRef"
    )

    md = pods.wait(
        cluster,
        ns,
        lambda: pods.phase(cluster, "modeldeployment", serving["metadata"]["name"], ns, "Ready"),
        timeout=300,
        what="the model served",
        logs=operator_log,
    )
    svc = cluster.get("service", serving["metadata"]["name"], ns)
    assert svc is not None
    url = f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"
    row = {
        "sepal length (cm)": 6.7,
        "sepal width (cm)": 3.0,
        "petal length (cm)": 5.2,
        "petal width (cm)": 2.3,
    }
    answer = pods.post_json(
        cluster, ns, f"{url}/v1/models/{serving['metadata']['name']}:predict", {"instances": [row]}
    )
    assert answer["predictions"] == [2], answer  # virginica
    assert md["status"]["servedModelUri"] == tj["status"]["modelUri"]
