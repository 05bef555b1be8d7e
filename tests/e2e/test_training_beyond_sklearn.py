"""Training beyond scikit-learn, for real on the kubelet node: the built-in PyTorch network on two
workers (torch.distributed over gloo, an Indexed Job meeting at a ClusterIP), a worker killed
mid-run, and a team's own script trained, tuned by a sweep and served, through the documented
trainer contract only."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
import realnode
import yaml

from conftest import Cluster
from e2e import install, pods
from e2e.conftest import RealNode

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SMALL = {"cpu": "200m", "memory": "1Gi"}
INDEX = "batch.kubernetes.io/job-completion-index"
KILLED = "batch.kubernetes.io/job-name=killed-train"


def _docs(path: pathlib.Path) -> list[dict[str, Any]]:
    return [dict(d) for d in yaml.safe_load_all(path.read_text()) if d]


def _example(path: str, kind: str) -> dict[str, Any]:
    return next(d for d in _docs(EXAMPLES / path) if d["kind"] == kind)


def _status(cluster: Cluster, kind: str, name: str, ns: str) -> dict[str, Any]:
    return dict((cluster.get(kind, name, ns) or {}).get("status") or {})


def _phase(cluster: Cluster, kind: str, name: str, ns: str, want: str) -> dict[str, Any] | None:
    obj = pods.phase(cluster, kind, name, ns, want)
    return dict(obj.get("status") or {}) if obj is not None else None


def _prepared(cluster: Cluster, ns: str, operator_log: Any) -> None:
    dataset = _example("datasets/breast-cancer.yaml", "Dataset")
    dataset["spec"]["resources"] = {"cpu": "100m", "memory": "512Mi"}
    cluster.apply(dataset, ns)
    pods.wait(
        cluster,
        ns,
        lambda: _phase(cluster, "dataset", "breast-cancer", ns, "Ready"),
        timeout=300,
        what="the breast_cancer Dataset",
        logs=operator_log,
    )


@pytest.fixture
def operator_ns(cluster: Cluster, real_node: RealNode, gpu_image: str, e2e_namespace: str) -> str:
    realnode.ensure_data_claim(e2e_namespace)
    install.helm_install(cluster, real_node, e2e_namespace)
    return e2e_namespace


def _model_dir(ns: str, status: dict[str, Any]) -> pathlib.Path:
    """The published model version a TrainingJob's status names (pvc://<claim>/models/<ns>/<name>/<v>)."""
    claim, _, path = status["modelUri"].removeprefix("pvc://").partition("/")
    assert claim == realnode.DATA_CLAIM and status["modelVersion"] == path.rsplit("/", 1)[1], status
    return realnode.volume_path(ns) / path


def _log(cluster: Cluster, ns: str, selector: str = "app.kubernetes.io/name=mlops-operator") -> Any:
    return lambda: cluster.kubectl("logs", "-n", ns, "-l", selector, "--tail=60", check=False).stdout


def test_pytorch_on_two_workers_and_a_killed_worker(cluster: Cluster, operator_ns: str) -> None:
    ns = operator_ns
    operator_log = _log(cluster, ns)
    _prepared(cluster, ns, operator_log)

    training = _example("trainingjobs/pytorch-ddp.yaml", "TrainingJob")
    training["spec"]["resources"] = SMALL
    name = training["metadata"]["name"]
    cluster.apply(training, ns)
    status = pods.wait(
        cluster,
        ns,
        lambda: _phase(cluster, "trainingjob", name, ns, "Succeeded"),
        timeout=600,
        what="the two-worker PyTorch run",
        logs=operator_log,
    )
    assert status["worldSize"] == 2 and status["device"] == "cpu", status
    assert status["metrics"]["accuracy"]["validation"] >= 0.9, status["metrics"]
    workers = cluster.list("pod", ns, selector=f"batch.kubernetes.io/job-name={name}-train")
    assert sorted(
        p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in workers
    ) == [
        "0",
        "1",
    ]
    model_dir = _model_dir(ns, status)
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["worldSize"] == 2 and (model_dir / "model.onnx").exists(), card

    # Kill a worker mid-run: with backoffLimit 0 the whole run fails, and no model is written.
    long = json.loads(json.dumps(training))
    long["metadata"]["name"] = "killed"
    long["spec"]["model"]["params"].update({"epochs": 10000, "patience": 0})
    long["spec"]["runPolicy"] = {"backoffLimit": 0, "activeDeadlineSeconds": 900}
    cluster.apply(long, ns)
    rank0 = _log(
        cluster, ns, "batch.kubernetes.io/job-name=killed-train,batch.kubernetes.io/job-completion-index=0"
    )
    pods.wait(
        cluster,
        ns,
        lambda: "epoch" in rank0(),
        timeout=600,
        what="both workers training (rank 0 logging epochs)",
        logs=operator_log,
    )
    [victim] = cluster.list(
        "pod",
        ns,
        selector=f"{KILLED},{INDEX}=1",
    )
    cluster.kubectl("delete", "pod", "-n", ns, victim["metadata"]["name"], "--wait=false")
    failed = pods.wait(
        cluster,
        ns,
        lambda: _phase(cluster, "trainingjob", "killed", ns, "Failed"),
        timeout=300,
        what="the run with a killed worker to fail as a whole",
        logs=operator_log,
    )
    assert failed["reason"], failed
    assert not list((realnode.volume_path(ns) / "models" / ns).glob("killed/**/model.onnx"))


