"""Trace context and OpenTelemetry spans of the model server, with the real SDK (in-memory
exporter) and the real HTTP server for the header round trip."""

from __future__ import annotations

import itertools
import json
import pathlib
import urllib.request
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mlops_workloads.serve import app as app_mod
from mlops_workloads.serve import bundle as bundle_mod
from mlops_workloads.serve import demo, tracing

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, "site": "north"}
BODY = json.dumps({"instances": [ROW]}).encode()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return demo.build(tmp_path_factory.mktemp("model"))


def _app(model_dir: pathlib.Path, exporter: InMemorySpanExporter | None) -> app_mod.App:
    tracer = tracing.tracer_from_env({}, exporter=exporter) if exporter is not None else None
    return app_mod.App(
        bundle_mod.load(model_dir),
        model_name="iris",
        attribution_interval=0,
        explainer_in_background=False,
        tracer=tracer,
        tracer_from_env=False,
    )


def _headers(response: app_mod.Response) -> dict[str, str]:
    return dict(response.headers)


def test_trace_context_continues_a_valid_traceparent_and_starts_one_otherwise() -> None:
    ctx = tracing.TraceContext.from_headers(CALLER, "vendor=abc")
    assert (ctx.trace_id, ctx.parent_id, ctx.flags, ctx.tracestate) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        "01",
        "vendor=abc",
    )
    assert len(ctx.span_id) == 16 and ctx.span_id != ctx.parent_id
    assert dict(ctx.headers()) == {
        "traceparent": f"00-4bf92f3577b34da6a3ce929d0e0e4736-{ctx.span_id}-01",
        "tracestate": "vendor=abc",
    }
    for bad in (None, "", "garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "01-abc", CALLER + "-x"):
        new = tracing.TraceContext.from_headers(bad, "vendor=abc")
        assert new.parent_id is None and new.tracestate is None and len(new.trace_id) == 32
        assert new.trace_id != "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_prediction_is_a_server_span_with_decode_queue_predict_encode(model_dir: pathlib.Path) -> None:
    exporter = InMemorySpanExporter()
    app = _app(model_dir, exporter)
    pending = [
        app.dispatch("POST", "/v1/models/iris:predict", BODY, traceparent=CALLER),
        app.dispatch("POST", "/v1/models/iris:predict", BODY),
    ]
    assert all(isinstance(p, app_mod.Pending) for p in pending)
    responses = app.score(pending)  # type: ignore[arg-type]
    assert [r.status for r in responses] == [200, 200]
    spans = exporter.get_finished_spans()
    servers = [s for s in spans if s.name == "POST /v1/models/{name}:predict"]
    assert len(servers) == 2
    echoed = _headers(responses[0])["traceparent"].split("-")
    continued = next(s for s in servers if f"{s.context.trace_id:032x}" == echoed[1])
    assert echoed[1] == "4bf92f3577b34da6a3ce929d0e0e4736" and echoed[3] == "01"
    assert f"{continued.context.span_id:016x}" == echoed[2]  # the caller's next parent is our span
    assert continued.parent is not None and f"{continued.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert continued.attributes is not None and continued.attributes["http.response.status_code"] == 200
    children = {
        s.name: s for s in spans if s.parent is not None and s.parent.span_id == continued.context.span_id
    }
    assert set(children) == {"decode", "queue", "predict", "encode"}
    order = [children[n] for n in ("decode", "queue", "predict", "encode")]
    assert all(a.end_time <= b.start_time for a, b in itertools.pairwise(order))  # type: ignore[operator]
    assert continued.start_time <= order[0].start_time and order[-1].end_time <= continued.end_time  # type: ignore[operator]
    predict = children["predict"].attributes
    assert predict is not None and predict["mlops.batch.requests"] == 2 and predict["mlops.batch.rows"] == 2
    # The second request had no traceparent: a new trace, answered all the same.
    other = _headers(responses[1])["traceparent"].split("-")
    assert other[1] != echoed[1] and any(f"{s.context.trace_id:032x}" == other[1] for s in servers)


def test_without_a_tracer_the_header_is_still_answered_and_not_sampled_means_no_span(
    model_dir: pathlib.Path,
) -> None:
    app = _app(model_dir, None)
    pending = app.dispatch("POST", "/v1/models/iris:predict", BODY, traceparent=CALLER)
    assert isinstance(pending, app_mod.Pending)
    (response,) = app.score([pending])
    assert _headers(response)["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    # Errors and GETs echo a given traceparent too.
    error = app.dispatch("POST", "/v1/models/nope:predict", BODY, traceparent=CALLER)
    assert isinstance(error, app_mod.Response) and error.status == 404
    assert _headers(error)["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    exporter = InMemorySpanExporter()
    traced = _app(model_dir, exporter)
    unsampled = CALLER[:-2] + "00"
    pending = traced.dispatch("POST", "/v1/models/iris:predict", BODY, traceparent=unsampled)
    assert isinstance(pending, app_mod.Pending)
    (response,) = traced.score([pending])
    assert _headers(response)["traceparent"].endswith("-00") and not exporter.get_finished_spans()


def test_the_environment_turns_spans_on_and_off() -> None:
    assert tracing.tracer_from_env({}) is None
    assert tracing.tracer_from_env({"OTEL_TRACES_EXPORTER": "none"}) is None
    assert tracing.tracer_from_env({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}) is None
    assert isinstance(tracing.tracer_from_env({"OTEL_TRACES_EXPORTER": "console"}), tracing.Tracer)
    assert isinstance(
        tracing.tracer_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}), tracing.Tracer
    )


def test_the_http_server_propagates_and_echoes_traceparent_and_request_id(
    model_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    from model_server import running

    with running(model_dir, tmp_path) as (base, _):
        request = urllib.request.Request(
            f"{base}/v1/models/iris:predict",
            data=BODY,
            headers={"traceparent": CALLER, "tracestate": "vendor=abc", "x-request-id": "req-42"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            headers: Any = answer.headers
            assert answer.status == 200
        assert headers["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
        assert headers["traceparent"].endswith("-01") and "00f067aa0ba902b7" not in headers["traceparent"]
        assert headers["tracestate"] == "vendor=abc" and headers["X-Request-Id"] == "req-42"


def test_the_sampler_follows_the_caller_and_samples_new_traces_at_the_ratio(model_dir: pathlib.Path) -> None:
    exporter = InMemorySpanExporter()
    env = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}
    app = app_mod.App(
        bundle_mod.load(model_dir),
        model_name="iris",
        attribution_interval=0,
        explainer_in_background=False,
        tracer=tracing.tracer_from_env(env, exporter=exporter),
        tracer_from_env=False,
    )
    new = app.dispatch("POST", "/v1/models/iris:predict", BODY)
    caller = app.dispatch("POST", "/v1/models/iris:predict", BODY, traceparent=CALLER)
    answers = app.score([new, caller])  # type: ignore[list-item]
    sampled = [int(_headers(a)["traceparent"].rsplit("-", 1)[1], 16) & 1 for a in answers]
    assert sampled == [0, 1]  # ratio 0: a new trace is not recorded; the caller sampled its own
    traces = {f"{s.context.trace_id:032x}" for s in exporter.get_finished_spans()}
    assert traces == {"4bf92f3577b34da6a3ce929d0e0e4736"}
