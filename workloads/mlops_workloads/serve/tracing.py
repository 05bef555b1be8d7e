"""Trace context (W3C ``traceparent``) and optional OpenTelemetry spans for the model server.

Every answer carries a ``traceparent`` header: the caller's trace continued (same trace id, the
flags it sent, our span id as the parent of whatever the caller does next) when the request
had a valid one, else a new trace; a ``tracestate`` is passed back unchanged. With the
OpenTelemetry SDK configured by the standard environment (``OTEL_TRACES_EXPORTER`` =
``otlp`` | ``console``, or an ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``; ``OTEL_SERVICE_NAME``),
each prediction is also a server span with children ``decode`` (parsing and validation),
``queue`` (waiting for the batch's model call), ``predict`` (the model call, shared by the
requests batched into it: ``mlops.batch.requests`` says how many) and ``encode`` (building the
answer). Spans are recorded after the answer is built, from timestamps taken on the way, so
the request path holds no span objects across threads and pays nothing when tracing is off.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import secrets
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("mlops_workloads.serve")

TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
MAX_TRACESTATE = 512


@dataclasses.dataclass(frozen=True)
class TraceContext:
    trace_id: str  # 32 lowercase hex digits
    span_id: str  # ours: 16 hex digits
    parent_id: str | None  # the caller's span id; None when the trace starts here
    flags: str  # 2 hex digits (01: sampled)
    tracestate: str | None = None

    @classmethod
    def from_headers(cls, traceparent: str | None, tracestate: str | None = None) -> TraceContext:
        """Continue the caller's trace (a valid version-00 ``traceparent``) or start one."""
        match = TRACEPARENT.fullmatch(traceparent.strip().lower()) if traceparent else None
        span = secrets.token_hex(8)
        if match and match.group(1) != _ZERO_TRACE and match.group(2) != _ZERO_SPAN:
            state = tracestate.strip() if tracestate and len(tracestate) <= MAX_TRACESTATE else None
            return cls(match.group(1), span, match.group(2), match.group(3), state or None)
        return cls(secrets.token_hex(16), span, None, "00")  # recorded only if a tracer samples it

    @property
    def sampled(self) -> bool:
        return bool(int(self.flags, 16) & 1)

    def headers(self) -> tuple[tuple[str, str], ...]:
        out = (("traceparent", f"00-{self.trace_id}-{self.span_id}-{self.flags}"),)
        return (*out, ("tracestate", self.tracestate)) if self.tracestate else out


@dataclasses.dataclass
class Marks:
    """Wall-clock nanoseconds along one request (``time.time_ns``)."""

    received: int
    decoded: int
    predict_start: int = 0
    predict_end: int = 0
    batch_requests: int = 1
    batch_rows: int = 0


class Tracer:
    """Records the spans of answered requests through an OpenTelemetry tracer."""

    def __init__(self, tracer: Any) -> None:
        self._tracer = tracer
        from opentelemetry import trace

        self._trace = trace

    def record(
        self,
        context: TraceContext,
        marks: Marks,
        *,
        done: int,
        name: str,
        status: int,
        attributes: Mapping[str, Any],
    ) -> TraceContext:
        """Record the request's spans; the context to echo: the server span's trace id, span id
        and sampled flag (the SDK's sampler decides: parent-based by default, so a caller's flag
        is followed and a trace started here is sampled at ``OTEL_TRACES_SAMPLER_ARG``)."""
        trace = self._trace
        parent = None
        if context.parent_id is not None:
            remote = trace.SpanContext(
                trace_id=int(context.trace_id, 16),
                span_id=int(context.parent_id, 16),
                is_remote=True,
                trace_flags=trace.TraceFlags(int(context.flags, 16)),
            )
            parent = trace.set_span_in_context(trace.NonRecordingSpan(remote))
        server = self._tracer.start_span(
            name,
            context=parent,
            kind=trace.SpanKind.SERVER,
            start_time=marks.received,
            attributes={"http.response.status_code": status, **attributes},
        )
        if status >= 500:
            server.set_status(trace.Status(trace.StatusCode.ERROR))
        inner = trace.set_span_in_context(server)
        steps = [("decode", marks.received, marks.decoded)]
        if marks.predict_start:
            steps += [
                ("queue", marks.decoded, marks.predict_start),
                ("predict", marks.predict_start, marks.predict_end),
                ("encode", marks.predict_end, done),
            ]
        for step, start, end in steps:
            span = self._tracer.start_span(step, context=inner, start_time=start)
            if step == "predict":
                span.set_attribute("mlops.batch.requests", marks.batch_requests)
                span.set_attribute("mlops.batch.rows", marks.batch_rows)
            span.end(end_time=max(start, end))
        server.end(end_time=done)
        ours = server.get_span_context()
        return dataclasses.replace(
            context,
            trace_id=f"{ours.trace_id:032x}",
            span_id=f"{ours.span_id:016x}",
            flags=f"{int(ours.trace_flags):02x}",
        )


def tracer_from_env(environ: Mapping[str, str] | None = None, *, exporter: Any = None) -> Tracer | None:
    """A ``Tracer`` when the environment asks for spans (or ``exporter`` is given), else None.

    Without the SDK installed, or with ``OTEL_SDK_DISABLED=true`` / ``OTEL_TRACES_EXPORTER=none``,
    tracing stays off (the ``traceparent`` header is still answered)."""
    env = os.environ if environ is None else environ
    kind = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if exporter is None and (
        env.get("OTEL_SDK_DISABLED", "").lower() == "true" or kind == "none" or not (kind or endpoint)
    ):
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:
        log.warning("OpenTelemetry is configured but its SDK is not installed: %s", exc)
        return None
    provider = TracerProvider(
        resource=Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", "mlops-model-server")}),
        sampler=_sampler(env),
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:  # otlp (the default exporter), over HTTP/protobuf; endpoint and headers from the env
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    log.info("OpenTelemetry spans on (%s)", "test exporter" if exporter is not None else kind or "otlp")
    return Tracer(provider.get_tracer("mlops_workloads.serve"))


def _sampler(env: Mapping[str, str]) -> Any:
    """The SDK sampler ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` name (parent-based,
    always on, by default), read from ``env``."""
    from opentelemetry.sdk.trace import sampling

    try:
        ratio = min(1.0, max(0.0, float(env.get("OTEL_TRACES_SAMPLER_ARG") or 1.0)))
    except ValueError:
        ratio = 1.0
    name = (env.get("OTEL_TRACES_SAMPLER") or "parentbased_always_on").strip().lower()
    choices: dict[str, Any] = {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": sampling.TraceIdRatioBased(ratio),
        "parentbased_always_on": sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": sampling.ParentBased(sampling.TraceIdRatioBased(ratio)),
    }
    return choices.get(name, choices["parentbased_always_on"])
