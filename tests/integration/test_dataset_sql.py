"""SQL Dataset sources against a real PostgreSQL and the real control plane (kwok nodes).

``examples/datasets/postgres-query.yaml`` is applied as users would (namespace, storage and
placement swapped for the test's), and its prepare pod is held on the kwok "hold" node. The
test then plays the kubelet for that pod: it mounts the pod's volumes as the kubelet would (the
Job's ConfigMap, the Secret's key named by the Secret volume's items, at the pod's mount paths,
below a temporary root), runs the real entrypoint ``mlops_workloads.prepare.__main__.main``
in-process against the PostgreSQL that ``tests/cluster/postgres.py`` started, and writes its
exit code and termination message into the pod status. The Job controller and the operator do
the rest, so the Dataset's status is what a user would see: Ready with the table's 569 rows,
or Failed with the database's own message, and never the password.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import pathlib
import urllib.parse
import uuid
from typing import Any

import pytest
import yaml
from test_dataset import HOLD, event_reasons, finish_pod, wait_job, wait_running_pod, wait_status

from conftest import ROOT, Cluster, OperatorHandle, wait_until
from mlops_operator.api import dataset as api
from mlops_operator.api import workload
from mlops_workloads.prepare import __main__ as prepare_main

pytestmark = pytest.mark.integration

EXAMPLE = ROOT / "examples" / "datasets" / "postgres-query.yaml"
SECRET = "mlops-postgres"


def example(storage: pathlib.Path, **spec: Any) -> dict[str, Any]:
    """The example Dataset, with the test's storage and the hold node's placement."""
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"].pop("namespace", None)
    doc["spec"].update({"storage": f"file://{storage}", **HOLD, **spec})
    return doc


def apply_secret(cluster: Cluster, ns: str, url: str) -> None:
    """The Secret the example names, with the URL as this process reaches the database."""
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET},
            "type": "Opaque",
            "data": {"url": base64.b64encode(url.encode()).decode()},
        },
        namespace=ns,
    )


def _project(cluster: Cluster, ns: str, volume: dict[str, Any], target: pathlib.Path) -> list[pathlib.Path]:
    """Write a configMap or secret volume's keys under ``target``, as the kubelet mounts them."""
    if "configMap" in volume:
        source, kind, decode = volume["configMap"], "configmap", False
        obj = cluster.get(kind, source["name"], ns)
    elif "secret" in volume:
        source, kind, decode = volume["secret"], "secret", True
        obj = cluster.get(kind, source["secretName"], ns)
    else:
        return []  # hostPath storage: the workload writes the file:// path itself
    data = (obj or {}).get("data") or {}
    items = source.get("items") or [{"key": k, "path": k} for k in data]
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for item in items:
        if item["key"] not in data:
            assert source.get("optional"), f"volume {volume['name']} is not optional; the pod would hang"
            continue  # optional: the kubelet mounts what exists
        value = data[item["key"]]
        path = target / item["path"]
        path.write_bytes(base64.b64decode(value) if decode else value.encode())
        written.append(path)
    return written


