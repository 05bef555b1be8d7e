"""The OIP v2 gRPC service of the model server, called with the stubs generated from the proto.

In-process (the real ``http.serve`` with the gRPC front end on its loop, in a thread, so a test
can count and hold the model calls): live/ready/metadata, infer with typed and with raw contents
(the same answer as HTTP's v2 infer), gRPC and HTTP requests batched into ONE model call, the
metrics and low-confidence counting of gRPC requests, and the status codes of the errors. As a
subprocess (``python -m mlops_workloads.serve --workers 2``): the flags, the shared port, SIGTERM.
The generated modules are regenerated and compared byte for byte.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import pathlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import requests
from prometheus_client import parser as prom_parser

from mlops_workloads.serve import __main__ as serve_main
from mlops_workloads.serve import app as app_mod
from mlops_workloads.serve import bundle as bundle_mod
from mlops_workloads.serve import demo, grpc_server, http
from mlops_workloads.serve.grpc_v2 import generate
from mlops_workloads.serve.grpc_v2 import grpc_predict_v2_pb2 as pb
from mlops_workloads.serve.grpc_v2 import grpc_predict_v2_pb2_grpc as pb_grpc
from model_server import running

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, "site": "north"}
NUMERIC = ("sepal_length", "sepal_width", "petal_length", "petal_width")
THRESHOLD = 0.99  # above the demo row's top probability (~0.986): its rows are low-confidence
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]


class CountingPipeline:
    """The model's pipeline, recording the rows of each call; ``gate`` holds the next call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[int] = []
        self.entered = threading.Event()
        self.gate: threading.Event | None = None

    def predict_proba(self, frame: Any) -> Any:
        self.calls.append(len(frame))
        gate = self.gate
        self.entered.set()
        if gate is not None:
            assert gate.wait(30), "the test never released the model call"
        return self.inner.predict_proba(frame)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclasses.dataclass
class Served:
    app: app_mod.App
    server: http.Server
    pipeline: CountingPipeline
    url: str
    stub: pb_grpc.GRPCInferenceServiceStub


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return demo.build(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def served(model_dir: pathlib.Path) -> Iterator[Served]:
    loaded = bundle_mod.load(model_dir)
    pipeline = CountingPipeline(loaded.pipeline)
    app = app_mod.App(
        dataclasses.replace(loaded, pipeline=pipeline),
        model_name="iris",
        low_confidence_threshold=THRESHOLD,
        max_batch_rows=100,
        # Built before the test gates the pipeline: the explainer's own checks call the model.
        explainer_in_background=False,
    )
    # The calls on the worker thread: a test gates one and sends more while it runs (a request
    # scored on the loop, alone and quick, would hold them all behind the gate).
    server = http.Server(app, inline_seconds=0.0)
    frontend = grpc_server.GrpcFrontend("127.0.0.1", 0, reuse_port=False, max_message_bytes=1 << 20)
    sock = http.make_socket("127.0.0.1", 0, reuse_port=False)
    loop = http.new_event_loop()
    started = threading.Event()
    holder: dict[str, asyncio.Event] = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)
        holder["stop"] = stop = asyncio.Event()
        loop.run_until_complete(
            http.serve(server, sock, stop=stop, ready=lambda _port: started.set(), frontends=[frontend])
        )

    thread = threading.Thread(target=serve, name="server", daemon=True)
    thread.start()
    assert started.wait(30), "the in-process server did not start"
    channel = grpc.insecure_channel(f"127.0.0.1:{frontend.port}", options=CHANNEL_OPTIONS)
    try:
        yield Served(
            app=app,
            server=server,
            pipeline=pipeline,
            url=f"http://127.0.0.1:{sock.getsockname()[1]}",
            stub=pb_grpc.GRPCInferenceServiceStub(channel),
        )
    finally:
        channel.close()
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(30)
        loop.close()
        app.close()


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def typed_request(rows: int, **fields: Any) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="iris", **fields)
    for name in NUMERIC:
        request.inputs.add(
            name=name,
            datatype="FP64",
            shape=[rows],
            contents=pb.InferTensorContents(fp64_contents=[ROW[name]] * rows),
        )
    request.inputs.add(
        name="site",
        datatype="BYTES",
        shape=[rows],
        contents=pb.InferTensorContents(bytes_contents=[str(ROW["site"]).encode()] * rows),
    )
    return request


