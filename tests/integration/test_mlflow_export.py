"""The MLflow export against a real ``mlflow server`` (SQLite backend, served artifacts), read
back with MLflow's own client: the experiment, one run per version with its params, metrics,
lineage tags and model card, registered versions that link the model's directory and the run,
and the Model's aliases on the registered model; a restart that lost ``status.mlflow`` makes no
second run; a server that goes away never holds up registration, says so once, and is caught
up with once it is back. The chart's rendering of the ``mlflow`` values closes the module.

The operator runs as a subprocess with only the Model handler, in a namespace of its own, and
configured the way the chart configures it: from the environment (``MLOPS_MLFLOW_TRACKING_URI``,
``MLFLOW_TRACKING_TOKEN``). TrainingJobs are "finished" by writing their status as the
TrainingJob controller would.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import mlflow_server
import pytest
import subprocess_operator
import yaml
from namespace_api import GROUP, VERSION, NamespaceApi

from conftest import ROOT, Cluster, wait_until

pytestmark = pytest.mark.integration

DIGEST = "cd" * 32
TOKEN = "tok-3f9a-never-in-status"  # sent as MLflow's bearer token; must appear nowhere else
LAUNCH = """
import dataclasses, logging, os, sys
import kopf
os.environ.update({env})
from mlops_operator.handlers import settings
config = settings.OperatorConfig.from_env()
settings.configure(
    dataclasses.replace(
        config, metrics_port=int(sys.argv[2]), metrics_host="127.0.0.1", namespaces=(sys.argv[1],)
    )
)
kopf.configure(log_format=kopf.LogFormat.PLAIN)
logging.getLogger("kubernetes").setLevel(logging.WARNING)
import mlops_operator.handlers.model, mlops_operator.handlers.children
kopf.run(clusterwide=False, namespaces=(sys.argv[1],), standalone=True, liveness_endpoint=None)
"""


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mlflow_server.MlflowServer]:
    """A real MLflow tracking server on loopback for this module."""
    server = mlflow_server.MlflowServer(venv=mlflow_server.install(), root=tmp_path_factory.mktemp("mlflow"))
    server.start()
    yield server
    server.stop()


@dataclasses.dataclass
class ExportOperator(subprocess_operator.SubprocessOperator):
    label: str = "mlflow"


@pytest.fixture
def export_operator(
    cluster: Cluster, isolated_namespace: str, mlflow: mlflow_server.MlflowServer
) -> Iterator[ExportOperator]:
    env = {"MLOPS_MLFLOW_TRACKING_URI": mlflow.url, "MLFLOW_TRACKING_TOKEN": TOKEN}
    handle = ExportOperator(cluster=cluster, namespace=isolated_namespace, launch=LAUNCH.format(env=env))
    yield handle
    handle.kill()
    for name in cluster.kubectl("get", "models,tj", "-n", isolated_namespace, "-o", "name").stdout.split():
        cluster.kubectl(
            "patch", "-n", isolated_namespace, name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
        )


@dataclasses.dataclass
class Api(NamespaceApi):
    def apply(
        self, kind: str, name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None
    ) -> None:
        self.gitops_apply(kind, name, spec, annotations=annotations or {})

    def model(self) -> dict[str, Any]:
        return self.get("models", "iris")

    def status(self) -> dict[str, Any]:
        return dict(self.model().get("status") or {})

    def train(self, name: str, value: float) -> None:
        """A TrainingJob that registers into iris, Succeeded as the TrainingJob controller says it."""
        self.apply(
            "TrainingJob",
            name,
            {
                "datasetRef": {"name": "iris"},
                "model": {
                    "estimator": "RandomForestClassifier",
                    "params": {"n_estimators": 10, "max_depth": 4},
                },
                "metrics": ["accuracy"],
                "registerAs": "iris",
            },
            annotations={"mlops.dev/code-version": f"git-{name}"},
        )
        self.finish(name, value, durationSeconds=12.5)

    def annotate(self, *pairs: str) -> None:
        self.cluster.kubectl("annotate", "--overwrite", "-n", self.namespace, "models/iris", *pairs)

    def events(self) -> list[Any]:
        return list(
            self.core.list_namespaced_event(self.namespace, field_selector="involvedObject.name=iris").items
        )


@pytest.fixture
def api(cluster: Cluster, isolated_namespace: str) -> Api:
    return Api(cluster=cluster, namespace=isolated_namespace, dataset_digest=DIGEST)


def condition(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == "MLflowExported"), {})


def exported(status: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {int(v["version"]): v for v in (status.get("mlflow") or {}).get("versions") or []}


def in_sync(api: Api, versions: set[int], aliases: dict[str, str] | None = None) -> dict[str, Any] | None:
    status = api.status()
    mirror = (status.get("mlflow") or {}).get("aliases") or {}
    ok = (
        set(exported(status)) == versions
        and condition(status).get("status") == "True"
        and (aliases is None or mirror == aliases)
    )
    return status if ok else None


def test_versions_runs_registered_versions_and_aliases_in_mlflow(
    api: Api, export_operator: ExportOperator, mlflow: mlflow_server.MlflowServer
) -> None:
    operator = export_operator
    ns = api.namespace
    experiment, registered = f"mlops/{ns}/iris", f"{ns}.iris"
    operator.start()
    api.apply("Model", "iris", {"description": "iris classifiers"})
    wait_until(lambda: api.status().get("phase") == "Ready", timeout=30, what="the Model to be Ready")

    # Two versions: each a run and a registered version, within the pass that registers it.
    api.train("run-a", 0.90)
    wait_until(lambda: in_sync(api, {1}), timeout=60, what="v1 in MLflow", explain=api.status)
    api.train("run-b", 0.95)
    api.annotate("alias.mlops.dev/champion=2", "alias.mlops.dev/challenger=1")
    status = wait_until(
        lambda: in_sync(api, {1, 2}, {"champion": "2", "challenger": "1"}),
        timeout=60,
        what="v2 and the aliases in MLflow",
        explain=api.status,
    )
    uid = api.model()["metadata"]["uid"]
    state = status["mlflow"]
    assert (state["experiment"], state["registeredModel"], state["trackingUri"]) == (
        experiment,
        registered,
        mlflow.url,
    )
    assert state["exportedThrough"] == 2

    # Read back with MLflow's own client.
    seen = mlflow.read(experiment, registered)
    assert seen["experiment"]["tags"]["mlops.dev/model-uid"] == uid
    runs = {r["name"]: r for r in seen["runs"]}
    assert sorted(runs) == ["iris-v1", "iris-v2"]
    run_a = runs["iris-v1"]
    assert run_a["id"] == exported(status)[1]["runId"]
    assert run_a["status"] == "FINISHED"
    assert run_a["end"] - run_a["start"] == 12_500, "the run spans the training's duration"
    assert run_a["params"] == {"n_estimators": "10", "max_depth": "4"}
    assert run_a["metrics"] == pytest.approx(
        {"accuracy_validation": 0.90, "accuracy_test": 0.89, "accuracy": 0.90}
    )
    tags = run_a["tags"]
    assert tags["mlops.dev/model-uid"] == uid and tags["mlops.dev/model-version"] == "1"
    assert (tags["mlops.dev/source-kind"], tags["mlops.dev/source-name"]) == ("TrainingJob", "run-a")
    assert tags["mlops.dev/dataset-digest"] == DIGEST and tags["mlops.dev/dataset"] == "iris"
    assert tags["mlops.dev/code-version"] == "git-run-a"
    assert tags["mlops.dev/model-uri"] == f"pvc://models/{ns}/run-a/0123456789abcdef"
    assert tags["mlops.dev/estimator"] == "RandomForestClassifier"
    assert "**iris v1**" in tags["mlflow.note.content"]
    assert run_a["artifacts"] == ["model_card.json"]
    card = run_a["card"]
    assert (card["model"], card["version"], card["namespace"], card["modelUid"]) == ("iris", 1, ns, uid)
    assert card["modelUri"] == tags["mlops.dev/model-uri"] and card["codeVersion"] == "git-run-a"
    assert card["metrics"] == {"accuracy": {"validation": 0.90, "test": 0.89}}

    assert seen["model"]["description"] == "iris classifiers"
    assert seen["model"]["aliases"] == {"champion": "2", "challenger": "1"}
    versions = {v["version"]: v for v in seen["versions"]}
    assert sorted(versions) == ["1", "2"]
    for ours, theirs in ((1, "1"), (2, "2")):
        entry = exported(status)[ours]
        assert entry["modelVersion"] == theirs
        assert versions[theirs]["run_id"] == entry["runId"]
        assert versions[theirs]["tags"]["mlops.dev/model-version"] == str(ours)
    assert versions["1"]["source"] == f"pvc://models/{ns}/run-a/0123456789abcdef"
    assert versions["2"]["source"] == f"pvc://models/{ns}/run-b/0123456789abcdef"
    assert {"VersionRegistered", "MLflowExported"} <= {e.reason for e in api.events()}

    # A restart that lost what status.mlflow said (a crash between MLflow's answer and the
    # status write): the runs and versions are found by tag, none made twice.
    operator.kill()
    api.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, "models", "iris", {"status": {"mlflow": None}}
    )
    assert "mlflow" not in api.status()
    operator.start()
    again = wait_until(
        lambda: in_sync(api, {1, 2}, {"champion": "2", "challenger": "1"}),
        timeout=60,
        what="the export state rebuilt",
        explain=api.status,
    )
    assert exported(again) == exported(status)
    seen = mlflow.read(experiment, registered)
    assert len(seen["runs"]) == 2 and len(seen["versions"]) == 2

    # An alias moves: MLflow's follows; an alias the Model does not have is removed by the mirror.
    mlflow.set_alias(registered, "someones-alias", "1")
    api.annotate("alias.mlops.dev/champion=1")
    wait_until(
        lambda: in_sync(api, {1, 2}, {"champion": "1", "challenger": "1"}), timeout=60, what="champion -> v1"
    )
    assert mlflow.read(experiment, registered)["model"]["aliases"] == {"champion": "1", "challenger": "1"}

    # MLflow goes away: v3 is registered all the same; the condition and one Warning say why.
    mlflow.stop()
    api.train("run-c", 0.97)
    status = wait_until(
        lambda: (s := api.status()) and condition(s).get("status") == "False" and s,
        timeout=60,
        what="MLflowExported False",
        explain=api.status,
    )
    assert status["latestVersion"] == 3 and status["phase"] == "Ready"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert condition(status)["reason"] == "MLflowUnreachable"
    assert set(exported(status)) == {1, 2}
    warnings = [e for e in api.events() if e.reason == "MLflowExportFailed"]
    assert len(warnings) == 1 and warnings[0].type == "Warning"

    # Back again: the next passes (resync, after the backoff) catch up; still one Warning.
    mlflow.start()
    wait_until(lambda: in_sync(api, {1, 2, 3}), timeout=150, what="v3 exported after the outage")
    seen = mlflow.read(experiment, registered)
    assert [r["name"] for r in seen["runs"]] == ["iris-v1", "iris-v2", "iris-v3"]
    assert [v["version"] for v in seen["versions"]] == ["1", "2", "3"]
    assert len([e for e in api.events() if e.reason == "MLflowExportFailed"]) == 1

    # The token reached MLflow only: not the status, the Events or the operator's log.
    everything = json.dumps(api.model()) + json.dumps([e.to_dict() for e in api.events()], default=str)
    assert TOKEN not in everything
    assert TOKEN not in operator.log_path.read_text(errors="replace")


# ---------------------------------------------------------------------------------------------
# The chart
# ---------------------------------------------------------------------------------------------

CHART = ROOT / "charts" / "mlops-operator"


def helm_template(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cluster.bin_dir / "helm"), "template", "x", str(CHART), "--namespace", "mlops-system", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


def operator_env(text: str) -> list[dict[str, Any]]:
    deployment = next(o for o in yaml.safe_load_all(text) if o and o["kind"] == "Deployment")
    env: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def test_chart_renders_the_mlflow_settings(cluster: Cluster) -> None:
    default = operator_env(helm_template(cluster).stdout)
    assert not [e for e in default if "MLFLOW" in e["name"]], "no export unless a tracking URI is given"

    env = operator_env(
        helm_template(
            cluster,
            "--set",
            "mlflow.trackingUri=https://mlflow.example.com/team",
            "--set",
            "mlflow.experimentPrefix=ml/",
            "--set",
            "mlflow.credentialsSecret=mlflow-auth",
        ).stdout
    )
    by_name = {e["name"]: e for e in env}
    assert by_name["MLOPS_MLFLOW_TRACKING_URI"]["value"] == "https://mlflow.example.com/team"
    assert by_name["MLOPS_MLFLOW_EXPERIMENT_PREFIX"]["value"] == "ml/"
    assert by_name["MLOPS_MLFLOW_TIMEOUT_SECONDS"]["value"] == "10"
    for name, key in (
        ("MLFLOW_TRACKING_TOKEN", "token"),
        ("MLFLOW_TRACKING_USERNAME", "username"),
        ("MLFLOW_TRACKING_PASSWORD", "password"),
    ):
        assert by_name[name]["valueFrom"]["secretKeyRef"] == {
            "name": "mlflow-auth",
            "key": key,
            "optional": True,
        }
        assert "value" not in by_name[name]
    # Without a Secret, no credential variables at all.
    bare = {
        e["name"]
        for e in operator_env(helm_template(cluster, "--set", "mlflow.trackingUri=http://m:5000").stdout)
    }
    assert "MLOPS_MLFLOW_TRACKING_URI" in bare and not {n for n in bare if n.startswith("MLFLOW_TRACKING_")}

    # Helm refuses credentials in the URL and what is not http(s).
    for bad in ("http://user:pass@mlflow:5000", "mlflow:5000", "ftp://mlflow"):
        proc = helm_template(cluster, "--set", f"mlflow.trackingUri={bad}", check=False)
        assert proc.returncode != 0 and "trackingUri" in proc.stderr, (bad, proc.stderr)
