"""The ``mlops`` CLI: the chain tree, watch frames, the sweep plot and predictions.

Cluster reads go through a fake ``Kube`` holding plain dicts (the CLI's only contact with the
API); ``mlops predict`` talks to a real model server (``python -m mlops_workloads.serve`` on the
demo iris model) over loopback.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import pathlib
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from _fake_kube import FakeKube

from mlops_operator import cli
from mlops_operator.cli import chain, fmt, kube, plot, predict, watch
from model_server import running as run_model_server

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)
NS = "team-a"


def obj(
    kind: str, name: str, spec: dict[str, Any], status: dict[str, Any] | None = None, **meta: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "generation": 1,
            "creationTimestamp": "2026-03-01T11:50:00Z",
            **meta,
        },
        "spec": spec,
        "status": status or {},
    }


def trial(sweep: str, index: int, phase: str, value: float | None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if value is not None:
        status.update(objectiveValue=value, objectiveMetric="accuracy")
    return obj(
        "TrainingJob",
        f"{sweep}-trial-{index}",
        {"datasetRef": {"name": "iris"}, "model": {"estimator": "RandomForestClassifier"}},
        status,
        labels={"mlops.dev/hyperparametersweep": sweep, "app.kubernetes.io/component": "trial"},
        ownerReferences=[
            {
                "apiVersion": "mlops.dev/v1alpha1",
                "kind": "HyperparameterSweep",
                "name": sweep,
                "uid": f"uid-{sweep}",
                "controller": True,
            }
        ],
    )


def world() -> dict[str, list[dict[str, Any]]]:
    datasets = [
        obj(
            "Dataset",
            "iris",
            {},
            {
                "phase": "Ready",
                "digestShort": "0123456789ab",
                "task": "classification",
                "rows": {"output": 150, "train": 105, "validation": 22, "test": 23},
            },
        ),
        obj("Dataset", "wine", {}, {"phase": "Preparing", "startTime": "2026-03-01T11:58:30Z"}),
    ]
    trainingjobs = [
        obj(
            "TrainingJob",
            "iris-rf",
            {"datasetRef": {"name": "iris"}, "model": {"estimator": "RandomForestClassifier"}},
            {
                "phase": "Succeeded",
                "objectiveMetric": "accuracy",
                "objectiveValue": 0.954545,
                "metrics": {"accuracy": {"validation": 0.954545, "test": 0.9130}},
                "durationSeconds": 12.7,
                "startTime": "2026-03-01T11:51:00Z",
                "completionTime": "2026-03-01T11:51:13Z",
            },
        ),
        obj(
            "TrainingJob",
            "wine-lr",
            {"datasetRef": {"name": "wine"}, "model": {"estimator": "LogisticRegression"}},
            {"phase": "WaitingForData", "reason": "DatasetNotReady", "message": "Dataset wine is Preparing"},
        ),
        obj(
            "TrainingJob",
            "ghost",
            {"datasetRef": {"name": "gone"}, "model": {"estimator": "Ridge"}},
            {"phase": "Failed", "reason": "DatasetNotFound", "message": "no Dataset gone"},
        ),
        trial("iris-sweep", 0, "Succeeded", 0.90),
        trial("iris-sweep", 1, "Failed", None),
        trial("iris-sweep", 2, "Succeeded", 0.97),
        trial("iris-sweep", 3, "Succeeded", 0.93),
        trial("iris-sweep", 4, "Running", None),
    ]
    sweeps = [
        obj(
            "HyperparameterSweep",
            "iris-sweep",
            {
                "trialTemplate": {"datasetRef": {"name": "iris"}},
                "objective": {"metric": "accuracy", "goal": 0.99},
                "algorithm": {"name": "tpe"},
                "maxTrials": 10,
            },
            {
                "phase": "Running",
                "progress": "4/10",
                "trials": {"created": 5, "running": 1, "succeeded": 3, "failed": 1},
                "bestTrial": {"name": "iris-sweep-trial-2", "index": 2, "objectiveValue": 0.97},
            },
        ),
    ]
    deployments = [
        obj(
            "ModelDeployment",
            "iris-rf",
            {"model": {"trainingJobRef": "iris-rf"}, "stage": "production"},
            {
                "phase": "Ready",
                "readyReplicas": 2,
                "desiredReplicas": 2,
                "url": "http://iris-rf.team-a.svc.cluster.local/v2/models/iris-rf",
                "drift": {"score": 0.31, "feature": "petal_width"},
                "retrain": {
                    "runs": 3,
                    "history": [
                        {
                            "run": 3,
                            "trigger": "LabelledRows",
                            "phase": "Rejected",
                            "metric": "accuracy",
                            "overall": {"rows": 40, "champion": 0.93, "challenger": 0.91},
                        }
                    ],
                },
            },
        ),
        obj(
            "ModelDeployment",
            "iris-best",
            {"model": {"sweepRef": "iris-sweep"}},
            {"phase": "Progressing", "readyReplicas": 0, "desiredReplicas": 1},
        ),
        obj(
            "ModelDeployment",
            "external",
            {"model": {"storageUri": "pvc://models/churn/v3"}},
            {"phase": "Ready", "readyReplicas": 1, "desiredReplicas": 1},
        ),
    ]
    return {
        "Dataset": datasets,
        "TrainingJob": trainingjobs,
        "HyperparameterSweep": sweeps,
        "ModelDeployment": deployments,
    }


def session(
    objects: dict[str, list[dict[str, Any]]] | None = None, namespace: str | None = NS
) -> kube.Session:
    return kube.Session(kube=FakeKube(objects if objects is not None else world()), namespace=namespace)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# mlops status
# ---------------------------------------------------------------------------------------------


def test_chain_tree_links_data_runs_sweeps_and_serving() -> None:
    w = world()
    roots = chain.build(
        datasets=w["Dataset"],
        trainingjobs=w["TrainingJob"],
        sweeps=w["HyperparameterSweep"],
        deployments=w["ModelDeployment"],
    )
    shape = [
        (r.kind, r.name, [(c.kind, c.name, [g.name for g in c.children]) for c in r.children]) for r in roots
    ]
    assert shape == [
        (
            "Dataset",
            "iris",
            [("TrainingJob", "iris-rf", ["iris-rf"]), ("HyperparameterSweep", "iris-sweep", ["iris-best"])],
        ),
        ("Dataset", "wine", [("TrainingJob", "wine-lr", [])]),
        ("TrainingJob", "ghost", []),
        ("ModelDeployment", "external", []),
    ]
    lines = chain.render(roots)
    assert lines[0].split() == [
        "Dataset/iris",
        "Ready",
        "150",
        "rows",
        "(105/22/23)",
        "·",
        "version",
        "0123456789ab",
        "·",
        "classification",
    ]
    text = "\n".join(lines)
    assert (
        "├── TrainingJob/iris-rf" in text
        and "RandomForestClassifier · accuracy 0.9545 val / 0.913 test · 12s" in text
    )
    assert (
        "│   └── ModelDeployment/iris-rf" in text
        and "2/2 ready · production · drift 0.31 on petal_width · retrain 3 Rejected (accuracy 0.91 vs 0.93)"
        in text
    )
    assert "└── HyperparameterSweep/iris-sweep" in text
    assert "tpe · 4/10 trials · 1 running · 1 failed · best accuracy 0.97 (iris-sweep-trial-2)" in text
    assert "    └── ModelDeployment/iris-best" in text
    assert "WaitingForData  LogisticRegression · DatasetNotReady: Dataset wine is Preparing" in text
    assert "Ridge · DatasetNotFound: no Dataset gone · Dataset gone not found" in text
    assert "model pvc://models/churn/v3" in text
    assert "trial-0" not in text  # trials are counted on the sweep, not listed


def test_status_command_prints_tree_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = session()
    monkeypatch.setattr(kube, "connect", lambda **_: fake)
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["status"], out=out, err=err) == 0, err.getvalue()
    assert out.getvalue().splitlines()[0].startswith("Dataset/iris")
    assert "\x1b[" not in out.getvalue()  # no colours on a pipe
    assert fake.kube.closed  # type: ignore[attr-defined]
    out = io.StringIO()
    assert cli.main(["status", "-o", "json"], out=out, err=err) == 0
    tree = json.loads(out.getvalue())
    assert [n["name"] for n in tree] == ["iris", "wine", "ghost", "external"]
    assert tree[0]["children"][1]["children"][0] == {
        "kind": "ModelDeployment",
        "namespace": NS,
        "name": "iris-best",
        "phase": "Progressing",
        "detail": "0/1 ready",
        "children": [],
    }
    monkeypatch.setattr(kube, "connect", lambda **_: session({}))
    out = io.StringIO()
    assert cli.main(["status"], out=out, err=err) == 0
    assert out.getvalue() == f"No Datasets, TrainingJobs, sweeps or ModelDeployments in namespace {NS}.\n"


def test_errors_are_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    def refuse(**_: Any) -> kube.Session:
        raise kube.CliError("no usable kubeconfig: nope")

    monkeypatch.setattr(kube, "connect", refuse)
    err = io.StringIO()
    assert cli.main(["status"], out=io.StringIO(), err=err) == 1
    assert err.getvalue() == "mlops: no usable kubeconfig: nope\n"
    monkeypatch.setattr(kube, "connect", lambda **_: session())
    err = io.StringIO()
    assert cli.main(["plot", "sweep", "nope", "-o", str(tmp_path / "x.png")], out=io.StringIO(), err=err) == 1
    assert err.getvalue() == f"mlops: HyperparameterSweep {NS}/nope not found\n"


def test_connect_reads_the_contexts_namespace(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "dev",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [
            {"name": "dev", "context": {"cluster": "c", "user": "u", "namespace": "team-b"}},
            {"name": "prod", "context": {"cluster": "c", "user": "u"}},
        ],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    s = kube.connect(kubeconfig=str(path), context=None, namespace=None, all_namespaces=False)
    assert s.namespace == "team-b"
    s.close()
    s = kube.connect(kubeconfig=str(path), context="prod", namespace=None, all_namespaces=False)
    assert s.namespace == "default"
    s.close()
    s = kube.connect(kubeconfig=str(path), context=None, namespace="x", all_namespaces=True)
    assert s.namespace is None
    s.close()
    with pytest.raises(kube.CliError, match="no usable kubeconfig"):
        kube.connect(kubeconfig=str(tmp_path / "missing"), context=None, namespace=None, all_namespaces=False)


# ---------------------------------------------------------------------------------------------
# mlops watch
# ---------------------------------------------------------------------------------------------


def test_watch_frame_has_a_bar_per_object() -> None:
    w = world()
    items = watch.lines(
        datasets=w["Dataset"],
        trainingjobs=w["TrainingJob"],
        sweeps=w["HyperparameterSweep"],
        deployments=w["ModelDeployment"],
        now=NOW,
    )
    by_name = {(i.section, i.name): i for i in items}
    assert by_name[("Datasets", "wine")].text == "1m30s"
    assert by_name[("Datasets", "wine")].fraction is None  # preparing: amount unknown
    assert by_name[("TrainingJobs", "iris-rf")].text == "13s · accuracy 0.9545"
    assert by_name[("TrainingJobs", "iris-rf")].fraction == 1.0
    assert by_name[("TrainingJobs", "wine-lr")].text.endswith("· DatasetNotReady")
    assert by_name[("Sweeps", "iris-sweep")].fraction == pytest.approx(0.4)
    assert by_name[("Sweeps", "iris-sweep")].text == "4/10 trials · 1 running · 1 failed · best 0.97"
    assert by_name[("ModelDeployments", "iris-rf")].text == "2/2 ready"
    assert not any("trial" in i.name for i in items)
    text = watch.frame(items, header="h")
    assert text.splitlines()[0] == "h" and "Sweeps" in text.splitlines()
    sweep_line = next(line for line in text.splitlines() if "iris-sweep" in line)
    assert "[" + "█" * 9 + "░" * 13 + "]" in sweep_line  # 40 % of a 22-cell bar
    assert not watch.done(items)


def test_bars() -> None:
    assert fmt.bar(0.5, 12) == "[█████░░░░░]"
    assert fmt.bar(2.0, 7) == "[█████]"
    moving = {fmt.bar(None, 12, frame=f) for f in range(20)}
    assert len(moving) > 3 and all(b.count("█") == 2 for b in moving)
    assert watch.sweep_fraction(
        {"spec": {"maxTrials": 8}, "status": {"trials": {"succeeded": 2, "pruned": 2}}}
    ) == (0.5, "4/8")


def test_watch_until_done_exits_with_the_outcome() -> None:
    w = world()
    finished = {
        "Dataset": [w["Dataset"][0]],
        "TrainingJob": [w["TrainingJob"][0]],
        "HyperparameterSweep": [],
        "ModelDeployment": [w["ModelDeployment"][0]],
    }
    out = io.StringIO()
    assert (
        watch.run(
            session(finished),
            interval=0,
            once=False,
            until_done=True,
            colour=False,
            out=out,
            clock=lambda: NOW,
            sleep=lambda _: None,
        )
        == 0
    )
    assert out.getvalue().startswith(f"mlops watch · {NS} · 12:00:00")
    finished["TrainingJob"] = [w["TrainingJob"][2]]  # Failed
    assert (
        watch.run(
            session(finished),
            interval=0,
            once=False,
            until_done=True,
            colour=False,
            out=io.StringIO(),
            clock=lambda: NOW,
            sleep=lambda _: None,
        )
        == 1
    )
    # Still running: keeps refreshing (bounded here), printing only frames that changed on a pipe.
    sleeps: list[float] = []
    out = io.StringIO()
    assert (
        watch.run(
            session(),
            interval=0.5,
            once=False,
            until_done=True,
            colour=False,
            out=out,
            clock=lambda: NOW,
            sleep=sleeps.append,
            max_frames=4,
        )
        == 0
    )
    assert sleeps == [0.5, 0.5, 0.5]
    assert out.getvalue().count("mlops watch ·") == 1  # on a pipe, unchanged frames are not repeated


# ---------------------------------------------------------------------------------------------
# mlops plot sweep
# ---------------------------------------------------------------------------------------------


def test_sweep_points_and_best_so_far() -> None:
    w = world()
    p = plot.collect(w["HyperparameterSweep"][0], w["TrainingJob"])
    assert [(t.index, t.phase, t.value) for t in p.trials] == [
        (0, "Succeeded", 0.90),
        (1, "Failed", None),
        (2, "Succeeded", 0.97),
        (3, "Succeeded", 0.93),
        (4, "Running", None),
    ]
    assert p.best_so_far() == [0.90, 0.90, 0.97, 0.97, 0.97]
    assert (p.metric, p.direction, p.goal, p.algorithm) == ("accuracy", "maximize", 0.99, "tpe")
    rmse = dict(w["HyperparameterSweep"][0], spec={"objective": {"metric": "rmse"}})
    assert plot.collect(rmse, w["TrainingJob"]).direction == "minimize"
    assert plot.collect(rmse, w["TrainingJob"]).best_so_far() == [0.90, 0.90, 0.90, 0.90, 0.90]


def _png_size(path: pathlib.Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plot_command_writes_a_png(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setattr(kube, "connect", lambda **_: session())
    target = tmp_path / "sweep.png"
    out = io.StringIO()
    assert cli.main(["plot", "sweep", "iris-sweep", "-o", str(target)], out=out, err=io.StringIO()) == 0
    assert out.getvalue() == f"wrote {target}\n"
    assert _png_size(target) == (1200, 480)  # objective and best so far | parameter importance
    assert target.stat().st_size > 10_000, "an empty canvas"
    empty = tmp_path / "empty.png"
    plot.render_png(plot.SweepPlot("s", "f1", "maximize", None, "random", ()), str(empty))
    assert _png_size(empty) == (1200, 480)


# ---------------------------------------------------------------------------------------------
# mlops predict
# ---------------------------------------------------------------------------------------------


def test_csv_cells_become_json_values() -> None:
    assert [
        predict.parse_value(v) for v in ["", " 3 ", "-2", "1.5e3", "nan", "TRUE", "false", "north", "007"]
    ][:8] == [None, 3, -2, 1500.0, pytest.approx(float("nan"), nan_ok=True), True, False, "north"]
    columns, rows = predict.read_rows(io.StringIO("a, b\n1,x\n,2.5\n"))
    assert columns == ["a", "b"] and rows == [{"a": 1, "b": "x"}, {"a": None, "b": 2.5}]
    with pytest.raises(kube.CliError, match="no rows"):
        predict.read_rows(io.StringIO("a,b\n"))


def test_endpoint_from_status_url() -> None:
    assert predict.endpoint_from_status("http://iris.team-a.svc.cluster.local/v2/models/iris", "x") == (
        "iris",
        "team-a",
        80,
        "iris",
    )
    assert predict.endpoint_from_status("http://iris-canary.t:8080/v1/models/m:predict", "x") == (
        "iris-canary",
        "t",
        8080,
        "m",
    )
    assert predict.endpoint_from_status("https://svc", "fallback") == ("svc", "", 443, "fallback")


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from mlops_workloads.serve import demo

    model_dir = demo.build(tmp_path_factory.mktemp("model"))
    with serving(model_dir, tmp_path_factory.mktemp("run")) as url:
        yield url


@contextlib.contextmanager
def serving(model_dir: pathlib.Path, tmp: pathlib.Path) -> Iterator[str]:
    with run_model_server(model_dir, tmp, max_batch_rows=50) as (url, _):
        yield url


def test_predict_scores_a_csv_through_the_v1_endpoint(model_server: str, tmp_path: pathlib.Path) -> None:
    from mlops_workloads.serve import demo

    x, y = demo.frame()
    frame = x.assign(species=y).iloc[::3]  # 50 rows, with the target column the model does not take
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(
        ["predict", "iris", str(path), "--url", model_server, "--batch-size", "20"], out=out, err=err
    )
    assert code == 0, err.getvalue()
    assert err.getvalue() == "mlops predict: not sent (the model does not take them): species\n"
    lines = out.getvalue().splitlines()
    assert lines[0].split(",") == [*frame.columns, "prediction", "confidence", "low_confidence"]
    assert len(lines) == 51
    rows = [line.split(",") for line in lines[1:]]
    accuracy = sum(r[5] == r[6] for r in rows) / len(rows)
    assert accuracy > 0.9
    assert all(0.0 < float(r[7]) <= 1.0 and r[8] in {"true", "false"} for r in rows)
    out = io.StringIO()
    assert (
        cli.main(
            ["predict", "iris", str(path), "--url", model_server, "-o", "json"], out=out, err=io.StringIO()
        )
        == 0
    )
    first = json.loads(out.getvalue().splitlines()[0])
    assert set(first) == {*frame.columns, "prediction", "confidence", "low_confidence"}


def test_predict_reports_what_is_wrong(model_server: str, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("sepal_length,sepal_width\n1,2\n")
    err = io.StringIO()
    assert cli.main(["predict", "iris", str(path), "--url", model_server], out=io.StringIO(), err=err) == 1
    assert err.getvalue() == (
        "mlops: the CSV lacks the model's input column(s): petal_length, petal_width, site\n"
    )
    path.write_text("sepal_length,sepal_width,petal_length,petal_width,site\nbig,2,3,4,north\n")
    err = io.StringIO()
    assert cli.main(["predict", "iris", str(path), "--url", model_server], out=io.StringIO(), err=err) == 1
    assert err.getvalue().startswith("mlops: rows 1-1: HTTP 422: ")
    err = io.StringIO()
    assert (
        cli.main(
            ["predict", "nosuch", str(path), "--url", model_server, "--model-name", "other"],
            out=io.StringIO(),
            err=err,
        )
        == 1
    )
    assert "HTTP 404" in err.getvalue()
    err = io.StringIO()
    assert (
        cli.main(["predict", "iris", str(path), "--url", "http://127.0.0.1:9"], out=io.StringIO(), err=err)
        == 1
    )
    assert err.getvalue().startswith("mlops: the model server did not answer GET /v2/models/iris")


def test_status_shows_requested_used_and_suggested_resources() -> None:
    run = obj(
        "TrainingJob",
        "iris-lr",
        {
            "datasetRef": {"name": "iris"},
            "model": {"estimator": "LogisticRegression"},
            "resources": {"cpu": "500m", "memory": "512Mi"},
        },
        {
            "phase": "Succeeded",
            "resourcesUsed": {"cpuCores": 0.21, "peakMemoryBytes": 150 * 2**20, "source": "cgroup2"},
            "suggestedResources": {"cpu": "300m", "memory": "192Mi", "gpu": 0},
        },
    )
    detail = chain.trainingjob_detail(run)
    assert detail == (
        "LogisticRegression · cpu 500m, used 0.21, suggest 300m · memory 512Mi, peak 150Mi, suggest 192Mi"
    )
    gpu_run = obj(
        "TrainingJob",
        "iris-xgb",
        {"datasetRef": {"name": "iris"}, "resources": {"gpu": 1}},
        {
            "phase": "Succeeded",
            "resourcesUsed": {"cpuCores": 1.0, "gpuUtilizationMean": 0.0, "gpuUtilizationMax": 0.0},
            "suggestedResources": {"cpu": "1200m", "gpu": 0},
        },
    )
    assert chain.trainingjob_detail(gpu_run) == (
        "cpu -, used 1, suggest 1200m · gpu 1, busy 0% (max 0%), suggest 0"
    )
    assert "suggest" not in chain.trainingjob_detail(obj("TrainingJob", "new", {}, {"phase": "Running"}))
    hps = obj(
        "HyperparameterSweep",
        "iris-rf",
        {
            "algorithm": {"name": "tpe"},
            "trialTemplate": {"resources": {"cpu": "500m", "memory": "512Mi", "auto": True}},
        },
        {
            "phase": "Running",
            "progress": "4/20",
            "rightsizing": {
                "measuredTrials": 4,
                "used": {"cpuCores": 0.4, "peakMemoryBytes": 3 * 2**30 // 2},
                "suggested": {"cpu": "500m", "memory": "1920Mi", "gpu": 0},
                "autoTrials": 2,
                "autoResources": {"cpu": "500m", "memory": "1920Mi", "gpu": 0},
            },
        },
    )
    assert chain.sweep_detail(hps) == (
        "tpe · 4/20 trials · max of 4 trials: cpu 500m, used 0.4, suggest 500m · memory 512Mi, "
        "peak 1.5Gi, suggest 1920Mi · auto: 2 trials given cpu 500m, memory 1920Mi, gpu 0"
    )
