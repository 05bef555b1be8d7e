"""The registry under load, for real on the kubelet node: a TrainingJob registers version 1 of a
Model, a ModelDeployment serves its champion; the TrainingJob is edited and re-run (version 2, in
a new directory: version 1's files stay byte for byte), and the deployment keeps serving version 1
until the alias moves; the move rolls out through the automatic canary (judged on its answers,
then promoted), a rollback by the CLI does the same back to version 1, and not one request fails
throughout. Everything lives in the cluster's S3 server, so the test reads the model files
from the host."""

from __future__ import annotations

import io
import json
import pathlib
import time
from collections.abc import Callable
from typing import Any

import localcluster
import pyarrow.parquet as pq
import pytest
import seed_s3

from conftest import Cluster, wait_until
from e2e import install
from e2e.conftest import RealNode
from e2e.load import Answer, LoadGenerator
from mlops_operator import cli
from mlops_operator.reconcile import owner as rowner

S3 = {"endpoint": "http://10.244.1.1:26900", "region": "us-east-1", "secretRef": {"name": "mlops-s3"}}


@pytest.fixture
def operator_ns(cluster: Cluster, real_node: RealNode, e2e_namespace: str) -> str:
    install.helm_install(cluster, real_node, e2e_namespace)
    secret = cluster.get("secret", "mlops-s3", "default")
    assert secret is not None, "make cluster-up applies default/mlops-s3"
    copy = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mlops-s3"}, "data": secret["data"]}
    cluster.apply(copy, e2e_namespace)
    return e2e_namespace