def test_own_code_trained_tuned_and_served(cluster: Cluster, operator_ns: str) -> None:
    ns = operator_ns
    operator_log = _log(cluster, ns)
    _prepared(cluster, ns, operator_log)

    docs = _docs(EXAMPLES / "trainingjobs" / "own-code.yaml")
    code = next(d for d in docs if d["kind"] == "ConfigMap")
    training = next(d for d in docs if d["kind"] == "TrainingJob")
    training["spec"]["resources"] = {"cpu": "200m", "memory": "512Mi"}
    cluster.apply(code, ns)
    cluster.apply(training, ns)
    name = training["metadata"]["name"]
    status = pods.wait(
        cluster,
        ns,
        lambda: _phase(cluster, "trainingjob", name, ns, "Succeeded"),
        timeout=400,
        what="the user's own script",
        logs=operator_log,
    )
    assert (
        status["objectiveValue"] >= 0.9
        and status["epochs"] == training["spec"]["trainer"]["params"]["epochs"]
    )
    assert status["imageId"], status
    card = json.loads((_model_dir(ns, status) / "model_card.json").read_text())
    assert card["command"] == training["spec"]["trainer"]["command"], card

    sweep = _example("sweeps/own-code-tpe.yaml", "HyperparameterSweep")
    sweep["spec"].update({"maxTrials": 3, "parallelism": 3})
    sweep["spec"]["searchSpace"][0].update({"low": 3, "high": 9})  # epochs: rungs 3 and 9
    sweep["spec"]["trialTemplate"]["resources"] = {"cpu": "100m", "memory": "512Mi"}
    cluster.apply(sweep, ns)
    hps = pods.wait(
        cluster,
        ns,
        lambda: _phase(cluster, "hyperparametersweep", "own-code-tpe", ns, "Succeeded"),
        timeout=600,
        what="the sweep over the script's params",
        logs=operator_log,
    )
    best = hps["bestTrial"]
    assert best["objectiveValue"] > 0.8 and best["modelUri"], hps
    deployment = sweep["spec"]["promote"]["modelDeployment"]
    md = pods.wait(
        cluster,
        ns,
        lambda: _phase(cluster, "modeldeployment", deployment, ns, "Ready"),
        timeout=300,
        what="the promoted model served",
        logs=operator_log,
    )
    assert md["servedModelUri"] == best["modelUri"], md
    svc = cluster.get("service", deployment, ns)
    assert svc is not None
    dataset = _status(cluster, "dataset", "breast-cancer", ns)
    import pyarrow.parquet as pq

    version = dataset["storageUri"].removeprefix(f"pvc://{realnode.DATA_CLAIM}/")
    frame = pq.read_table(realnode.volume_path(ns) / version / "test.parquet").to_pandas()
    target = dataset["target"]
    rows = frame.drop(columns=[target]).head(20).to_dict(orient="records")
    answer = pods.post_json(
        cluster,
        ns,
        f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}/v1/models/{deployment}:predict",
        {"instances": rows},
    )
    accuracy = (
        sum(int(p == t) for p, t in zip(answer["predictions"], frame[target].head(20), strict=True)) / 20
    )
    assert accuracy >= 0.8, answer