def raw_request(rows: int) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="iris")
    for name in NUMERIC:
        request.inputs.add(name=name, datatype="FP32", shape=[rows])
        request.raw_input_contents.append(np.full(rows, ROW[name], dtype="<f4").tobytes())
    request.inputs.add(name="site", datatype="BYTES", shape=[rows])
    site = str(ROW["site"]).encode()
    request.raw_input_contents.append((struct.pack("<I", len(site)) + site) * rows)
    return request


def http_infer(url: str, rows: int) -> dict[str, Any]:
    body = {
        "inputs": [
            {
                "name": n,
                "datatype": "FP64" if n in NUMERIC else "BYTES",
                "shape": [rows],
                "data": [ROW[n]] * rows,
            }
            for n in ROW
        ]
    }
    r = requests.post(f"{url}/v2/models/iris/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def outputs_of(response: pb.ModelInferResponse) -> dict[str, tuple[str, list[int], list[Any]]]:
    out = {}
    for o in response.outputs:
        contents = o.contents
        data = (
            list(contents.int64_contents)
            or list(contents.fp64_contents)
            or list(contents.bool_contents)
            or [b.decode() for b in contents.bytes_contents]
        )
        out[o.name] = (o.datatype, list(o.shape), data)
    return out


def metric(url: str, name: str, **labels: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=30).text
    total = 0.0
    for family in prom_parser.text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def rpc_error(call: Any, request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return caught.value


def test_generated_modules_are_what_the_proto_generates(tmp_path: pathlib.Path) -> None:
    """`make grpc-stubs` output, byte for byte: the committed modules cannot drift from the proto."""
    proto = generate.PROTO.read_text()
    assert proto.startswith("// Copyright 2022 The KServe Authors.")  # its license header, kept
    assert "\npackage inference;\n" in proto and "service GRPCInferenceService" in proto
    for path in generate.generate(tmp_path):
        committed = generate.HERE / path.name
        assert committed.read_bytes() == path.read_bytes(), f"{path.name} is stale: run `make grpc-stubs`"


def test_live_ready_and_metadata(served: Served) -> None:
    stub = served.stub
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live is True
    assert stub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready is True
    assert stub.ModelReady(pb.ModelReadyRequest(name="iris"), timeout=30).ready is True
    assert stub.ModelReady(pb.ModelReadyRequest(name="iris", version="1"), timeout=30).ready is True
    server = stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=30)
    assert (server.name, server.version) == (app_mod.SERVER_NAME, app_mod.SERVER_VERSION)
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="iris"), timeout=30)
    over_http = requests.get(f"{served.url}/v2/models/iris", timeout=30).json()
    assert (meta.name, list(meta.versions), meta.platform) == ("iris", ["1"], "sklearn")
    for got, want in ((meta.inputs, over_http["inputs"]), (meta.outputs, over_http["outputs"])):
        assert [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in got] == want
    assert [t.name for t in meta.outputs] == ["predictions", "probabilities", "low_confidence"]


