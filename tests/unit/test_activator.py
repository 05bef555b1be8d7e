"""The activator of a scaled-to-zero deployment: real sockets on localhost."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
from collections.abc import Awaitable, Callable

import pytest

from mlops_operator.api import modeldeployment as md_api
from mlops_workloads import runtime
from mlops_workloads.activator import __main__ as activator_main
from mlops_workloads.activator import proxy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _upstream(port: int) -> asyncio.Server:
    """A tiny HTTP server: answers each request with its own body, upper-cased."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = (await reader.readexactly(length)).upper()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def _request(port: int, body: bytes, *, requests: int = 1) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []
    for _ in range(requests):
        writer.write(
            b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        answers.append(head.split(b"\r\n")[0] + b" " + await reader.readexactly(length))
    writer.close()
    return answers


def _config(upstream_port: int, *, timeout: float = 10.0) -> md_api.ActivatorConfig:
    return md_api.ActivatorConfig(
        host="127.0.0.1",
        admin_port=0,
        timeout_seconds=timeout,
        retry_seconds=0.05,
        routes=[
            md_api.ActivatorRoute(name="http", port=0, upstream_host="127.0.0.1", upstream_port=upstream_port)
        ],
    )


def _with_activator(case: Callable[[proxy.Activator, int], Awaitable[None]]) -> None:
    """Run ``case(activator, upstream_port)`` with an activator listening on localhost."""

    async def main() -> None:
        upstream_port = _free_port()
        activator = proxy.Activator(_config(upstream_port))
        await activator.start()
        try:
            await case(activator, upstream_port)
        finally:
            await activator.stop()

    asyncio.run(main())


def _metrics(text: str) -> dict[str, float]:
    return {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_requests_wait_for_the_first_pod_then_all_get_their_answer() -> None:
    async def case(activator: proxy.Activator, upstream_port: int) -> None:
        port = activator.ports["http"]
        clients = [asyncio.create_task(_request(port, b"row %d" % i, requests=2)) for i in range(5)]
        await asyncio.sleep(0.4)  # nothing listens upstream yet: every connection is held
        assert activator.counters.waiting == 5
        assert _metrics(activator.metrics())["mlops_activator_waiting_connections"] == 5
        server = await _upstream(upstream_port)
        try:
            answers = await asyncio.wait_for(asyncio.gather(*clients), timeout=10)
        finally:
            server.close()
        assert [a for pair in answers for a in pair] == [
            b"HTTP/1.1 200 OK ROW %d" % i for i in range(5) for _ in range(2)
        ]
        metrics = _metrics(activator.metrics())
        assert metrics["mlops_activator_waiting_connections"] == 0
        assert metrics["mlops_activator_held_connections_total"] == 5
        assert metrics["mlops_activator_cold_starts_total"] == 1
        assert 0.3 <= metrics["mlops_activator_last_cold_start_seconds"] < 10
        assert metrics["mlops_activator_hold_seconds_total"] >= 5 * 0.3

    _with_activator(case)


def test_a_warm_upstream_is_piped_at_once_and_is_no_cold_start() -> None:
    async def case(activator: proxy.Activator, upstream_port: int) -> None:
        server = await _upstream(upstream_port)
        try:
            assert await _request(activator.ports["http"], b"abc") == [b"HTTP/1.1 200 OK ABC"]
        finally:
            server.close()
        metrics = _metrics(activator.metrics())
        assert metrics["mlops_activator_held_connections_total"] == 0
        assert metrics["mlops_activator_cold_starts_total"] == 0
        assert "mlops_activator_last_cold_start_seconds" not in metrics

    _with_activator(case)


def test_a_connection_held_past_the_timeout_gets_a_503_that_says_why() -> None:
    asyncio.run(_held_past_the_timeout())


async def _held_past_the_timeout() -> None:
    activator = proxy.Activator(_config(_free_port(), timeout=0.3))
    await activator.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", activator.ports["http"])
        writer.write(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), timeout=5)
        writer.close()
    finally:
        await activator.stop()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert "scaled to zero" in json.loads(body)["error"]
    assert activator.counters.timeouts == 1
    assert activator.counters.cold_starts == 0


def test_the_admin_port_answers_healthz_and_metrics() -> None:
    async def case(activator: proxy.Activator, upstream_port: int) -> None:
        port = activator.ports["admin"]

        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, ""

        assert await asyncio.to_thread(get, "/healthz") == (200, "ok\n")
        status, text = await asyncio.to_thread(get, "/metrics")
        assert status == 200 and "mlops_activator_waiting_connections 0" in text
        assert (await asyncio.to_thread(get, "/nope"))[0] == 404

    _with_activator(case)


def test_flags_make_one_http_route_and_bad_upstreams_are_refused() -> None:
    args = activator_main.parse_args(["--upstream", "iris-private.team:80", "--port", "9000"])
    config = activator_main.load_config(args, {})
    assert [(r.name, r.port, r.upstream_host, r.upstream_port, r.http) for r in config.routes] == [
        ("http", 9000, "iris-private.team", 80, True)
    ]
    with pytest.raises(runtime.WorkloadError, match="host:port"):
        activator_main.load_config(activator_main.parse_args(["--upstream", "nohost"]), {})
    with pytest.raises(runtime.WorkloadError, match="routes"):
        activator_main.load_config(activator_main.parse_args([]), {})
