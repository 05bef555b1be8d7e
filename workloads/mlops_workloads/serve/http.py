"""HTTP/1.1 front end: asyncio (uvloop when installed) + httptools, the stack uvicorn is built on.

Chosen by measurement (``benchmarks/serving/stacks.py`` runs the same ``App`` behind this
front end, aiohttp and Starlette+uvicorn; the figures live there, not here): plain framework
handlers answer each request with its own model call and cannot batch, which is where a
model server spends its time.

A parsed request is not answered inside ``data_received``: it is queued, and every request
that arrived meanwhile (on any connection) is scored by ONE model call, which costs about
the same for 1 row as for 100. The joint call runs on one worker thread (``offload``) while
the loop keeps reading the next requests, which form the next batch, so reading and scoring
overlap (it beat the same batching run on the loop, at low and high concurrency). A request
that is alone and known to be quick is scored on the loop instead (``INLINE_SECONDS``): at
concurrency 1 the hand-offs to the thread and back were a sixth of the answer's time. The queue
is also what the in-flight gauge counts, so the autoscaler sees real concurrency. Responses
on a connection are written in request order (pipelining-safe).

The queue is not HTTP's alone: a second front end (``frontends``, the gRPC service of
``serve.grpc_server``) runs on the same loop and puts its requests in the same queue, so an
HTTP and a gRPC request that arrive together are scored by the same model call.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Sequence
from typing import Any, Protocol

import httptools

from mlops_workloads.serve import app as app_mod

log = logging.getLogger("mlops_workloads.serve")
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    501: "Not Implemented",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
MAX_PIPELINED = 64
MAX_JOINT_ROWS = 4096
KEEP_ALIVE_SECONDS = 75.0  # idle connections are closed after this (longer than typical LB idle timeouts)
# A kept-alive connection is answered with Connection: close once it is this old (±20%, so that
# connections do not all reconnect at once), as gRPC's MAX_CONNECTION_AGE does: a Service spreads
# connections, not requests, so without it a keep-alive client never reaches a pod that started
# after it connected (a canary, a scaled-up replica).
# MLOPS_SERVE_MAX_CONNECTION_AGE_SECONDS overrides it (0: never).
MAX_CONNECTION_AGE_SECONDS = float(os.environ.get("MLOPS_SERVE_MAX_CONNECTION_AGE_SECONDS", "20"))
# A request that is alone (nothing else in flight, on any connection or front end) is scored on
# the loop instead of the worker thread when calls of its size have lately taken at most this
# long: no one is waiting on the loop meanwhile, and the thread would only add two hand-offs
# between threads (~0.4 ms of a ~2 ms answer at concurrency 1 on a 2-core machine). A slow model
# never runs there (its first call is on the thread, and any call over the bound sends its size
# back), so health probes and /metrics are never held for longer than this.
INLINE_SECONDS = 0.005


class _Slot:
    __slots__ = ("data", "keep_alive")

    def __init__(self, keep_alive: bool) -> None:
        self.data: bytes | None = None
        self.keep_alive = keep_alive


@functools.lru_cache(maxsize=64)
def _status_line(status: int, content_type: str) -> str:
    return f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\nContent-Type: {content_type}\r\n"


def render(response: app_mod.Response, *, keep_alive: bool, head: bool = False) -> bytes:
    extra = "".join([f"{k}: {v}\r\n" for k, v in response.headers])
    head_bytes = (
        f"{_status_line(response.status, response.content_type)}Content-Length: {len(response.body)}\r\n"
        f"{extra}{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}\r\n"
    ).encode()
    return head_bytes if head else head_bytes + response.body


class Answerer(Protocol):
    """Who gets a queued request's answer: an HTTP connection, or a gRPC call."""

    def finish(self, slot: _Slot, response: app_mod.Response, started: float) -> None: ...


class Frontend(Protocol):
    """Another front end on the same loop and queue (``serve`` starts and stops it)."""

    async def start(self, server: Server) -> None: ...

    async def stop(self, grace: float) -> None: ...


Item = tuple[app_mod.Pending, Answerer, _Slot, float]