def run_pod_as_kubelet(
    cluster: Cluster,
    ns: str,
    pod: dict[str, Any],
    *,
    root: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[int, str]:
    """Mount the pod's volumes under ``root``, run the prepare entrypoint, return (exit code, message)."""
    spec = pod["spec"]
    container = spec["containers"][0]
    assert container["command"] == ["python", "-m", "mlops_workloads.prepare"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in container["volumeMounts"]:
        _project(cluster, ns, volumes[mount["name"]], root / mount["mountPath"].lstrip("/"))
    config = api.PrepareConfig.model_validate_json((root / workload.CONFIG_FILE.lstrip("/")).read_text())
    # The workload reads the paths its config names; below ``root`` here, at "/" in a pod.
    local = config.model_copy(update={"secrets_root": str(root / config.secrets_root.lstrip("/"))})
    config_file = root / "local-config.json"
    config_file.write_text(local.model_dump_json(by_alias=True, exclude_none=True))
    result = root / "termination-log"
    monkeypatch.setenv(workload.CONFIG_FILE_ENV, str(config_file))
    monkeypatch.setenv(workload.RESULT_PATH_ENV, str(result))
    code = prepare_main.main()
    return code, result.read_text()


@dataclasses.dataclass
class Env:
    """What each test needs: the cluster, a watched namespace, the database, a scratch root."""

    cluster: Cluster
    ns: str
    postgres: dict[str, str]
    tmp_path: pathlib.Path
    monkeypatch: pytest.MonkeyPatch

    @property
    def password(self) -> str:
        return urllib.parse.unquote(urllib.parse.urlsplit(self.postgres["hostUrl"]).password or "")

    def apply_example(self, *, query: str | None = None, **spec: Any) -> str:
        """Apply the example (``query`` replacing its query); return the Dataset's name."""
        manifest = example(self.tmp_path / "store", **spec)
        if query is not None:
            manifest["spec"]["sources"][0]["sql"]["query"] = query
        self.cluster.apply(manifest, namespace=self.ns)
        return str(manifest["metadata"]["name"])

    def prepare_once(self, name: str) -> tuple[dict[str, Any], int, str]:
        """Wait for the prepare pod, run it as the kubelet would, write its outcome."""
        job = wait_job(self.cluster, self.ns, name)["metadata"]["name"]
        pod = wait_running_pod(self.cluster, self.ns, job)
        code, message = run_pod_as_kubelet(
            self.cluster, self.ns, pod, root=self.tmp_path / "pod", monkeypatch=self.monkeypatch
        )
        finish_pod(self.cluster, self.ns, pod, exit_code=code, message=message)
        return pod, code, message


@pytest.fixture
def env(  # noqa: PLR0917 - pytest passes fixtures positionally
    cluster: Cluster,
    namespace: str,
    operator: OperatorHandle,
    postgres: dict[str, str],
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Env:
    return Env(cluster=cluster, ns=namespace, postgres=postgres, tmp_path=tmp_path, monkeypatch=monkeypatch)


def assert_never_shown(env: Env, name: str, secret: str, *texts: str) -> None:
    """``secret`` (and its URL-quoted form) is in neither the Dataset's status, the namespace's
    Events, nor any of ``texts`` (the workload's output, logs, termination message)."""
    assert len(secret) >= 8  # a real password, so that a miss is not luck
    status = json.dumps((env.cluster.get("dataset", name, env.ns) or {}).get("status") or {})
    events = "\n".join(str(e.get("message", "")) for e in env.cluster.list("events", env.ns))
    for where, text in [("status", status), ("events", events), *enumerate(texts)]:
        # pytest.fail, not assert: a failing assert would print the password it found.
        if secret in text or urllib.parse.quote(secret, safe="") in text:
            pytest.fail(f"the password appears in {where}", pytrace=False)


def test_the_example_prepares_the_rows_of_a_real_postgresql_table(
    env: Env, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    apply_secret(env.cluster, env.ns, env.postgres["hostUrl"])
    name = env.apply_example()
    pod, code, message = env.prepare_once(name)

    # The Secret reaches the pod as a read-only, optional volume at the path the config names.
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "source-0")
    assert volume["secret"] == {
        "secretName": SECRET,
        "items": [{"key": "url", "path": "url"}],
        "optional": True,
        "defaultMode": 420,
    }
    mount = next(m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == "source-0")
    assert mount == {
        "name": "source-0",
        "mountPath": "/var/run/secrets/mlops.dev/sources/0",
        "readOnly": True,
    }

    assert code == 0, message
    result = json.loads(message)
    status = wait_status(env.cluster, env.ns, name, lambda s: s.get("phase") == "Ready", "Ready")
    assert status["rows"]["input"] == 569 and status["rows"]["output"] == 569
    assert (status["columns"], status["classes"], status["task"]) == (30, 2, "classification")
    assert status["digest"] == result["digest"]
    version = env.tmp_path / "store" / result["digest"]
    assert (version / "train.parquet").is_file() and (version / "preprocessor.skops").is_file()
    report = json.loads((version / "report.json").read_text())
    assert report["sources"][0]["rows"] == 569
    assert "sql mlops-postgres: SELECT * FROM examples.breast_cancer" in report["sources"][0]["source"]
    columns = {c["name"]: c["dtype"] for c in report["columns"]}
    assert columns["mean_radius"] == "float" and columns["target"] == "int"
    out = capsys.readouterr()
    assert_never_shown(env, name, env.password, out.out, out.err, caplog.text, message)


def test_a_wrong_password_fails_the_dataset_with_the_database_message(
    env: Env, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    wrong = f"not-the-password-{uuid.uuid4().hex[:8]}"
    parts = urllib.parse.urlsplit(env.postgres["hostUrl"])
    netloc = f"{env.postgres['user']}:{wrong}@{parts.hostname}:{parts.port}"
    apply_secret(env.cluster, env.ns, parts._replace(netloc=netloc).geturl())
    name = env.apply_example(backoffLimit=0)  # retries are the Job controller's, tested elsewhere
    _, code, message = env.prepare_once(name)

    assert code == 1, message  # a connection failure may heal: retried up to backoffLimit
    status = wait_status(env.cluster, env.ns, name, lambda s: s.get("phase") == "Failed", "Failed")
    assert status["reason"] == "ConnectionFailed", status
    assert 'password authentication failed for user "mlops"' in status["message"], status["message"]
    assert f"postgresql+psycopg://mlops:***@127.0.0.1:{env.postgres['port']}/mlops" in status["message"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True" and failed["reason"] == "ConnectionFailed"
    wait_until(
        lambda: "ConnectionFailed" in event_reasons(env.cluster, env.ns, name),
        timeout=30,
        what="a Warning event",
    )
    out = capsys.readouterr()
    assert_never_shown(env, name, wrong, out.out, out.err, caplog.text, message)


def test_a_query_the_database_refuses_fails_the_dataset_with_its_message(
    env: Env, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    apply_secret(env.cluster, env.ns, env.postgres["hostUrl"])
    name = env.apply_example(backoffLimit=0, query="SELECT * FROM examples.no_such_table")
    _, code, message = env.prepare_once(name)

    assert code != 0, message
    status = wait_status(env.cluster, env.ns, name, lambda s: s.get("phase") == "Failed", "Failed")
    assert status["reason"] == "QueryFailed", status
    assert 'relation "examples.no_such_table" does not exist' in status["message"], status["message"]
    assert "spec.sources[0].sql.query" in status["message"]
    wait_until(
        lambda: "QueryFailed" in event_reasons(env.cluster, env.ns, name), timeout=30, what="a Warning event"
    )
    out = capsys.readouterr()
    assert_never_shown(env, name, env.password, out.out, out.err, caplog.text, message)


def test_a_missing_secret_fails_the_dataset_as_source_unreadable(env: Env) -> None:
    """The Secret volume is optional, so the pod starts (no ContainerCreating forever) and says why."""
    name = env.apply_example(backoffLimit=0)
    _, code, message = env.prepare_once(name)
    assert code != 0, message
    status = wait_status(env.cluster, env.ns, name, lambda s: s.get("phase") == "Failed", "Failed")
    assert status["reason"] == "SourceUnreadable", status
    expected = f"Secret 'mlops-postgres' in namespace {env.ns!r} does not exist or has no key 'url'"
    assert expected in status["message"], status["message"]
