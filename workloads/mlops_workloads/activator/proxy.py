"""Hold connections until the upstream accepts one, then pipe; count what the operator scales on."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable

from mlops_operator.api import modeldeployment as md_api

LOG = logging.getLogger("mlops_workloads.activator")
CHUNK = 64 * 1024


@dataclasses.dataclass
class Counters:
    """What ``/metrics`` exposes; one event loop mutates it, so no lock."""

    waiting: int = 0
    active: int = 0
    connections: int = 0
    held: int = 0
    timeouts: int = 0
    cold_starts: int = 0
    last_cold_start_seconds: float | None = None
    last_cold_start_time: float | None = None
    hold_seconds_sum: float = 0.0


class Activator:
    """Connections in, held until their route's upstream accepts, then piped."""

    def __init__(
        self,
        config: md_api.ActivatorConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.counters = Counters()
        self._clock = clock
        self._wall = wall
        self._cold_since: float | None = None  # first held connection of the cold start going on
        self._servers: list[asyncio.Server] = []
        self.ports: dict[str, int] = {}

    async def start(self) -> None:
        """Listen on every route and the admin port (``self.ports`` by name, ``admin`` too)."""
        for route in self.config.routes:
            server = await asyncio.start_server(
                functools.partial(self._handle, route=route), self.config.host, route.port
            )
            self._servers.append(server)
            self.ports[route.name] = server.sockets[0].getsockname()[1]
        admin = await asyncio.start_server(self._admin, self.config.host, self.config.admin_port)
        self._servers.append(admin)
        self.ports["admin"] = admin.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def _connect(
        self, route: md_api.ActivatorRoute
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The upstream's streams, retrying refused/unreachable connects until the timeout."""
        deadline = self._clock() + self.config.timeout_seconds
        first = True
        while True:
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(route.upstream_host, route.upstream_port),
                    timeout=max(0.05, min(5.0, deadline - self._clock())),
                )
            except (OSError, TimeoutError):
                if first:
                    first = False
                    self.counters.held += 1
                    if self._cold_since is None:
                        self._cold_since = self._clock()
                        LOG.info("no ready pod behind %s: holding requests", route.upstream_host)
            if self._clock() + self.config.retry_seconds >= deadline:
                return None
            await asyncio.sleep(self.config.retry_seconds)

    def _connected(self, started: float) -> None:
        now = self._clock()
        self.counters.hold_seconds_sum += now - started
        if self._cold_since is not None:
            seconds = now - self._cold_since
            self.counters.cold_starts += 1
            self.counters.last_cold_start_seconds = seconds
            self.counters.last_cold_start_time = self._wall()
            self._cold_since = None
            LOG.info("cold start over in %.2f s", seconds)

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, route: md_api.ActivatorRoute
    ) -> None:
        c = self.counters
        c.connections += 1
        started = self._clock()
        c.waiting += 1
        try:
            upstream = await self._connect(route)
        finally:
            c.waiting -= 1
        if upstream is None:
            c.timeouts += 1
            if not self.counters.waiting:
                self._cold_since = None  # nobody waits now: the next hold starts a new cold start
            await _refuse(writer, route, self.config.timeout_seconds)
            return
        self._connected(started)
        up_reader, up_writer = upstream
        c.active += 1
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            c.active -= 1
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()

    def metrics(self) -> str:
        c = self.counters
        lines = [
            "# HELP mlops_activator_waiting_connections Connections held for a serving pod now.",
            "# TYPE mlops_activator_waiting_connections gauge",
            f"mlops_activator_waiting_connections {c.waiting}",
            "# HELP mlops_activator_active_connections Connections piped to a serving pod now.",
            "# TYPE mlops_activator_active_connections gauge",
            f"mlops_activator_active_connections {c.active}",
            "# HELP mlops_activator_connections_total Connections accepted.",
            "# TYPE mlops_activator_connections_total counter",
            f"mlops_activator_connections_total {c.connections}",
            "# HELP mlops_activator_held_connections_total Connections that had to wait for a pod.",
            "# TYPE mlops_activator_held_connections_total counter",
            f"mlops_activator_held_connections_total {c.held}",
            "# HELP mlops_activator_hold_seconds_total Seconds connections waited for a pod, summed.",
            "# TYPE mlops_activator_hold_seconds_total counter",
            f"mlops_activator_hold_seconds_total {c.hold_seconds_sum:.6f}",
            "# HELP mlops_activator_timeouts_total Connections no pod took within the timeout.",
            "# TYPE mlops_activator_timeouts_total counter",
            f"mlops_activator_timeouts_total {c.timeouts}",
            "# HELP mlops_activator_cold_starts_total Cold starts (held connections until a pod took one).",
            "# TYPE mlops_activator_cold_starts_total counter",
            f"mlops_activator_cold_starts_total {c.cold_starts}",
        ]
        if c.last_cold_start_seconds is not None and c.last_cold_start_time is not None:
            lines += [
                "# HELP mlops_activator_last_cold_start_seconds The last cold start's length.",
                "# TYPE mlops_activator_last_cold_start_seconds gauge",
                f"mlops_activator_last_cold_start_seconds {c.last_cold_start_seconds:.6f}",
                "# HELP mlops_activator_last_cold_start_timestamp_seconds When the last cold start ended.",
                "# TYPE mlops_activator_last_cold_start_timestamp_seconds gauge",
                f"mlops_activator_last_cold_start_timestamp_seconds {c.last_cold_start_time:.3f}",
            ]
        return "\n".join(lines) + "\n"

    async def _admin(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """``GET /healthz`` and ``GET /metrics``, one request per connection."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5.0)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            writer.close()
            return
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        path = parts[1].split(b"?", 1)[0] if len(parts) >= 2 else b""
        if parts[0] != b"GET":
            status, kind, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
        elif path == b"/healthz":
            status, kind, body = "200 OK", "text/plain", b"ok\n"
        elif path == b"/metrics":
            status, kind, body = "200 OK", "text/plain; version=0.0.4", self.metrics().encode()
        else:
            status, kind, body = "404 Not Found", "text/plain", b"/healthz or /metrics\n"
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side (a client that shuts its write side still
    gets its answer)."""
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        writer.close()


async def _refuse(writer: asyncio.StreamWriter, route: md_api.ActivatorRoute, timeout: float) -> None:
    """A held connection's end: an HTTP 503 that says why (HTTP routes), else just closed."""
    if route.http:
        body = json.dumps(
            {"error": f"no serving pod became ready within {timeout:g} s (the deployment is scaled to zero)"}
        ).encode()
        writer.write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nRetry-After: 5\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(OSError):
            await writer.drain()
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