class Server:
    """Owns the App and the batch queue shared by all connections of one process.

    ``offload=True`` runs each joint model call on one worker thread while the loop keeps
    reading and queueing the next requests (they form the next batch); ``offload=False``
    runs it on the loop. ``batching=False`` scores each request on its own (for comparison).
    """

    def __init__(
        self,
        app: app_mod.App,
        *,
        max_body_bytes: int = 16 << 20,
        batching: bool = True,
        offload: bool = True,
        inline_seconds: float = INLINE_SECONDS,
    ) -> None:
        self.app = app
        self.inline_seconds = inline_seconds
        # Calls of at most this many rows have lately taken under ``inline_seconds`` (learnt
        # from every call: 0 until one has, so the first call always goes to the thread).
        self.inline_rows = 0
        self.max_body = max_body_bytes
        self.batching = batching
        self.offload = offload and batching
        self.loop: asyncio.AbstractEventLoop | None = None
        self._queue: list[Item] = []
        self._scheduled = False
        self._running = False
        self._executor = (
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="predict") if self.offload else None
        )
        self.connections: set[_Connection] = set()
        self.inflight = 0
        self._inflight_gauge = app.telemetry.inflight

    def enqueue(self, pending: app_mod.Pending, conn: Answerer, slot: _Slot, started: float) -> None:
        self._queue.append((pending, conn, slot, started))
        if not self.batching:
            self._flush()
            return
        if not self._scheduled and not self._running:
            self._scheduled = True
            assert self.loop is not None
            self.loop.call_soon(self._start if self.offload else self._flush)

    def _take(self) -> list[Item]:
        """The next joint batch from the queue (at most MAX_JOINT_ROWS rows, at least one request)."""
        group: list[Item] = []
        rows = 0
        while self._queue and (not group or rows + self._queue[0][0].batch.rows <= MAX_JOINT_ROWS):
            item = self._queue.pop(0)
            rows += item[0].batch.rows
            group.append(item)
        return group

    def _flush(self) -> None:
        self._scheduled = False
        while self._queue:
            group = self._take()
            try:
                responses = self.app.score([g[0] for g in group])
            except Exception as exc:  # score() answers errors itself; this is a last resort.
                responses = _failed(group, exc)
            self._deliver(group, responses)

    def _deliver(self, group: list[Item], responses: list[app_mod.Response]) -> None:
        for (_, conn, slot, started), response in zip(group, responses, strict=True):
            conn.finish(slot, response, started)

    def _start(self) -> None:
        self._scheduled = False
        if self._running or not self._queue:
            return
        assert self.loop is not None and self._executor is not None
        if len(self._queue) == 1 and self.inflight == 1:
            pending = self._queue[0][0]
            if not pending.explain and pending.batch.rows <= self.inline_rows:
                self._inline()
                return
        group = self._take()
        self._running = True
        future = self.loop.run_in_executor(self._executor, self._timed_score, [g[0] for g in group])
        future.add_done_callback(lambda f: self._done(group, f))

    def _inline(self) -> None:
        """Score the one queued request on the loop: see ``INLINE_SECONDS``."""
        group = self._take()
        try:
            responses = self._timed_score([g[0] for g in group])
        except Exception as exc:  # score() answers errors itself; this is a last resort.
            responses = _failed(group, exc)
        self._deliver(group, responses)

    def _timed_score(self, pending: list[app_mod.Pending]) -> list[app_mod.Response]:
        """``App.score``, timed to learn which calls are short enough to run on the loop."""
        started = time.perf_counter()
        responses = self.app.score(pending)
        if not any(p.explain for p in pending):  # explanations are slow by nature: not a guide
            rows = sum(p.batch.rows for p in pending)
            if time.perf_counter() - started <= self.inline_seconds:
                self.inline_rows = max(self.inline_rows, rows)
            else:
                self.inline_rows = min(self.inline_rows, rows - 1)
        return responses

    def _done(self, group: list[Item], future: asyncio.Future[list[app_mod.Response]]) -> None:
        self._running = False
        try:
            responses = future.result()
        except Exception as exc:  # score() answers errors itself; this is a last resort.
            responses = _failed(group, exc)
        self._deliver(group, responses)
        if self._queue:
            self._start()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def begin(self) -> None:
        self.inflight += 1
        self._inflight_gauge.inc()

    def end(self, response: app_mod.Response, started: float) -> None:
        self.inflight -= 1
        self._inflight_gauge.dec()
        self.app.telemetry.observe_request(response.endpoint, response.status, time.perf_counter() - started)


def _failed(group: list[Item], exc: Exception) -> list[app_mod.Response]:
    log.error("batch failed", exc_info=exc)
    return [app_mod.error(500, f"internal error: {type(exc).__name__}") for _ in group]


