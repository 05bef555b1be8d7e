"""Our application logic behind uvicorn: what the hand-written HTTP layer (``serve.http``) is worth.

The same ``App`` (decoding, probabilities, low-confidence flags, drift, metrics, tracing) and the
same batching queue (``http.Server``: requests that arrive together share one model call on
its worker thread, a lone quick request is scored on the loop), with uvicorn (httptools +
uvloop, the stack KServe and MLServer serve on) parsing HTTP and writing answers through a bare
ASGI callable instead of ``serve.http``'s protocol. The startup is the server's: pandas'
object strings and the frozen heap (``serve.__main__``).

    .venv/bin/python benchmarks/serving/uvicorn_arm.py --model-dir DIR --model-name iris --port 8080
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from mlops_workloads.serve import app as app_mod
from mlops_workloads.serve import bundle, http, inputs


class _Waiter:
    """An ASGI request waiting in the shared queue (``http.Answerer``)."""

    __slots__ = ("future", "server")

    def __init__(self, server: http.Server, future: asyncio.Future[app_mod.Response]) -> None:
        self.server = server
        self.future = future

    def finish(self, slot: Any, response: app_mod.Response, started: float) -> None:
        self.server.end(response, started)
        if not self.future.done():
            self.future.set_result(response)


def asgi(server: http.Server) -> Any:
    """The ASGI callable: HTTP requests through ``App.dispatch`` and the server's queue."""
    app = server.app

    async def call(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        if server.loop is None:
            server.loop = asyncio.get_running_loop()
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        headers = dict(scope["headers"])
        server.begin()

        def text(name: bytes) -> str | None:
            value = headers.get(name)
            return None if value is None else value.decode("ascii", "replace")

        result = app.dispatch(
            scope["method"],
            scope["path"],
            body,
            text(b"x-request-id"),
            traceparent=text(b"traceparent"),
            tracestate=text(b"tracestate"),
        )
        if isinstance(result, app_mod.Pending):
            future: asyncio.Future[app_mod.Response] = server.loop.create_future()
            server.enqueue(result, _Waiter(server, future), http._Slot(True), started)
            response = await future
        else:
            response = result
            server.end(response, started)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (b"content-type", response.content_type.encode()),
                    (b"content-length", str(len(response.body)).encode()),
                    *((k.lower().encode(), v.encode()) for k, v in response.headers),
                ],
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    return call


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--model-name", default="model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    import uvicorn

    inputs.prefer_object_strings()
    loaded = bundle.load(args.model_dir)
    app = app_mod.App(loaded, model_name=args.model_name)
    app_mod.freeze_heap(app)
    server = http.Server(app)
    try:
        uvicorn.run(
            asgi(server),
            host=args.host,
            port=args.port,
            loop="uvloop",
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
            server_header=False,
            date_header=False,
        )
    finally:
        server.close()
        app.close()


if __name__ == "__main__":
    main()
