"""The Open Inference Protocol v2 over gRPC (``inference.GRPCInferenceService``), beside HTTP.

Every worker process serves it on a second port (8081 by default, SO_REUSEPORT across the
workers as HTTP), with grpcio's asyncio server on the SAME event loop as the HTTP front end,
and every call is translated into the App's own route and answered by it:

- ServerLive/ServerReady/ModelReady/ServerMetadata/ModelMetadata are the HTTP GETs of
  ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}[/versions/{v}]/ready``,
  ``/v2`` and ``/v2/models/{name}[/versions/{v}]``;
- ModelInfer becomes the body of ``POST /v2/models/{name}[/versions/{v}]/infer`` (typed
  ``contents`` or ``raw_input_contents``, decoded here to the JSON tensor form), so it is the
  same ``Pending`` (same validation, request id, ``outputs`` selection) and joins the same
  batching queue (``http.Server``): a gRPC and an HTTP request that arrive together share one
  model call, and the low-confidence counting, capture, drift and metrics of ``App.score``
  apply alike. The answer has the HTTP v2 answer's outputs (predictions, probabilities,
  low_confidence) as typed contents; the ``parameters`` that are not a bool, an integer or a
  string (the probabilities' ``classes``, the answer's ``warnings``) travel as JSON strings.

The request id is the ``x-request-id`` metadata when given (else the request's ``id``, else a
new one), returned in the trailing metadata ``x-request-id``; a ``traceparent`` (and
``tracestate``) metadata continues the caller's trace as over HTTP, and the trailing metadata
carries the server's ``traceparent`` back (``tracing``). Calls are counted in the request
metrics under the endpoint of their HTTP twin (ModelInfer as ``/v2/models/{name}/infer``), so
the autoscaler and the canary verdict see gRPC traffic too.

Errors are gRPC status codes: a bad input (the HTTP 400/413/422) INVALID_ARGUMENT, an unknown
model or version NOT_FOUND, a model not loaded UNAVAILABLE, a server fault INTERNAL; the
details are the message the HTTP answer would carry. RepositoryModelLoad/Unload answer
UNIMPLEMENTED: the server serves the one model it started with.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import struct
import time
from collections.abc import Sequence
from typing import Any, Never

import grpc
import numpy as np
import typing_extensions
from grpc import aio

from mlops_workloads.serve import app as app_mod
from mlops_workloads.serve import http, inputs
from mlops_workloads.serve.grpc_v2 import grpc_predict_v2_pb2 as pb
from mlops_workloads.serve.grpc_v2 import grpc_predict_v2_pb2_grpc as pb_grpc

log = logging.getLogger("mlops_workloads.serve")
INFER_ENDPOINT = "/v2/models/{name}/infer"
REQUEST_ID_KEY = "x-request-id"

STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}

# datatype -> (the InferTensorContents field that carries it, the little-endian raw dtype).
CONTENTS: dict[str, tuple[str | None, str | None]] = {
    "BOOL": ("bool_contents", "|b1"),
    "INT8": ("int_contents", "<i1"),
    "INT16": ("int_contents", "<i2"),
    "INT32": ("int_contents", "<i4"),
    "INT64": ("int64_contents", "<i8"),
    "UINT8": ("uint_contents", "<u1"),
    "UINT16": ("uint_contents", "<u2"),
    "UINT32": ("uint_contents", "<u4"),
    "UINT64": ("uint64_contents", "<u8"),
    "FP16": (None, "<f2"),  # no typed field: raw contents only (the OIP's rule)
    "FP32": ("fp32_contents", "<f4"),
    "FP64": ("fp64_contents", "<f8"),
    "BYTES": ("bytes_contents", None),
}
CONTENTS_FIELDS = (
    "bool_contents",
    "int_contents",
    "int64_contents",
    "uint_contents",
    "uint64_contents",
    "fp32_contents",
    "fp64_contents",
    "bytes_contents",
)
FLOATS = frozenset({"FP16", "FP32", "FP64"})


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ----------------------------------------------------------------------------------------------
# ModelInferRequest -> the v2 JSON body
# ----------------------------------------------------------------------------------------------


def _elements(shape: Sequence[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def _floats(values: Any, *, name: str) -> list[Any]:
    """Floats as JSON would carry them: NaN is a missing value (JSON's null); ±inf is refused."""
    out = [float(v) for v in values]
    for v in out:
        if not math.isfinite(v):
            if math.isinf(v):
                raise inputs.InputError(422, f"input {name!r}: {v} is not a finite number")
            return [None if math.isnan(x) else x for x in out]
    return out


def _strings(values: Sequence[bytes], *, name: str) -> list[str]:
    try:
        return [v.decode("utf-8") for v in values]
    except UnicodeDecodeError:
        raise inputs.InputError(422, f"input {name!r}: a BYTES element is not UTF-8 text") from None


def _raw_bytes(raw: bytes, *, name: str) -> list[bytes]:
    """BYTES raw contents: each element a 4-byte little-endian length, then that many bytes."""
    out: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise inputs.InputError(422, f"input {name!r}: the raw BYTES contents end inside a length")
        (size,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise inputs.InputError(422, f"input {name!r}: the raw BYTES contents end inside an element")
        out.append(raw[offset : offset + size])
        offset += size
    return out


def _raw_data(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes) -> list[Any]:
    name, datatype = tensor.name, tensor.datatype
    if datatype == "BYTES":
        return _strings(_raw_bytes(raw, name=name), name=name)
    _, dtype = CONTENTS.get(datatype, (None, None))
    if dtype is None or any(dim < 0 for dim in tensor.shape):
        return []  # an unknown datatype or a negative dimension: inputs.decode_v2 says what is wrong
    width = np.dtype(dtype).itemsize
    expected = _elements(tensor.shape) * width
    if len(raw) != expected:
        raise inputs.InputError(
            422,
            f"input {name!r}: shape {list(tensor.shape)} of {datatype} needs {expected} raw bytes, "
            f"got {len(raw)}",
        )
    values = np.frombuffer(raw, dtype=dtype)
    if datatype in FLOATS:
        return _floats(values.astype(np.float64).tolist(), name=name)
    out: list[Any] = values.tolist()
    return out


def _typed_data(tensor: pb.ModelInferRequest.InferInputTensor) -> list[Any]:
    name, datatype = tensor.name, tensor.datatype
    contents = tensor.contents
    given = [f for f in CONTENTS_FIELDS if len(getattr(contents, f))]
    field, _ = CONTENTS.get(datatype, (None, None))
    if datatype == "FP16":
        raise inputs.InputError(422, f"input {name!r}: FP16 has no typed contents; send raw_input_contents")
    if field is None:
        return []  # an unknown datatype: inputs.decode_v2 names the accepted ones
    others = [f for f in given if f != field]
    if others:
        raise inputs.InputError(422, f"input {name!r}: datatype {datatype} is sent in {field}, not {others}")
    values = getattr(contents, field)
    if datatype == "BYTES":
        return _strings(values, name=name)
    if datatype in FLOATS:
        return _floats(values, name=name)
    return list(values)


def infer_body(request: pb.ModelInferRequest) -> dict[str, Any]:
    """The HTTP v2 infer body of a ModelInferRequest (raises ``inputs.InputError``)."""
    raw = list(request.raw_input_contents)
    if raw:
        if len(raw) != len(request.inputs):
            raise inputs.InputError(
                422,
                f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; "
                "give one per input, in their order",
            )
        if any(t.HasField("contents") for t in request.inputs):
            raise inputs.InputError(
                422, "an input has contents while raw_input_contents is given; use one or the other"
            )
    tensors: list[dict[str, Any]] = []
    for index, tensor in enumerate(request.inputs):
        data = _raw_data(tensor, raw[index]) if raw else _typed_data(tensor)
        tensors.append(
            {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape), "data": data}
        )
    body: dict[str, Any] = {"inputs": tensors}
    if request.id:
        body["id"] = request.id
    if request.outputs:
        body["outputs"] = [{"name": o.name} for o in request.outputs]
    return body


def _model_path(name: str, version: str, tail: str) -> str:
    path = f"/v2/models/{name}"
    if version:
        path += f"/versions/{version}"
    return f"{path}/{tail}" if tail else path


# ----------------------------------------------------------------------------------------------
# the v2 JSON answer -> ModelInferResponse
# ----------------------------------------------------------------------------------------------


def _parameter(value: Any) -> pb.InferParameter:
    if isinstance(value, bool):
        return pb.InferParameter(bool_param=value)
    if isinstance(value, int):
        return pb.InferParameter(int64_param=value)
    if isinstance(value, str):
        return pb.InferParameter(string_param=value)
    return pb.InferParameter(string_param=json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def _contents(datatype: str, data: list[Any]) -> pb.InferTensorContents:
    field, _ = CONTENTS.get(datatype, ("bytes_contents", None))
    if field == "bytes_contents" or field is None:
        return pb.InferTensorContents(
            bytes_contents=[v if isinstance(v, bytes) else str(v).encode("utf-8") for v in data]
        )
    contents = pb.InferTensorContents()
    getattr(contents, field).extend(data)
    return contents


def infer_response(body: dict[str, Any]) -> pb.ModelInferResponse:
    """A ModelInferResponse of the HTTP v2 infer answer ``body``, outputs as typed contents."""
    out = pb.ModelInferResponse(model_name=body["model_name"], model_version=body["model_version"])
    if "id" in body:
        out.id = body["id"]
    for key, value in (body.get("parameters") or {}).items():
        out.parameters[key].CopyFrom(_parameter(value))
    for output in body["outputs"]:
        tensor = out.outputs.add(name=output["name"], datatype=output["datatype"], shape=output["shape"])
        for key, value in (output.get("parameters") or {}).items():
            tensor.parameters[key].CopyFrom(_parameter(value))
        tensor.contents.CopyFrom(_contents(output["datatype"], output["data"]))
    return out


# ----------------------------------------------------------------------------------------------
# the service
# ----------------------------------------------------------------------------------------------


class _Call:
    """A ModelInfer waiting in the shared queue: ``http.Server`` answers it through ``finish``."""

    def __init__(self, server: http.Server, future: asyncio.Future[app_mod.Response]) -> None:
        self.server = server
        self.future = future

    def finish(self, slot: Any, response: app_mod.Response, started: float) -> None:
        self.server.end(response, started)
        if not self.future.done():  # the client may have gone (deadline, cancel): still counted
            self.future.set_result(response)


def _message(response: app_mod.Response) -> str:
    try:
        return str(json.loads(response.body)["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP status {response.status}"


TRAILING_KEYS = (REQUEST_ID_KEY, "traceparent", "tracestate")


def _trailing(response: app_mod.Response) -> tuple[tuple[str, str], ...]:
    """The answer's request id and trace context, as the call's trailing metadata."""
    return tuple((key.lower(), value) for key, value in response.headers if key.lower() in TRAILING_KEYS)


class Servicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, server: http.Server) -> None:
        self.server = server
        self.app = server.app

    async def _get(
        self, path: str, context: aio.ServicerContext[Any, Any], *, readiness: bool = False
    ) -> dict[str, Any]:
        """The JSON answer of ``GET path``; an error status aborts the call with its code (but
        a readiness route's 503 is its answer, ``{"ready": false}``)."""
        started = time.perf_counter()
        result = self.app.dispatch("GET", path, b"")
        assert isinstance(result, app_mod.Response)  # GET routes answer at once
        self.app.telemetry.observe_request(result.endpoint, result.status, time.perf_counter() - started)
        if result.status != 200 and not (readiness and result.status == 503):
            await self._abort(result, context)
        answer: dict[str, Any] = json.loads(result.body)
        return answer

    async def _abort(self, response: app_mod.Response, context: aio.ServicerContext[Any, Any]) -> Never:
        code = STATUS_CODES.get(response.status, grpc.StatusCode.INTERNAL)
        trailing = _trailing(response)
        if trailing:
            context.set_trailing_metadata(trailing)
        await context.abort(code, _message(response))

    @typing_extensions.override
    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: aio.ServicerContext[Any, Any]
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=bool((await self._get("/v2/health/live", context))["live"]))

    @typing_extensions.override
    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: aio.ServicerContext[Any, Any]
    ) -> pb.ServerReadyResponse:
        answer = await self._get("/v2/health/ready", context, readiness=True)
        return pb.ServerReadyResponse(ready=bool(answer["ready"]))

    @typing_extensions.override
    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: aio.ServicerContext[Any, Any]
    ) -> pb.ModelReadyResponse:
        answer = await self._get(_model_path(request.name, request.version, "ready"), context, readiness=True)
        return pb.ModelReadyResponse(ready=bool(answer["ready"]))

    @typing_extensions.override
    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: aio.ServicerContext[Any, Any]
    ) -> pb.ServerMetadataResponse:
        answer = await self._get("/v2", context)
        return pb.ServerMetadataResponse(
            name=answer["name"], version=answer["version"], extensions=answer["extensions"]
        )

    @typing_extensions.override
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: aio.ServicerContext[Any, Any]
    ) -> pb.ModelMetadataResponse:
        answer = await self._get(_model_path(request.name, request.version, ""), context)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=answer["name"],
            versions=answer["versions"],
            platform=answer["platform"],
            inputs=[
                tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in answer["inputs"]
            ],
            outputs=[
                tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in answer["outputs"]
            ],
        )

    @typing_extensions.override
    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: aio.ServicerContext[Any, Any]
    ) -> pb.ModelInferResponse:
        server = self.server
        if not self.app.ready:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the model is not loaded yet")
        started = time.perf_counter()
        server.begin()
        given: dict[str, str] = {}
        for key, value in context.invocation_metadata() or ():
            if key in TRAILING_KEYS and isinstance(value, str):
                given[key] = value
        header_id = given.get(REQUEST_ID_KEY)
        try:
            body = infer_body(request)
        except inputs.InputError as exc:
            response = app_mod.error(exc.status, exc.message, endpoint=INFER_ENDPOINT)
            server.end(response, started)
            await self._abort(response, context)
        except Exception as exc:  # a bug must still answer (INTERNAL) and leave the count right
            log.exception("unexpected error decoding a ModelInfer request")
            response = app_mod.error(500, f"internal error: {type(exc).__name__}", endpoint=INFER_ENDPOINT)
            server.end(response, started)
            await self._abort(response, context)
        path = _model_path(request.model_name, request.model_version, "infer")
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        result = self.app.dispatch(
            "POST",
            path,
            payload,
            header_id,
            traceparent=given.get("traceparent"),
            tracestate=given.get("tracestate"),
        )
        if isinstance(result, app_mod.Pending):
            loop = asyncio.get_running_loop()
            future: asyncio.Future[app_mod.Response] = loop.create_future()
            server.enqueue(result, _Call(server, future), http._Slot(False), started)
            response = await future
        else:
            response = result
            server.end(response, started)
        if response.status != 200:
            await self._abort(response, context)
        trailing = _trailing(response)
        if trailing:
            context.set_trailing_metadata(trailing)
        try:
            return infer_response(json.loads(response.body))
        except Exception as exc:
            log.exception("unexpected error encoding a ModelInfer answer")
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")

    @typing_extensions.override
    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: aio.ServicerContext[Any, Any]
    ) -> pb.RepositoryModelLoadResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this server serves the one model it started with")

    @typing_extensions.override
    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: aio.ServicerContext[Any, Any]
    ) -> pb.RepositoryModelUnloadResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this server serves the one model it started with")


