"""Which HTTP stack should the model server use? The same ``App`` behind each, one load generator.

Stacks: ours (asyncio/uvloop + httptools, ``mlops_workloads.serve.http``) with adaptive
batching on the loop (``ours-batching``), with adaptive batching and the joint model call on
a worker thread (``ours-batching-thread``, the default), without batching, with each request's
model call on a thread (``run_in_executor``, no batching); aiohttp; and Starlette on uvicorn
(httptools + uvloop). Interleaved rounds; prints the median requests/s and p50/p99 at
concurrency 1 and 32 and the ratio to Starlette+uvicorn.

    .venv/bin/python benchmarks/serving/stacks.py [--seconds 5] [--rounds 3] [--stacks a,b]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from serving import loadgen

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, "site": "north"}
STACKS = (
    "ours-batching",
    "ours-batching-thread",
    "ours-no-batching",
    "ours-thread",
    "aiohttp",
    "starlette-uvicorn",
)


def _app(model_dir: str) -> Any:
    from mlops_workloads.serve import app as app_mod
    from mlops_workloads.serve import bundle

    return app_mod.App(bundle.load(model_dir), model_name="iris")


def serve(stack: str, model_dir: str, port: int) -> None:
    import time as _time

    app = _app(model_dir)
    if stack.startswith("ours"):
        from mlops_workloads.serve import http

        server: Any = http.Server(
            app, batching=stack.startswith("ours-batching"), offload=stack == "ours-batching-thread"
        )
        if stack == "ours-thread":

            class ThreadServer(http.Server):
                def enqueue(self, pending: Any, conn: Any, slot: Any, started: float) -> None:
                    assert self.loop is not None
                    future = self.loop.run_in_executor(None, self.app.score, [pending])
                    future.add_done_callback(lambda f: conn.finish(slot, f.result()[0], started))

            server = ThreadServer(app, batching=False)
        sock = http.make_socket("127.0.0.1", port, reuse_port=False)
        loop = http.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(http.serve(server, sock))
        return

    def one(method: str, path: str, body: bytes) -> Any:
        return app.handle(method, path, body)

    if stack == "aiohttp":
        from aiohttp import web

        async def handler(request: web.Request) -> web.Response:
            started = _time.perf_counter()
            response = app.handle(request.method, request.path, await request.read())
            del started
            return web.Response(status=response.status, body=response.body, content_type="application/json")

        web_app = web.Application()
        web_app.router.add_route("*", "/{tail:.*}", handler)
        import uvloop

        uvloop.install()
        web.run_app(web_app, host="127.0.0.1", port=port, access_log=None, print=None)
        return
    if stack == "starlette-uvicorn":
        import uvicorn
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        async def endpoint(request: Request) -> Response:
            response = one(request.method, request.url.path, await request.body())
            return Response(response.body, status_code=response.status, media_type="application/json")

        star = Starlette(routes=[Route("/{tail:path}", endpoint, methods=["GET", "POST"])])
        uvicorn.run(
            star,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            loop="uvloop",
            http="httptools",
        )
        return
    raise SystemExit(f"unknown stack {stack}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} never became ready")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--serve")
    parser.add_argument("--model-dir")
    parser.add_argument("--port", type=int)
    parser.add_argument("--stacks", default=",".join(STACKS))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.model_dir, args.port)
        return
    from mlops_workloads.serve import demo

    model_dir = demo.build(tempfile.mkdtemp(prefix="bench-model-"))
    body = json.dumps({"instances": [ROW]}).encode()
    names = args.stacks.split(",")
    results: dict[tuple[str, int], list[loadgen.Result]] = {}
    procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for stack in names:
            port = free_port()
            procs[stack] = (
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--serve",
                        stack,
                        "--model-dir",
                        str(model_dir),
                        "--port",
                        str(port),
                    ]
                ),
                port,
            )
            wait_ready(f"http://127.0.0.1:{port}/v2/health/ready")
        # Interleaved rounds: load from elsewhere on a shared machine hits every stack alike.
        for round_ in range(args.rounds):
            for concurrency in (1, 32):
                for stack in names:
                    port = procs[stack][1]
                    r = loadgen.run(
                        f"http://127.0.0.1:{port}/v1/models/iris:predict",
                        body,
                        concurrency=concurrency,
                        seconds=args.seconds,
                    )
                    results.setdefault((stack, concurrency), []).append(r)
                    print(
                        f"[round {round_ + 1}] {stack:20s} c={concurrency:<3d} {r.rps:9.0f} req/s  "
                        f"p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms  errors {r.errors}  ({r.tool})",
                        flush=True,
                    )
    finally:
        for proc, _ in procs.values():
            proc.terminate()
            proc.wait(timeout=30)
    anchor = "starlette-uvicorn"
    print(f"median of {args.rounds} interleaved rounds of {args.seconds:.0f} s, single-row v1 requests")
    for concurrency in (1, 32):
        base = (
            statistics.median(r.rps for r in results.get((anchor, concurrency), []))
            if anchor in names
            else None
        )
        for stack in names:
            runs = results[(stack, concurrency)]
            rps = statistics.median(r.rps for r in runs)
            ratio = f"{rps / base:5.2f}x {anchor}" if base else ""
            p50 = statistics.median(r.p50_ms for r in runs)
            p99 = statistics.median(r.p99_ms for r in runs)
            print(
                f"c={concurrency:<3d} {stack:20s} {rps:8.0f} req/s  p50 {p50:7.2f} ms  "
                f"p99 {p99:8.2f} ms  {ratio}"
            )


if __name__ == "__main__":
    main()
