"""The model server's fast paths answer exactly as the slow ones: object strings, lazy frames,
counting once per model call, a lone quick request scored on the loop, the frozen heap."""

from __future__ import annotations

import asyncio
import gc
import json
import math
import pathlib
import subprocess
import sys
import threading
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_workloads.serve import app as app_mod
from mlops_workloads.serve import bundle as bundle_mod
from mlops_workloads.serve import demo, http, inputs

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, "site": "north"}
ROW2 = {"sepal_length": 6.3, "sepal_width": 2.9, "petal_length": 5.6, "petal_width": 1.8, "site": "south"}
PREDICT = "/v1/models/iris:predict"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return demo.build(tmp_path_factory.mktemp("model"))


def new_app(model_dir: pathlib.Path) -> app_mod.App:
    return app_mod.App(
        bundle_mod.load(model_dir),
        model_name="iris",
        explainer_in_background=False,
        attribution_interval=0,
    )


def body(*rows: dict[str, Any]) -> bytes:
    return json.dumps({"instances": list(rows)}).encode()


def test_object_strings_answer_as_pandas_default(model_dir: pathlib.Path) -> None:
    rows = [ROW, ROW2, {**ROW, "site": "west"}, {**ROW2, "petal_width": None}]
    app = new_app(model_dir)
    default = [app.handle("POST", PREDICT, body(r)).body for r in rows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pd.option_context("future.infer_string", False):
            frame = app.dispatch("POST", PREDICT, body(ROW)).batch.frame  # type: ignore[union-attr]
            assert frame["site"].dtype == object
            objects = [app.handle("POST", PREDICT, body(r)).body for r in rows]
    assert objects == default


def test_prefer_object_strings_sets_the_option_for_the_process() -> None:
    script = (
        "import warnings; warnings.simplefilter('error')\n"
        "import pandas as pd\n"
        "from mlops_workloads.serve import inputs\n"
        "assert inputs.prefer_object_strings()\n"
        "assert pd.DataFrame({'a': ['x']})['a'].dtype == object\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_a_batch_builds_its_frame_only_when_asked(model_dir: pathlib.Path) -> None:
    app = new_app(model_dir)
    pending = [app.dispatch("POST", PREDICT, body(r)) for r in (ROW, ROW2)]
    assert all(isinstance(p, app_mod.Pending) and p.batch._frame is None for p in pending)
    app.score(pending)  # type: ignore[arg-type]
    assert all(p.batch._frame is None for p in pending)  # type: ignore[union-attr]
    frame = pending[0].batch.frame  # type: ignore[union-attr]
    assert list(frame.columns) == list(ROW) and frame is pending[0].batch.frame  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [(True, "row 0: got true, expected a number"), ("5.1", 'row 0: got "5.1", expected a number')],
)
def test_fast_column_check_refuses_what_the_slow_one_did(
    model_dir: pathlib.Path, value: Any, fragment: str
) -> None:
    response = new_app(model_dir).handle("POST", PREDICT, body({**ROW, "sepal_length": value}))
    assert response.status == 422 and fragment in json.loads(response.body)["error"]


def test_fast_range_check_counts_as_the_comparisons_do(model_dir: pathlib.Path) -> None:
    schema = bundle_mod.load(model_dir).schema
    for values, rows in (([math.nan, 99.0, 5.1], 1), ([math.nan, 5.1], 0), ([math.nan], 0), ([1.0, 99.0], 2)):
        columns = {name: np.array([ROW[name]] * len(values), dtype=object) for name in schema.names}
        columns["sepal_length"] = np.array(values)
        got = [(w["feature"], w["rows"]) for w in inputs._warnings(schema, columns)]
        assert got == ([("sepal_length", rows)] if rows else []), values
    answer = json.loads(new_app(model_dir).handle("POST", PREDICT, body({**ROW, "sepal_length": 99.0})).body)
    assert [(w["feature"], w["rows"]) for w in answer["warnings"]] == [("sepal_length", 1)]


def exposition(app: app_mod.App) -> dict[str, float]:
    from prometheus_client import parser

    out: dict[str, float] = {}
    for family in parser.text_string_to_metric_families(app._metrics().body.decode()):
        for sample in family.samples:
            if sample.name.startswith("mlops_serve_") and "duration" not in sample.name:
                out[f"{sample.name}{sorted(sample.labels.items())}"] = sample.value
    return out


def test_one_joint_call_counts_as_calls_one_by_one(model_dir: pathlib.Path) -> None:
    bodies = [body(ROW), body(ROW2, ROW), body({**ROW, "site": "west"}, ROW2, ROW2)]
    joint, alone = new_app(model_dir), new_app(model_dir)
    answers = joint.score([joint.dispatch("POST", PREDICT, b) for b in bodies])  # type: ignore[misc]
    singles = [alone.score([alone.dispatch("POST", PREDICT, b)])[0] for b in bodies]  # type: ignore[list-item]
    assert [json.loads(a.body) for a in answers] == [json.loads(a.body) for a in singles]
    assert exposition(joint) == exposition(alone)
    assert joint._low_rows == alone._low_rows == 6 and joint._low_count == alone._low_count


class Recorder:
    """An answerer that notes each answer and the thread that scored it."""

    def __init__(self, server: http.Server) -> None:
        self.server = server
        self.answers: list[tuple[int, str]] = []
        self.done = threading.Event()

    def finish(self, slot: Any, response: app_mod.Response, started: float) -> None:
        self.server.end(response, started)
        self.answers.append((response.status, threading.current_thread().name))
        self.done.set()


def run_one(server: http.Server, loop: asyncio.AbstractEventLoop, payload: bytes) -> str:
    """Queue one request as a connection would; the name of the thread that scored it."""
    pending = server.app.dispatch("POST", PREDICT, payload)
    assert isinstance(pending, app_mod.Pending)
    scored_on: list[str] = []
    score = server.app.score

    def traced(group: list[app_mod.Pending]) -> list[app_mod.Response]:
        scored_on.append(threading.current_thread().name)
        return score(group)

    server.app.score = traced  # type: ignore[method-assign,assignment]
    recorder = Recorder(server)

    async def go() -> None:
        server.begin()
        server.enqueue(pending, recorder, http._Slot(True), time.perf_counter())
        while not recorder.done.is_set():
            await asyncio.sleep(0.001)

    try:
        loop.run_until_complete(go())
    finally:
        server.app.score = score  # type: ignore[method-assign]
    assert recorder.answers[0][0] == 200
    return scored_on[0]


def test_a_lone_quick_request_is_scored_on_the_loop(model_dir: pathlib.Path) -> None:
    server = http.Server(new_app(model_dir), inline_seconds=5.0)
    loop = asyncio.new_event_loop()
    server.loop = loop
    try:
        loop_thread = threading.current_thread().name
        assert run_one(server, loop, body(ROW)) != loop_thread  # nothing learnt yet: the thread
        assert server.inline_rows == 1
        assert run_one(server, loop, body(ROW)) == loop_thread
        assert run_one(server, loop, body(ROW, ROW2)) != loop_thread  # larger than any quick call
        assert server.inline_rows == 2
        server.inline_seconds = 0.0  # now every call is "slow": the size learnt shrinks back
        assert run_one(server, loop, body(ROW, ROW2)) == loop_thread
        assert server.inline_rows == 1
        assert run_one(server, loop, body(ROW, ROW2)) != loop_thread
        assert server.inline_rows == 1
    finally:
        server.close()
        loop.close()


def test_freeze_heap_moves_the_loaded_objects_out_of_collections(model_dir: pathlib.Path) -> None:
    app = new_app(model_dir)
    app.explainer_built.clear()  # as while the explainer is still being built on its thread
    try:
        app_mod.freeze_heap(app)
        frozen = gc.get_freeze_count()
        assert frozen > 0
        loaded_by_the_build = [[i] for i in range(1000)]  # lists: always tracked by the collector
        app.explainer_built.set()
        deadline = time.monotonic() + 30
        while gc.get_freeze_count() < frozen + len(loaded_by_the_build):
            assert time.monotonic() < deadline, "what the explainer's build loaded was not frozen"
            time.sleep(0.01)
    finally:
        gc.unfreeze()
        app.close()


def test_parse_json_reads_utf16_as_json_loads_does() -> None:
    text = json.dumps({"instances": [ROW]})
    assert inputs.parse_json(text.encode("utf-16")) == json.loads(text.encode("utf-16"))
    with pytest.raises(inputs.InputError, match="not valid JSON"):
        inputs.parse_json(b'{"a": NaN}')