class _Connection(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.size = 0
        self.too_large = False
        self.expect_continue = False
        self.request_id: bytes | None = None
        self.traceparent: bytes | None = None
        self.tracestate: bytes | None = None
        self.slots: collections.deque[_Slot] = collections.deque()
        self.closing = False
        self.paused = False
        self.idle_timer: asyncio.TimerHandle | None = None
        age = MAX_CONNECTION_AGE_SECONDS * random.uniform(0.8, 1.2)
        self.retire_at = time.monotonic() + age if age > 0 else float("inf")

    # asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport is not a subclass
        self.server.connections.add(self)
        self._arm_idle_timer()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        if self.idle_timer is not None:
            self.idle_timer.cancel()

    def _arm_idle_timer(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        loop = self.server.loop
        if loop is not None:
            self.idle_timer = loop.call_later(KEEP_ALIVE_SECONDS, self._idle)

    def _idle(self) -> None:
        if not self.slots and self.transport is not None:
            self.transport.close()
        else:
            self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        self._arm_idle_timer()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._fail(400, f"malformed HTTP request: {exc}")

    # httptools callbacks ----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []
        self.size = 0
        self.too_large = False
        self.expect_continue = False
        self.request_id = None
        self.traceparent = None
        self.tracestate = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        elif lower == b"x-request-id":
            self.request_id = value  # checked (and echoed) by App.dispatch
        elif lower == b"traceparent":
            self.traceparent = value  # W3C trace context: continued and echoed (``tracing``)
        elif lower == b"tracestate":
            self.tracestate = value

    def on_headers_complete(self) -> None:
        if self.expect_continue and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, chunk: bytes) -> None:
        if self.too_large:
            return
        self.size += len(chunk)
        if self.size > self.server.max_body:
            self.too_large = True
            self.body = []
            return
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        started = time.perf_counter()
        method = self.parser.get_method().decode("ascii", "replace")
        # While draining, every answer closes its connection: a keep-alive client reconnects
        # (through the Service, to a pod that stays) instead of finding its socket closed later.
        # So does a connection past its age: the client's next one may reach another pod.
        keep_alive = (
            bool(self.parser.should_keep_alive())
            and not self.closing
            and not self.server.app.draining
            and time.monotonic() < self.retire_at
        )
        slot = _Slot(keep_alive)
        self.slots.append(slot)
        server = self.server
        server.begin()
        try:
            path = httptools.parse_url(self.url).path.decode("utf-8", "replace")
        except httptools.HttpParserInvalidURLError:
            self.finish(slot, app_mod.error(400, "invalid URL"), started)
            return
        if self.too_large:
            response: app_mod.Response | app_mod.Pending = app_mod.error(
                413, f"the body is larger than {server.max_body} bytes", endpoint=app_mod._endpoint_of(path)
            )
        else:
            body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
            rid = None if self.request_id is None else self.request_id.decode("ascii", "replace")
            response = server.app.dispatch(
                method,
                path,
                body,
                rid,
                traceparent=None if self.traceparent is None else self.traceparent.decode("ascii", "replace"),
                tracestate=None if self.tracestate is None else self.tracestate.decode("ascii", "replace"),
            )
        if isinstance(response, app_mod.Pending):
            server.enqueue(response, self, slot, started)
        else:
            self.finish(slot, response, started, head=method == "HEAD")
        if len(self.slots) >= MAX_PIPELINED and self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    # responses ---------------------------------------------------------------------------------
    def finish(self, slot: _Slot, response: app_mod.Response, started: float, *, head: bool = False) -> None:
        slot.data = render(response, keep_alive=slot.keep_alive, head=head)
        self.server.end(response, started)
        transport = self.transport
        while self.slots and self.slots[0].data is not None:
            done = self.slots.popleft()
            if transport is None or transport.is_closing():
                continue
            transport.write(done.data)  # type: ignore[arg-type]
            if not done.keep_alive:
                transport.close()
                self.closing = True
        if self.paused and len(self.slots) < MAX_PIPELINED // 2 and transport is not None:
            self.paused = False
            transport.resume_reading()

    def _fail(self, status: int, message: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(render(app_mod.error(status, message), keep_alive=False))
            self.transport.close()
        self.closing = True


def make_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency; plain asyncio still works
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def serve(
    server: Server,
    sock: socket.socket,
    *,
    drain_seconds: float = 0.0,
    stop: asyncio.Event | None = None,
    ready: Any = None,
    periodic: float = 5.0,
    frontends: Sequence[Frontend] = (),
) -> None:
    """Serve on ``sock`` (and ``frontends``) until SIGTERM/SIGINT (or ``stop``); then drain and close."""
    loop = asyncio.get_running_loop()
    server.loop = loop
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    sock.listen(2048)
    aserver = await loop.create_server(lambda: _Connection(server), sock=sock, backlog=2048)
    for frontend in frontends:
        await frontend.start(server)
    if ready is not None:
        ready(sock.getsockname()[1])

    async def refresh() -> None:
        while True:
            await asyncio.sleep(periodic)
            server.app.refresh_drift()

    refresher = loop.create_task(refresh()) if server.app.telemetry.multiprocess else None
    await stop.wait()
    # Report not-ready (endpoints controllers take the pod out), keep serving for the drain
    # period, then stop accepting and let in-flight requests finish.
    server.app.draining = True
    if drain_seconds:
        await asyncio.sleep(drain_seconds)
    aserver.close()
    # The other front ends stop accepting too (gRPC: GOAWAY, so clients reconnect elsewhere);
    # their in-flight calls are in ``server.inflight`` like HTTP's.
    stopping = [loop.create_task(frontend.stop(10.0)) for frontend in frontends]
    deadline = loop.time() + 10.0
    while server.inflight and loop.time() < deadline:
        await asyncio.sleep(0.01)
    for conn in list(server.connections):
        if conn.transport is not None:
            conn.transport.close()
    if refresher is not None:
        refresher.cancel()
    await asyncio.gather(*stopping)
    await aserver.wait_closed()
    server.close()