def test_infer_with_typed_contents_answers_what_http_answers(served: Served) -> None:
    response, call = served.stub.ModelInfer.with_call(
        typed_request(3, id="req-1"),
        metadata=(("x-request-id", "trace-42"), ("traceparent", TRACEPARENT)),
        timeout=30,
    )
    assert (response.model_name, response.model_version, response.id) == ("iris", "1", "req-1")
    trailing = dict((m.key, m.value) for m in call.trailing_metadata() or ())
    assert trailing["x-request-id"] == "trace-42"
    assert trailing["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")  # the caller's trace
    over_http = http_infer(served.url, 3)
    assert outputs_of(response) == {
        o["name"]: (o["datatype"], o["shape"], o["data"]) for o in over_http["outputs"]
    }
    probabilities = next(o for o in response.outputs if o.name == "probabilities")
    assert json.loads(probabilities.parameters["classes"].string_param) == [0, 1, 2]
    assert outputs_of(response)["low_confidence"][2] == [True] * 3  # under THRESHOLD

    only = served.stub.ModelInfer(
        typed_request(2, outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="predictions")]),
        timeout=30,
    )
    assert [o.name for o in only.outputs] == ["predictions"]


def test_infer_with_raw_contents(served: Served) -> None:
    raw = served.stub.ModelInfer(raw_request(4), timeout=30)
    typed = served.stub.ModelInfer(typed_request(4), timeout=30)
    raw_out, typed_out = outputs_of(raw), outputs_of(typed)
    assert raw_out["predictions"] == typed_out["predictions"] == ("INT64", [4], [0, 0, 0, 0])
    # FP32 rounding of the inputs moves the probabilities a little, not the answer.
    assert np.allclose(raw_out["probabilities"][2], typed_out["probabilities"][2], atol=1e-5)


def test_grpc_and_http_requests_share_one_model_call(served: Served) -> None:
    """While a model call runs, HTTP and gRPC requests queue together; the next call scores all."""
    pipeline, server = served.pipeline, served.server
    before = metric(served.url, "mlops_serve_requests_total", endpoint="/v2/models/{name}/infer", code="200")
    low_before = metric(served.url, "mlops_serve_low_confidence_total")
    gate = threading.Event()
    pipeline.calls.clear()
    pipeline.entered.clear()
    pipeline.gate = gate
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        blocker = pool.submit(http_infer, served.url, 1)
        assert pipeline.entered.wait(30)
        pipeline.gate = None  # the joint call that follows runs at once
        grpc_calls = [pool.submit(served.stub.ModelInfer, typed_request(2), timeout=30) for _ in range(5)]
        http_calls = [pool.submit(http_infer, served.url, 3) for _ in range(4)]
        deadline = time.monotonic() + 30
        while server.inflight < 1 + 5 + 4:
            assert time.monotonic() < deadline, f"only {server.inflight} requests arrived"
            time.sleep(0.01)
        gate.set()
        assert blocker.result(30)["outputs"][0]["data"] == [0]
        grpc_answers = [f.result(30) for f in grpc_calls]
        http_answers = [f.result(30) for f in http_calls]
    assert pipeline.calls == [1, 5 * 2 + 4 * 3]  # the blocked call, then ONE call for all nine
    assert all(outputs_of(a)["predictions"][2] == [0, 0] for a in grpc_answers)
    assert all(a["outputs"][0]["data"] == [0, 0, 0] for a in http_answers)
    # Counted like HTTP's: requests under the v2 infer endpoint, low-confidence rows.
    after = metric(served.url, "mlops_serve_requests_total", endpoint="/v2/models/{name}/infer", code="200")
    assert after - before == 1 + 5 + 4
    assert metric(served.url, "mlops_serve_low_confidence_total") - low_before == 1 + 5 * 2 + 4 * 3
    assert server.inflight == 0


