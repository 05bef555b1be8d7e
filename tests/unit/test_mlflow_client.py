"""The MLflow REST client: configuration from the environment, credentials sent the MLflow way and
never shown, MLflow's error codes turned into the export's reasons, the artifact proxy's path."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator

import _mlflow_fake
import pytest

from mlops_operator.mlflow_export import client as mclient


@pytest.fixture
def fake() -> Iterator[_mlflow_fake.FakeMlflow]:
    server = _mlflow_fake.start()
    yield server
    server.server.shutdown()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_config_from_env_reads_mlflows_own_variables() -> None:
    assert mclient.Config.from_env({}) is None
    assert mclient.Config.from_env({"MLOPS_MLFLOW_TRACKING_URI": "  "}) is None
    config = mclient.Config.from_env(
        {
            "MLOPS_MLFLOW_TRACKING_URI": "https://mlflow.example.com/team/",
            "MLOPS_MLFLOW_EXPERIMENT_PREFIX": "ml/",
            "MLOPS_MLFLOW_TIMEOUT_SECONDS": "3.5",
            "MLFLOW_TRACKING_TOKEN": "tok",
            "MLFLOW_TRACKING_SERVER_CERT_PATH": "/etc/ca.pem",
            "MLFLOW_TRACKING_INSECURE_TLS": "true",
        }
    )
    assert config is not None
    assert config.base_url == "https://mlflow.example.com/team"
    assert (config.experiment_prefix, config.timeout_seconds, config.token) == ("ml/", 3.5, "tok")
    assert (config.cert_path, config.insecure_tls) == ("/etc/ca.pem", True)
    defaults = mclient.Config.from_env({"MLOPS_MLFLOW_TRACKING_URI": "http://m:5000"})
    assert defaults is not None and defaults.experiment_prefix == "mlops/" and defaults.token is None


def test_credentials_in_the_uri_become_basic_auth_and_never_show() -> None:
    config = mclient.Config.from_env({"MLOPS_MLFLOW_TRACKING_URI": "http://ann:p%40ss@mlflow:5000/x?y=1"})
    assert config is not None
    assert (config.username, config.password) == ("ann", "p@ss")
    assert config.base_url == "http://mlflow:5000/x"
    assert "p@ss" not in repr(config) and "p%40ss" not in repr(config)
    assert "p@ss" not in repr(mclient.Client(config))
    explicit = mclient.Config.from_env(
        {
            "MLOPS_MLFLOW_TRACKING_URI": "http://mlflow:5000",
            "MLFLOW_TRACKING_USERNAME": "bob",
            "MLFLOW_TRACKING_PASSWORD": "hunter2",
        }
    )
    assert explicit is not None and "hunter2" not in repr(explicit)


@pytest.mark.parametrize("uri", ["mlflow:5000", "ftp://mlflow", "file:///tmp/mlruns", "http://"])
def test_a_tracking_uri_that_is_no_http_url_stops_the_operator(uri: str) -> None:
    with pytest.raises(ValueError, match="MLOPS_MLFLOW_TRACKING_URI must be an http"):
        mclient.Config.from_env({"MLOPS_MLFLOW_TRACKING_URI": uri})


def test_display_uri_drops_user_info_query_and_fragment() -> None:
    assert mclient.display_uri("https://u:secret@h.example:8443/a/?token=x#f") == "https://h.example:8443/a"
    assert mclient.display_uri("http://[::1]:5000") == "http://[::1]:5000"


def test_bearer_token_wins_over_basic_auth(fake: _mlflow_fake.FakeMlflow) -> None:
    client = mclient.Client(mclient.Config(tracking_uri=fake.url, token="tok", username="u", password="p"))
    client.create_experiment("e", {})
    assert fake.store.calls[-1].headers["Authorization"] == "Bearer tok"
    basic = mclient.Client(mclient.Config(tracking_uri=fake.url, username="u", password="p"))
    basic.get_experiment_by_name("e")
    assert fake.store.calls[-1].headers["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    anonymous = mclient.Client(mclient.Config(tracking_uri=fake.url))
    anonymous.get_experiment_by_name("e")
    assert "Authorization" not in fake.store.calls[-1].headers


def test_not_found_and_already_exists_are_answers_not_failures(fake: _mlflow_fake.FakeMlflow) -> None:
    client = mclient.Client(mclient.Config(tracking_uri=fake.url))
    assert client.get_experiment_by_name("nope") is None
    experiment_id = client.create_experiment("e", {"k": "v"})
    assert client.get_experiment_by_name("e") == {
        "experiment_id": experiment_id,
        "name": "e",
        "lifecycle_stage": "active",
        "tags": [{"key": "k", "value": "v"}],
    }
    with pytest.raises(mclient.AlreadyExists):
        client.create_experiment("e", {})
    assert client.create_registered_model("ns.m", description="d", tags={}) is True
    assert client.create_registered_model("ns.m", description="d", tags={}) is False
    assert client.get_registered_model("ns.other") is None
    client.delete_alias("ns.m", "never-set")  # MLflow's 404: nothing to delete


def test_errors_carry_a_reason_and_the_servers_message_but_no_secret(fake: _mlflow_fake.FakeMlflow) -> None:
    client = mclient.Client(mclient.Config(tracking_uri=fake.url, token="s3cret"))
    for status, code, reason in (
        (401, "UNAUTHENTICATED", mclient.REASON_AUTH),
        (403, "PERMISSION_DENIED", mclient.REASON_AUTH),
        (400, "INVALID_PARAMETER_VALUE", mclient.REASON_REJECTED),
        (500, "INTERNAL_ERROR", mclient.REASON_UNREACHABLE),
        (503, "TEMPORARILY_UNAVAILABLE", mclient.REASON_UNREACHABLE),
    ):
        fake.store.fail_once["experiments/create"] = (status, code)
        with pytest.raises(mclient.MlflowError) as caught:
            client.create_experiment("e", {})
        assert caught.value.reason == reason and caught.value.status == status
        assert caught.value.message.startswith(f"POST experiments/create: HTTP {status} {code}: ")
        assert "failing once on purpose" in caught.value.message
        assert "s3cret" not in caught.value.message and "s3cret" not in str(caught.value)


def test_an_unreachable_server_says_where_without_credentials() -> None:
    port = closed_port()
    client = mclient.Client(mclient.Config(tracking_uri=f"http://u:pw@127.0.0.1:{port}", timeout_seconds=2))
    with pytest.raises(mclient.MlflowError) as caught:
        client.get_experiment_by_name("e")
    assert caught.value.reason == mclient.REASON_UNREACHABLE
    assert f"http://127.0.0.1:{port} unreachable" in caught.value.message
    assert "pw" not in caught.value.message


def test_runs_batches_the_model_registry_and_aliases(fake: _mlflow_fake.FakeMlflow) -> None:
    client = mclient.Client(mclient.Config(tracking_uri=fake.url))
    eid = client.create_experiment("e", {})
    run = client.create_run(eid, run_name="m-v1", start_time=1000, tags={"mlops.dev/model-version": "1"})
    rid = run["info"]["run_id"]
    client.log_batch(rid, params=[{"key": "a", "value": "1"}], metrics=[{"key": "m", "value": 0.5}])
    client.update_run(rid, status="FINISHED", end_time=2000)
    assert client.search_runs(eid, "tags.`mlops.dev/model-version` = '1'")[0]["info"]["status"] == "FINISHED"
    assert client.search_runs(eid, "tags.`mlops.dev/model-version` = '2'") == []
    client.create_registered_model("ns.m", description="", tags={})
    version = client.create_model_version("ns.m", source="pvc://m/1", run_id=rid, tags={"t": "1"})
    assert version["version"] == "1"
    assert client.search_model_versions(f"name = 'ns.m' and run_id = '{rid}'")[0]["source"] == "pvc://m/1"
    client.set_alias("ns.m", "champion", "1")
    assert fake.aliases("ns.m") == {"champion": "1"}
    client.delete_alias("ns.m", "champion")
    assert fake.aliases("ns.m") == {}
    get = next(c for c in fake.store.calls if c.endpoint == "model-versions/search")
    assert get.method == "GET" and get.body["max_results"] == "10"


def test_artifacts_go_through_the_servers_proxy_only(fake: _mlflow_fake.FakeMlflow) -> None:
    client = mclient.Client(mclient.Config(tracking_uri=fake.url + "/"))
    assert client.upload_artifact(
        "mlflow-artifacts:/1/abc/artifacts", "model_card.json", b"{}", "application/json"
    )
    assert fake.store.artifacts == {"1/abc/artifacts/model_card.json": b"{}"}
    put = fake.store.calls[-1]
    assert (put.method, put.headers["Content-Type"]) == ("PUT", "application/json")
    # Artifacts the server does not proxy (s3://, a local path) would need the storage's own
    # credentials, which the operator never has: nothing is sent.
    calls = len(fake.store.calls)
    assert not client.upload_artifact(
        "s3://bucket/1/abc/artifacts", "model_card.json", b"{}", "application/json"
    )
    assert not client.upload_artifact("/mlruns/1/abc/artifacts", "model_card.json", b"{}", "application/json")
    assert len(fake.store.calls) == calls


def test_an_answer_that_is_not_json_is_no_mlflow(fake: _mlflow_fake.FakeMlflow) -> None:
    client = mclient.Client(mclient.Config(tracking_uri=fake.url))

    class NotJson:
        def __enter__(self) -> NotJson:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def read(self, limit: int) -> bytes:
            return b"<html>login</html>"

    client._open = lambda request, timeout: NotJson()
    with pytest.raises(mclient.MlflowError, match="not JSON"):
        client.get_experiment_by_name("e")