def _objects(fs: Any, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix`` (an s3:// URI), by its path below it."""
    import pyarrow.fs as pafs

    root = prefix.removeprefix("s3://")
    found = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    out = {}
    for info in found:
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as stream:
                out[info.path.removeprefix(root + "/")] = stream.read()
    return out


def _no_failures(answers: list[Answer]) -> None:
    failed = [a for a in answers if not a.ok]
    assert not failed, f"{len(failed)} of {len(answers)} requests failed: {failed[:5]}"


def test_edit_rerun_and_alias_moves_roll_out_through_the_canary_under_load(
    cluster: Cluster, operator_ns: str
) -> None:
    ns = operator_ns
    info = localcluster.s3_info()
    fs = seed_s3.filesystem(info)
    bucket = info["bucket"]

    def get(kind: str, name: str) -> dict[str, Any]:
        return dict((cluster.get(kind, name, ns) or {}).get("status") or {})

    def explain() -> dict[str, Any]:
        full = cluster.kubectl(
            "logs", "-n", ns, "-l", "app.kubernetes.io/name=mlops-operator", "--tail=-1", check=False
        ).stdout
        pathlib.Path(f"/tmp/{ns}-operator.log").write_text(full)  # the whole log, for a post-mortem
        return {
            "model": get("model", "iris"),
            "md": get("modeldeployment", "iris"),
            "pods": cluster.kubectl("get", "pods", "-n", ns, "-o", "wide", check=False).stdout,
            "operator": cluster.kubectl(
                "logs", "-n", ns, "-l", "app.kubernetes.io/name=mlops-operator", "--tail=40", check=False
            ).stdout,
        }

    def until(check: Callable[[], Any], what: str, timeout: float = 300) -> Any:
        return wait_until(check, timeout=timeout, interval=1.0, what=what, explain=explain)

    docs: list[dict[str, Any]] = [
        {
            "kind": "Dataset",
            "metadata": {"name": "iris"},
            "spec": {
                "sources": [{"sklearn": {"name": "iris"}}],
                "schema": {"target": "target", "task": "classification"},
                "split": {"train": 0.7, "validation": 0.15, "test": 0.15, "seed": 42},
                "storage": f"s3://{bucket}/{ns}/versions/iris",
                "s3": S3,
                "resources": {"cpu": "250m", "memory": "512Mi"},
            },
        },
        {"kind": "Model", "metadata": {"name": "iris"}, "spec": {"description": "iris, e2e"}},
        {
            "kind": "TrainingJob",
            "metadata": {"name": "iris-logreg"},
            "spec": {
                "datasetRef": {"name": "iris"},
                "model": {"estimator": "LogisticRegression", "params": {"C": 1.0, "max_iter": 500}},
                "metrics": ["accuracy"],
                "registerAs": "iris",
                "output": {"storageUri": f"s3://{bucket}/{ns}/models/iris-logreg"},
                "resources": {"cpu": "250m", "memory": "512Mi"},
            },
        },
    ]
    for doc in docs:
        cluster.apply({"apiVersion": "mlops.dev/v1alpha1", **doc}, ns)

    # Version 1, named champion by an annotation.
    until(lambda: [v["version"] for v in get("model", "iris").get("versions") or []] == [1], "version 1")
    v1 = get("model", "iris")["versions"][0]["modelUri"]
    cluster.kubectl("annotate", "-n", ns, "models/iris", "alias.mlops.dev/champion=1")
    until(lambda: get("model", "iris").get("champion") == 1, "champion -> 1")
    files_v1 = _objects(fs, v1)
    assert {"model.skops", "model_card.json"} <= set(files_v1), sorted(files_v1)

    cluster.apply(
        {
            "apiVersion": "mlops.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "iris"},
            "spec": {
                "model": {"modelRef": {"name": "iris", "alias": "champion"}},
                "replicas": 2,
                "resources": {"cpu": "100m", "memory": "384Mi"},
                "canary": {
                    "trafficPercent": 50,
                    "rollback": {"minRequests": 40, "windowSeconds": 20, "p95LatencyMarginMs": 1000},
                },
            },
        },
        ns,
    )
    until(
        lambda: (
            (s := get("modeldeployment", "iris")).get("phase") == "Ready" and s.get("servedModelVersion") == 1
        ),
        "the champion (version 1) served",
    )
    version_of = {1: rowner.spec_hash(v1)[:12]}

    dataset = get("dataset", "iris")
    with fs.open_input_file(f"{dataset['storageUri'].removeprefix('s3://')}/test.parquet") as handle:
        frame = pq.read_table(io.BytesIO(handle.read())).to_pandas()
    row = frame.drop(columns=["target"]).iloc[0].to_dict()
    body = {
        "inputs": [{"name": k, "shape": [1], "datatype": "FP64", "data": [float(v)]} for k, v in row.items()]
    }
    svc = cluster.get("service", "iris", ns)
    assert svc is not None
    host, port = svc["spec"]["clusterIP"], int(svc["spec"]["ports"][0]["port"])

    def served_by(since: float) -> set[str]:
        return {a.detail for a in load.snapshot() if a.at > since and a.ok}

    with LoadGenerator(host, port, "/v2/models/iris/infer", body) as load:
        load.set_rate(20)
        until(lambda: served_by(0) == {version_of[1]}, "answers from version 1", timeout=60)

        # Edit the finished TrainingJob: it re-runs into a new version directory, version 2.
        cluster.kubectl(
            "patch",
            "-n",
            ns,
            "trainingjob/iris-logreg",
            "--type=merge",
            "-p",
            json.dumps({"spec": {"model": {"params": {"C": 0.05}}}}),
        )
        until(
            lambda: [v["version"] for v in get("model", "iris").get("versions") or []] == [2, 1],
            "version 2 from the re-run",
            timeout=400,
        )
        v2 = get("model", "iris")["versions"][0]["modelUri"]
        version_of[2] = rowner.spec_hash(v2)[:12]
        assert v2 != v1 and v2.rsplit("/", 1)[0] == v1.rsplit("/", 1)[0], (v1, v2)
        assert _objects(fs, v1) == files_v1, "version 1's files changed"
        assert json.loads(_objects(fs, v2)["model_card.json"])["params"]["C"] == 0.05
        # The alias has not moved: still version 1 everywhere, for a while.
        registered = time.monotonic()
        time.sleep(10)
        assert served_by(registered) == {version_of[1]}
        status = get("modeldeployment", "iris")
        assert status["servedModelVersion"] == 1 and not cluster.get("deployment", "iris-canary", ns)

        # Move champion to 2: version 2 is the canary, judged on its answers, then promoted.
        moved = time.monotonic()
        cluster.kubectl("annotate", "--overwrite", "-n", ns, "models/iris", "alias.mlops.dev/champion=2")
        until(
            lambda: (get("modeldeployment", "iris").get("canary") or {}).get("state") == "Progressing",
            "version 2 as the canary",
            timeout=60,
        )
        until(lambda: version_of[2] in served_by(moved), "answers from the canary", timeout=120)
        assert version_of[1] in served_by(moved), "the canary shares the traffic with version 1"
        until(
            lambda: (
                (s := get("modeldeployment", "iris")).get("servedModelVersion") == 2
                and (s.get("canary") or {}).get("state") == "Promoted"
                and s.get("phase") == "Ready"
                and cluster.get("deployment", "iris-canary", ns) is None
            ),
            "version 2 promoted, the canary gone",
        )
        promoted = time.monotonic()
        time.sleep(5)
        assert served_by(promoted + 3) == {version_of[2]}

        # Roll back with the CLI: the same way back to version 1.
        back = time.monotonic()
        out, err = io.StringIO(), io.StringIO()
        argv = ["models", "alias", "iris", "champion", "1", "-n", ns, "--kubeconfig", str(cluster.kubeconfig)]
        assert cli.main(argv, out=out, err=err) == 0, err.getvalue()
        until(
            lambda: (
                (s := get("modeldeployment", "iris")).get("servedModelVersion") == 1
                and s.get("phase") == "Ready"
                and cluster.get("deployment", "iris-canary", ns) is None
            ),
            "rolled back to version 1",
        )
        assert version_of[2] in served_by(back) and version_of[1] in served_by(back)
        settled = time.monotonic()
        time.sleep(5)
        assert served_by(settled + 3) == {version_of[1]}
        answers = load.snapshot()

    _no_failures(answers)
    assert len(answers) > 500, len(answers)
    history = get("model", "iris")["aliasHistory"]
    assert [(m.get("from"), m["to"]) for m in history[:3]] == [(2, 1), (1, 2), (None, 1)], history
    reasons = {
        e["reason"]
        for e in cluster.list("event", ns)
        if (e.get("involvedObject") or {}).get("name") == "iris"
        and (e.get("involvedObject") or {}).get("kind") == "ModelDeployment"
    }
    assert {"CanaryStarted", "CanaryPromoted", "ModelVersionChanged"} <= reasons, reasons
