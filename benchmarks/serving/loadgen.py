"""One closed-loop HTTP/1.1 keep-alive load generator for every server in the serving benchmarks.

``wrk`` (Debian package) when it is installed, else (or as well: ``tools``) a raw-socket
asyncio generator (uvloop when available): ``concurrency`` connections, each sending the next
request as soon as the previous answer is read, for ``seconds``. Both report requests/s, p50/p99
latency and the count of non-2xx answers, so all servers are measured by the same clients.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time


@dataclasses.dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    tool: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def _client(
    host: str, port: int, request: bytes, *, stop_at: float, latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
            length = int(match.group(1)) if match else 0
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 2"):
                errors[0] += 1
    finally:
        writer.close()


def _python(url: str, body: bytes, *, concurrency: int, seconds: float) -> Result:
    host, port, path = _split(url)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    errors = [0]

    async def main() -> float:
        # Warm-up, then the measured run.
        warm_stop = time.perf_counter() + min(1.0, seconds / 5)
        await asyncio.gather(
            *(
                _client(host, port, request, stop_at=warm_stop, latencies=[], errors=[0])
                for _ in range(concurrency)
            )
        )
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _client(host, port, request, stop_at=started + seconds, latencies=latencies, errors=errors)
                for _ in range(concurrency)
            )
        )
        return time.perf_counter() - started

    try:
        import uvloop

        elapsed = uvloop.run(main())
    except ImportError:
        elapsed = asyncio.run(main())
    return Result(
        len(latencies),
        errors[0],
        elapsed,
        _percentile(latencies, 50) * 1e3,
        _percentile(latencies, 99) * 1e3,
        "python-asyncio",
    )


def _split(url: str) -> tuple[str, int, str]:
    match = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
    if not match:
        raise ValueError(url)
    return match.group(1), int(match.group(2)), match.group(3)


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BENCH_BODY_FILE"), "rb")
wrk.body = f:read("*all")
f:close()
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %f %f\\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


def _wrk(url: str, body: bytes, *, concurrency: int, seconds: float) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "post.lua")
        body_file = os.path.join(tmp, "body.json")
        with open(script, "w", encoding="utf-8") as fh:
            fh.write(WRK_SCRIPT)
        with open(body_file, "wb") as fh:
            fh.write(body)
        env = {**os.environ, "BENCH_BODY_FILE": body_file}
        warm = ["wrk", "-t1", f"-c{concurrency}", "-d1s", "-s", script, url]
        subprocess.run(warm, env=env, capture_output=True, check=True, timeout=60)
        cmd = [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            script,
            url,
        ]
        out = subprocess.run(
            cmd, env=env, capture_output=True, text=True, check=True, timeout=seconds + 60
        ).stdout
    match = re.search(r"RESULT (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+)", out)
    if not match:
        raise RuntimeError(f"wrk printed no result: {out}")
    requests, errors, micros = int(match.group(1)), int(match.group(2)), int(match.group(3))
    # wrk counts non-2xx/3xx answers as status errors.
    return Result(
        requests, errors, micros / 1e6, float(match.group(4)) / 1e3, float(match.group(5)) / 1e3, "wrk"
    )


def tool() -> str:
    return "wrk" if shutil.which("wrk") and not os.environ.get("BENCH_PYTHON_LOADGEN") else "python-asyncio"


def tools() -> tuple[str, ...]:
    """Every generator this machine has: wrk (when installed) and the asyncio one, so a run can
    measure each cell with both (one client's quirks are not mistaken for a server's)."""
    return ("wrk", "python-asyncio") if shutil.which("wrk") else ("python-asyncio",)


def run(url: str, body: bytes, *, concurrency: int, seconds: float, generator: str | None = None) -> Result:
    """One cell with ``generator`` (``wrk`` or ``python-asyncio``; default: ``tool()``)."""
    if (generator or tool()) == "wrk":
        return _wrk(url, body, concurrency=concurrency, seconds=seconds)
    return _python(url, body, concurrency=concurrency, seconds=seconds)


def bare_predict(fn: object, *, seconds: float = 2.0) -> float:
    """Median seconds of one call of ``fn`` (the in-process anchor)."""
    call = fn  # type: ignore[assignment]
    for _ in range(20):
        call()  # type: ignore[operator]
    samples: list[float] = []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        t = time.perf_counter()
        call()  # type: ignore[operator]
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)
