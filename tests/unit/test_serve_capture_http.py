"""Capture through the real server process: request ids over HTTP, two workers' metrics and files,
the flush on SIGTERM, and an unwritable store that loses no answer."""

from __future__ import annotations

import pathlib
import signal
import time
from collections.abc import Callable

import pytest
import requests
from prometheus_client import parser as prom_parser

from mlops_workloads import capture, storage
from mlops_workloads.serve import demo
from model_server import running

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, "site": "north"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return demo.build(tmp_path_factory.mktemp("model"))


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in prom_parser.text_string_to_metric_families(text)
        for s in family.samples
    }


def wait_for(predicate: Callable[[], bool], *, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def test_two_workers_capture_every_request_and_flush_on_sigterm(
    model_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    root = tmp_path / "cap"
    args = ("--workers", "2", "--capture-uri", f"file://{root}", "--capture-sample-rate", "1")
    with running(model_dir, tmp_path, *args) as (url, proc):
        sent = []
        for i in range(20):
            with requests.Session() as session:  # new connections spread over the workers
                r = session.post(
                    f"{url}/v1/models/iris:predict",
                    json={"instances": [ROW]},
                    headers={"x-request-id": f"req-{i}"},
                )
                assert r.status_code == 200 and r.headers["X-Request-Id"] == f"req-{i}"
                sent.append(f"req-{i}")
        r = requests.post(f"{url}/v1/models/iris:predict", json={"instances": [ROW, ROW]})
        generated = r.headers["X-Request-Id"]
        assert r.status_code == 200 and len(generated) == 32
        sent.append(generated)
        # Nothing is written before a file rolls (60 s): both workers hold their rows, and the
        # pending gauge is summed across them.
        key = ("mlops_serve_capture_pending_rows", ())
        wait_for(lambda: scrape(url).get(key) == 22)
        assert not list(root.rglob("*.parquet"))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    table = capture.read(storage.open_store(f"file://{root}"))
    assert table.num_rows == 22
    assert sorted(set(table.column("request_id").to_pylist())) == sorted(sent)
    assert set(table.column("reason").to_pylist()) == {"sample"}
    assert set(table.column("model_name").to_pylist()) == {"iris"}


def test_an_unwritable_store_loses_no_answer_over_http(
    model_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    args = ("--capture-uri", f"file://{blocker}", "--capture-sample-rate", "1", "--capture-roll-seconds", "5")
    with running(model_dir, tmp_path, *args) as (url, proc), requests.Session() as session:
        statuses: list[int] = []
        errors = ("mlops_serve_capture_errors_total", ())

        def answered_until_an_error_is_counted() -> bool:
            for _ in range(10):
                statuses.append(
                    session.post(f"{url}/v1/models/iris:predict", json={"instances": [ROW]}).status_code
                )
            return scrape(url).get(errors, 0) >= 1

        wait_for(answered_until_an_error_is_counted, seconds=60)
        assert statuses and set(statuses) == {200}
        assert scrape(url)[("mlops_serve_capture_rows_total", (("reason", "sample"),))] == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert blocker.read_text() == "not a directory"
