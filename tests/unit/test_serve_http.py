"""The server over real HTTP: keep-alive, pipelining, limits, workers, SIGTERM drain, and schemathesis."""

from __future__ import annotations

import json
import pathlib
import re
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from prometheus_client import parser as prom_parser
from schemathesis import checks as st_checks

from mlops_workloads.serve import demo
from model_server import running

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, "site": "north"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return demo.build(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def base(model_dir: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running(model_dir, tmp_path_factory.mktemp("run")) as (url, _):
        yield url


def _raw(url: str, payload: bytes, *, read_until: int = 1, timeout: float = 10.0) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(payload)
        data = b""
        while data.count(b"HTTP/1.1 ") < read_until:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_predict_over_http_with_keep_alive(base: str) -> None:
    with requests.Session() as session:
        for _ in range(3):
            r = session.post(f"{base}/v1/models/iris:predict", json={"instances": [ROW]})
            assert r.status_code == 200 and r.json()["predictions"] == [0]
            assert r.headers["Content-Type"] == "application/json"


def test_an_old_connection_is_closed_after_its_answer_so_clients_rebalance(
    model_dir: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Service spreads connections, not requests: past its age a kept-alive connection's next
    answer says Connection: close (and is whole), so the client reconnects, maybe to a new pod."""
    monkeypatch.setenv("MLOPS_SERVE_MAX_CONNECTION_AGE_SECONDS", "1")
    live = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    with running(model_dir, tmp_path) as (url, _):
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(live)
            first = sock.recv(65536)
            assert first.startswith(b"HTTP/1.1 200") and b"Connection: close" not in first
            time.sleep(1.5)
            sock.sendall(live)
            second = b""
            while chunk := sock.recv(65536):
                second += chunk
            assert second.startswith(b"HTTP/1.1 200") and b"Connection: close" in second
            assert second.rstrip().endswith(b"}"), second  # the whole answer, then the close


def test_pipelined_requests_answer_in_order(base: str) -> None:
    body = json.dumps({"instances": [ROW]}).encode()
    predict = (
        b"POST /v1/models/iris:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    live = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    missing = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
    data = _raw(base, predict + live + missing + predict, read_until=4)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
    assert statuses == [b"200", b"200", b"404", b"200"]
    assert data.index(b'"predictions"') < data.index(b'"live"') < data.index(b'"error"')


def test_expect_continue_and_chunked_body(base: str) -> None:
    body = json.dumps({"instances": [ROW]}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:])) + b"0\r\n\r\n"
    request = (
        b"POST /v1/models/iris:predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked
    )
    data = _raw(base, request, read_until=2)
    assert data.startswith(b"HTTP/1.1 100 Continue") and b"HTTP/1.1 200 OK" in data


def test_malformed_http_gets_400_and_close(base: str) -> None:
    data = _raw(base, b"NOT HTTP AT ALL\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400") and b"Connection: close" in data


def test_oversized_batch_and_body(model_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    with running(model_dir, tmp_path) as (url, _):
        r = requests.post(f"{url}/v1/models/iris:predict", json={"instances": [ROW] * 101})
        assert r.status_code == 413 and "at most 100" in r.json()["error"]
        huge = b'{"instances": [' + b"1," * (9 << 20) + b"1]}"
        r = requests.post(f"{url}/v1/models/iris:predict", data=huge)
        assert r.status_code == 413 and "larger than" in r.json()["error"]
        assert requests.get(f"{url}/v2/health/live").status_code == 200


def test_concurrent_requests_are_batched_and_counted(base: str) -> None:
    import concurrent.futures

    def one(i: int) -> list[int]:
        r = requests.post(f"{base}/v1/models/iris:predict", json={"instances": [ROW] * (1 + i % 3)})
        assert r.status_code == 200
        return list(r.json()["predictions"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(40)))
    assert [len(r) for r in results] == [1 + i % 3 for i in range(40)]
    text = requests.get(f"{base}/metrics").text
    families = {f.name: f for f in prom_parser.text_string_to_metric_families(text)}
    rows = families["mlops_serve_rows"].samples[0].value
    assert rows >= sum(1 + i % 3 for i in range(40))


def test_workers_share_the_port_and_the_metrics(model_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    with running(model_dir, tmp_path, "--workers", "2") as (url, _):
        pids = set()
        for _ in range(30):
            with requests.Session() as s:  # New connections spread over the workers.
                assert s.post(f"{url}/v1/models/iris:predict", json={"instances": [ROW]}).status_code == 200
                pids.add(s.get(f"{url}/v2/health/live").status_code)
        text = requests.get(f"{url}/metrics").text
        families = {f.name: f for f in prom_parser.text_string_to_metric_families(text)}
        total = sum(
            s.value for s in families["mlops_serve_rows"].samples if s.name == "mlops_serve_rows_total"
        )
        assert total == 30  # Summed across both workers, whichever answered the scrape.


def test_sigterm_drains_then_exits(model_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    with running(model_dir, tmp_path, "--drain-seconds", "1.5") as (url, proc), requests.Session() as kept:
        assert requests.get(f"{url}/v2/health/ready").status_code == 200
        before = kept.post(f"{url}/v1/models/iris:predict", json={"instances": [ROW]})
        assert before.status_code == 200 and before.headers.get("Connection") != "close"
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert requests.get(f"{url}/v2/health/ready").status_code == 503
        # The kept-alive connection is still answered, and told to close: its client reconnects
        # elsewhere instead of writing into a socket the server closes at the end of the drain.
        during = kept.post(f"{url}/v1/models/iris:predict", json={"instances": [ROW]})
        assert during.status_code == 200 and during.headers["Connection"] == "close"
        assert proc.wait(timeout=20) == 0


def test_schemathesis_finds_no_server_error(base: str) -> None:
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    checks = [
        st_checks.not_a_server_error,
        st_checks.status_code_conformance,
        st_checks.content_type_conformance,
        st_checks.response_schema_conformance,
    ]
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {o.label for o in operations}
    assert {"POST /v2/models/{name}/infer", "POST /v1/models/{name}:predict", "GET /metrics"} <= labels
    assert len(labels) >= 10
    session = requests.Session()
    statuses: list[int] = []

    def fuzz(operation: Any, mode: schemathesis.GenerationMode, examples: int) -> None:
        negative = mode is schemathesis.GenerationMode.NEGATIVE

        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis.settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            response = case.call(base_url=base, session=session)
            statuses.append(response.status_code)
            if negative:
                # Negative cases break the document on purpose; the server must still answer 4xx.
                assert response.status_code < 500, response.text
            else:
                case.validate_response(response, checks=checks)

        run()

    for operation in operations:
        post = operation.method.upper() == "POST"
        fuzz(operation, schemathesis.GenerationMode.POSITIVE, 40 if post else 3)
        if post:  # Negative generation needs something to break: only the POST bodies have that.
            fuzz(operation, schemathesis.GenerationMode.NEGATIVE, 40)
    assert statuses and max(statuses) < 500
    assert {200, 422} <= set(statuses)