def test_errors_have_grpc_status_codes(served: Served) -> None:
    stub = served.stub
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    cases: list[tuple[pb.ModelInferRequest, grpc.StatusCode, str]] = []
    cases.append((pb.ModelInferRequest(model_name="nope"), grpc.StatusCode.NOT_FOUND, "not served here"))
    wrong_version = typed_request(1)
    wrong_version.model_version = "7"
    cases.append((wrong_version, grpc.StatusCode.NOT_FOUND, "no version '7'"))
    cases.append((pb.ModelInferRequest(model_name="iris"), invalid, "non-empty list"))
    missing = typed_request(1)
    del missing.inputs[0]
    cases.append((missing, invalid, "missing input tensors: ['sepal_length']"))
    wrong_field = typed_request(1)
    wrong_field.inputs[0].contents.Clear()
    wrong_field.inputs[0].contents.fp32_contents.append(5.1)
    cases.append((wrong_field, invalid, "FP64 is sent in fp64_contents"))
    infinite = typed_request(1)
    infinite.inputs[0].contents.fp64_contents[0] = float("inf")
    cases.append((infinite, invalid, "not a finite number"))
    short_raw = raw_request(2)
    short_raw.raw_input_contents[0] = b"\0" * 3
    cases.append((short_raw, invalid, "needs 8 raw bytes"))
    both = raw_request(1)
    both.inputs[0].contents.fp32_contents.append(1.0)
    cases.append((both, invalid, "use one or the other"))
    cases.append((typed_request(101), invalid, "at most 100"))
    unknown_output = typed_request(1, outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="x")])
    cases.append((unknown_output, invalid, "unknown output(s) ['x']"))
    for request, code, message in cases:
        error = rpc_error(stub.ModelInfer, request)
        assert error.code() == code and message in (error.details() or ""), (code, error.details())
    assert rpc_error(stub.ModelReady, pb.ModelReadyRequest(name="nope")).code() == grpc.StatusCode.NOT_FOUND
    assert rpc_error(stub.ModelMetadata, pb.ModelMetadataRequest(name="iris", version="9")).code() == (
        grpc.StatusCode.NOT_FOUND
    )
    load = rpc_error(stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name="iris"))
    assert load.code() == grpc.StatusCode.UNIMPLEMENTED
    # A refused request is counted under its code, like HTTP's.
    assert (
        metric(served.url, "mlops_serve_requests_total", endpoint="/v2/models/{name}/infer", code="422") > 0
    )


def test_not_ready_is_unavailable(served: Served) -> None:
    served.app.ready = False
    try:
        assert served.stub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready is False
        assert served.stub.ModelReady(pb.ModelReadyRequest(name="iris"), timeout=30).ready is False
        error = rpc_error(served.stub.ModelInfer, typed_request(1))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        served.app.ready = True
    assert served.stub.ModelInfer(typed_request(1), timeout=30).outputs[0].name == "predictions"


def test_grpc_port_flag_env_and_off() -> None:
    assert serve_main.grpc_port_of(None, {}) == 8081
    assert serve_main.grpc_port_of(None, {"MLOPS_SERVE_GRPC_PORT": "9001"}) == 9001
    assert serve_main.grpc_port_of(9002, {"MLOPS_SERVE_GRPC_PORT": "9001"}) == 9002
    assert serve_main.grpc_port_of(0, {}) == 0  # off
    with pytest.raises(Exception, match="not a port"):
        serve_main.grpc_port_of(None, {"MLOPS_SERVE_GRPC_PORT": "x"})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_workers_serve_grpc_on_one_port_and_drain(model_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    port_file = tmp_path / "grpc-port"
    args = ("--workers", "2", "--grpc-port", str(_free_port()), "--grpc-port-file", str(port_file))
    with running(model_dir, tmp_path, *args) as (url, proc):
        target = f"127.0.0.1:{port_file.read_text()}"
        for _ in range(10):  # new connections spread over the two workers
            with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                assert outputs_of(stub.ModelInfer(typed_request(1), timeout=30))["predictions"][2] == [0]
        # Both workers' rows, whichever answered the scrape (the multiprocess registry).
        assert metric(url, "mlops_serve_rows_total") == 10
    # SIGTERM: drained, both workers and their gRPC servers stopped.
    assert proc.returncode == 0, proc.stdout.read().decode()[-4000:] if proc.stdout else ""