class GrpcFrontend:
    """The gRPC service as an ``http.Frontend``: started and stopped by ``http.serve``.

    ``reuse_port`` (several workers on one port) is grpc's SO_REUSEPORT; without it a port in
    use is an error, as for HTTP. Connections are retired after ``http.MAX_CONNECTION_AGE_SECONDS``
    (grpc's MAX_CONNECTION_AGE, the rule the HTTP front end follows), so clients reach new pods.
    """

    def __init__(self, host: str, port: int, *, reuse_port: bool, max_message_bytes: int) -> None:
        self.host = host
        self.requested_port = port
        self.reuse_port = reuse_port
        self.max_message_bytes = max_message_bytes
        self.port: int | None = None
        self._server: aio.Server | None = None

    def options(self) -> list[tuple[str, Any]]:
        options: list[tuple[str, Any]] = [
            ("grpc.so_reuseport", 1 if self.reuse_port else 0),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
        ]
        age = http.MAX_CONNECTION_AGE_SECONDS
        if age > 0:
            options.append(("grpc.max_connection_age_ms", int(age * 1000)))
            options.append(("grpc.max_connection_age_grace_ms", 10_000))
        return options

    async def start(self, server: http.Server) -> None:
        grpc_server = aio.server(options=self.options())
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(server), grpc_server)
        self.port = grpc_server.add_insecure_port(address(self.host, self.requested_port))
        await grpc_server.start()
        self._server = grpc_server

    async def stop(self, grace: float) -> None:
        if self._server is not None:
            await self._server.stop(grace)
