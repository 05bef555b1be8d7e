"""Serving throughput: our model server vs MLServer (mlserver-sklearn) vs KServe's Python server.

One run, one model (the iris ColumnTransformer + LogisticRegression Pipeline of
``mlops_workloads.serve.demo``), one machine, one load generator (``wrk`` when installed,
else a raw-socket asyncio generator): requests/s and p50/p99 latency at concurrency 1 and
32, for single-row requests, plus the overhead of each server over a bare ``predict`` call.
The servers run side by side; cells are measured in ROUNDS, interleaved, and the median
round is reported, so a burst of load from elsewhere on a shared machine hits every server
alike. MLServer and KServe live in their own venvs (see ``serving/competitors.py``).

Work per request is NOT flattering to us: our server returns predictions, class
probabilities and low-confidence flags and updates drift windows and metrics; MLServer and
KServe are asked for ``predict`` only.

Capture (``spec.logging``) is measured the same way: ``ours (v1, capture 100%)`` is ``ours
(v1)`` with every request captured (``sampleRate: 1``) to Parquet files in a local directory,
side by side in the same rounds; the run prints its throughput as a share of capture off, and
the rows the capture arms wrote and dropped (a capture that kept up drops none, so the ratio is
the cost of writing everything, not of dropping it).

    .venv/bin/python benchmarks/serving_throughput.py [--seconds 10] [--rounds 3]
    .venv/bin/python benchmarks/serving_throughput.py --only 'ours (v1),ours (v1, capture 100%)'
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from serving import competitors, loadgen, stacks

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, "site": "north"}
ROWS = (1, 100)  # rows per request: single rows, and 100-row batches


def v1_body(rows: int) -> bytes:
    return json.dumps({"instances": [ROW] * rows}).encode()


def _v2_inputs(rows: int) -> list[dict[str, Any]]:
    return [
        {"name": k, "shape": [rows], "datatype": "BYTES" if k == "site" else "FP64", "data": [v] * rows}
        for k, v in ROW.items()
    ]


def v2_body(rows: int) -> bytes:
    return json.dumps({"inputs": _v2_inputs(rows)}).encode()


def mlserver_body(rows: int) -> bytes:
    return json.dumps(
        {
            "parameters": {"content_type": "pd"},
            "inputs": [
                {**t, "parameters": {"content_type": "str"}} if t["datatype"] == "BYTES" else t
                for t in _v2_inputs(rows)
            ],
        }
    ).encode()


V1_BODY = v1_body(1)
# The in-process anchor: the median time of a bare ``predict`` on a ready DataFrame, in a given
# interpreter (each server's own venv: KServe's pins pandas 2) and pandas setting.
BARE_PREDICT = """
import json, statistics, sys, time
import joblib, pandas as pd
if sys.argv[3] == "object":
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pd.set_option("future.infer_string", False)
pipeline = joblib.load(sys.argv[1])
frame = pd.DataFrame([json.loads(sys.argv[4])] * int(sys.argv[2]))
for _ in range(50):
    pipeline.predict(frame)
samples = []
stop = time.perf_counter() + 2.0
while time.perf_counter() < stop:
    t = time.perf_counter()
    pipeline.predict(frame)
    samples.append(time.perf_counter() - t)
print(statistics.median(samples), pd.__version__)
"""


def bare_predict(python: str, model: pathlib.Path, rows: int, *, strings: str) -> tuple[float, str]:
    """(seconds, pandas version) of one bare ``predict`` of ``rows`` rows in ``python``."""
    out = subprocess.run(
        [python, "-c", BARE_PREDICT, str(model), str(rows), strings, json.dumps(ROW)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout.split()
    return float(out[0]), out[1]


CONCURRENCY = (1, 32)
# (capture off, capture at 100%): the pairs whose throughput ratio is the cost of capture.
CAPTURE_PAIRS = (
    ("ours (v1)", "ours (v1, capture 100%)"),
    ("ours (v1, --workers 2)", "ours (v1, --workers 2, capture 100%)"),
)


@contextlib.contextmanager
def started(
    name: str, cmd: list[str], ready_url: str, log_dir: pathlib.Path, env: dict[str, str] | None = None
) -> Iterator[None]:
    log = (log_dir / f"{name}.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        stacks.wait_ready(ready_url, timeout=180)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def wait_settled(url: str, timeout: float = 180) -> None:
    """Until our server's metadata names its explainer (built on a thread after readiness)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url, timeout=10) as response:
            explainer = json.loads(response.read())["parameters"]["explainer"]
        if "unavailable" not in explainer or "being built" not in explainer["unavailable"]:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{url}: the explainer was never built")


def distinct_ports(n: int) -> list[int]:
    """``n`` free ports, all different (sockets held open until all are chosen)."""
    import socket

    socks = []
    for _ in range(n):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    ports = [int(sock.getsockname()[1]) for sock in socks]
    for sock in socks:
        sock.close()
    return ports


def check_answer(url: str, body: bytes) -> Any:
    import urllib.request

    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def only_names(value: str) -> set[str]:
    """The names ``--only`` may mean: its comma-separated items, and every run of adjacent items
    joined again (server names such as ``ours (v1, --workers 2)`` hold commas themselves)."""
    parts = value.split(",")
    return {",".join(parts[i:j]).strip() for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)}


def scrape(url: str) -> dict[str, float]:
    """Capture counters of a server's /metrics, summed over their labels."""
    import urllib.request

    from prometheus_client import parser

    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("mlops_serve_capture_"):
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def captured_rows(root: pathlib.Path) -> tuple[int, int]:
    """(rows, files) of the Parquet files under a capture directory."""
    import pyarrow.parquet as pq

    paths = sorted(root.rglob("*.parquet"))
    return sum(pq.read_metadata(p).num_rows for p in paths), len(paths)


def capture_cpu(model_dir: pathlib.Path, work: pathlib.Path, *, requests: int) -> dict[str, float]:
    """CPU seconds, in-process, per single-row request: what the App spends answering it (JSON in,
    JSON out, no HTTP) alone and in joint model calls of 32 (as batching makes them), and what
    capture at 100% adds: the request path's ``offer`` and the writer's share (conversion to
    Arrow every 300 requests, as a writer pass at ~1500 requests/s takes them, then Parquet
    encoding and the file write). Process CPU time barely moves with the machine's other load,
    unlike wall-clock throughput, so this resolves what the side-by-side ratio cannot."""
    import prometheus_client

    from mlops_workloads import storage
    from mlops_workloads.serve import app as app_mod
    from mlops_workloads.serve import bundle, telemetry
    from mlops_workloads.serve import capture as serve_capture

    loaded = bundle.load(model_dir)
    app = app_mod.App(loaded, model_name="iris")
    out: dict[str, float] = {}
    for batch in (1, 32):
        started = time.process_time()
        for _ in range(requests // batch):
            pending = [app.dispatch("POST", "/v1/models/iris:predict", V1_BODY) for _ in range(batch)]
            app.score([p for p in pending if isinstance(p, app_mod.Pending)])
        out[f"serve_{batch}"] = (time.process_time() - started) / (requests // batch * batch)
    pending = app.dispatch("POST", "/v1/models/iris:predict", V1_BODY)
    assert isinstance(pending, app_mod.Pending)
    result, proba = app._model_call(pending.batch.frame)
    assert proba is not None
    low = proba.max(axis=1) < app.threshold
    cap = serve_capture.Capture(
        model=serve_capture.ModelInfo(
            name="iris",
            version="1",
            digest=loaded.digest,
            task=loaded.task,
            features=tuple((f.name, f.dtype) for f in loaded.schema.features),
            classes=loaded.classes,
        ),
        open_sink=lambda: storage.open_store(f"file://{work}/cpu"),
        metrics=telemetry.CaptureMetrics(prometheus_client.CollectorRegistry()),
        sample_rate=1.0,
        queue_rows=requests + 1,
    )
    offer = writer = 0.0
    for chunk in range(0, requests, 300):
        started = time.process_time()
        for i in range(chunk, min(requests, chunk + 300)):
            cap.offer(
                f"{i:032x}",
                columns=pending.batch.columns,
                result=result,
                proba=proba,
                low=low,
                low_count=int(low.sum()),
                rows=1,
            )
        offer += time.process_time() - started
        started = time.process_time()
        cap._cycle()  # one writer pass, here instead of on its thread, to time it
        writer += time.process_time() - started
    started = time.process_time()
    cap.close()  # no thread started: the final encode and write run here
    writer += time.process_time() - started
    out["offer"] = offer / requests
    out["writer"] = writer / requests
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="per cell and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated subset of servers")
    parser.add_argument(
        "--capture-cpu-requests",
        type=int,
        default=2000,
        help="requests per block of the in-process capture CPU measurement (0: skip it)",
    )
    args = parser.parse_args()

    from mlops_workloads.serve import demo

    work = pathlib.Path(tempfile.mkdtemp(prefix="serving-bench-"))
    model_dir = demo.build(work / "model")
    joblib_path = competitors.export_joblib(model_dir, work / "joblib")
    keep = only_names(args.only) if args.only else None

    def wanted(name: str) -> bool:
        return keep is None or name in keep

    ports = iter(distinct_ports(24))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_CONFIG", "PROMETHEUS_MULTIPROC"))}
    servers: list[dict[str, Any]] = []

    def ours(port: int, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mlops_workloads.serve",
            "--model-dir",
            str(model_dir),
            "--model-name",
            "iris",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--grpc-port",
            "0",  # the arms run side by side: one gRPC port (8081) would be bound twice
            *extra,
        ]

    def our_arm(name: str, port: int, cmd: list[str], **more: Any) -> dict[str, Any]:
        return {
            "name": name,
            "cmd": cmd,
            "ready": f"http://127.0.0.1:{port}/v2/health/ready",
            # Measured once the explainer is built (readiness does not wait for it; its build
            # imports shap on a thread for seconds): the steady state, attribution monitor on.
            "settled": f"http://127.0.0.1:{port}/v2/models/iris",
            "url": f"http://127.0.0.1:{port}/v1/models/iris:predict",
            "body": v1_body,
            "env": env,
            "also": [],
            "anchor": "ours",
            **more,
        }

    p = next(ports)
    servers.append(
        our_arm(
            "ours (v1)",
            p,
            ours(p),
            also=[("ours (v2)", f"http://127.0.0.1:{p}/v2/models/iris/infer", v2_body)],
        )
    )
    p = next(ports)
    servers.append(
        our_arm(
            "ours on uvicorn (v1)",
            p,
            [
                sys.executable,
                str(pathlib.Path(__file__).resolve().parent / "serving" / "uvicorn_arm.py"),
                "--model-dir",
                str(model_dir),
                "--model-name",
                "iris",
                "--port",
                str(p),
            ],
        )
    )
    p = next(ports)
    servers.append(our_arm("ours (v1, --workers 2)", p, ours(p, "--workers", "2")))
    for name, extra in (
        ("ours (v1, capture 100%)", ()),
        ("ours (v1, --workers 2, capture 100%)", ("--workers", "2")),
    ):
        p = next(ports)
        root = work / f"capture-{p}"
        servers.append(
            our_arm(
                name,
                p,
                ours(p, *extra, "--capture-uri", f"file://{root}", "--capture-sample-rate", "1"),
                capture=root,
                metrics=f"http://127.0.0.1:{p}/metrics",
            )
        )
    for workers in (1, 0):
        p = next(ports)
        name = "mlserver" if workers == 1 else "mlserver (parallel_workers=0)"
        if not wanted(name):
            continue  # not built: building it creates its venv
        servers.append(
            {
                "name": name,
                "cmd": competitors.mlserver_command(
                    joblib_path,
                    work / f"mlserver-{workers}",
                    port=p,
                    grpc_port=next(ports),
                    metrics_port=next(ports),
                    parallel_workers=workers,
                ),
                "ready": f"http://127.0.0.1:{p}/v2/health/ready",
                "url": f"http://127.0.0.1:{p}/v2/models/iris/infer",
                "body": mlserver_body,
                "env": None,
                "also": [],
                "anchor": "mlserver",
            }
        )
    p = next(ports)
    if wanted("kserve"):
        servers.append(
            {
                "name": "kserve",
                "cmd": competitors.kserve_command(
                    joblib_path, work / "kserve", port=p, grpc_port=next(ports)
                ),
                "ready": f"http://127.0.0.1:{p}/v1/models/iris",
                "url": f"http://127.0.0.1:{p}/v1/models/iris:predict",
                "body": v1_body,
                "env": None,
                "also": [],
                "anchor": "kserve",
            }
        )
    servers = [s for s in servers if wanted(s["name"])]

    # Bare predict, per interpreter: ours as our server runs it (object strings, see
    # inputs.prefer_object_strings) and with pandas' default, KServe's and MLServer's in their venvs.
    anchors: dict[tuple[str, int], float] = {}
    anchor_text: list[str] = []
    runs_in = {"ours": (sys.executable, "object"), "ours, pandas default": (sys.executable, "default")}
    for s in servers:
        if s["anchor"] in ("kserve", "mlserver"):
            runs_in[s["anchor"]] = (str(competitors.venv(s["anchor"])), "default")
    for key, (python, strings) in runs_in.items():
        for rows in ROWS:
            seconds, version = bare_predict(python, joblib_path, rows, strings=strings)
            anchors[(key, rows)] = seconds
        anchor_text.append(
            f"{key} (pandas {version}{', object strings' if strings == 'object' else ''}): "
            + ", ".join(f"{rows} row(s) {anchors[(key, rows)] * 1e3:.3f} ms" for rows in ROWS)
        )

    # (name, anchor, url, body of n rows)
    cells: list[tuple[str, str, str, Any]] = []
    for s in servers:
        cells.append((s["name"], s["anchor"], s["url"], s["body"]))
        cells.extend((name, s["anchor"], url, body) for name, url, body in s["also"])
    generators = loadgen.tools()
    results: dict[tuple[str, int, int, str], list[loadgen.Result]] = {}
    with contextlib.ExitStack() as stack:
        for s in servers:
            stack.enter_context(started(s["name"], s["cmd"], s["ready"], work, s["env"]))
        for s in servers:
            if "settled" in s:
                wait_settled(s["settled"])
        for name, _, url, body in cells:
            for rows in ROWS:
                print(
                    f"[check] {name} ({rows}): {json.dumps(check_answer(url, body(rows)))[:120]}", flush=True
                )
        for round_ in range(args.rounds):
            for rows in ROWS:
                for concurrency in CONCURRENCY:
                    for generator in generators:
                        for name, _, url, body in cells:
                            r = loadgen.run(
                                url,
                                body(rows),
                                concurrency=concurrency,
                                seconds=args.seconds,
                                generator=generator,
                            )
                            results.setdefault((name, rows, concurrency, generator), []).append(r)
                            print(
                                f"[round {round_ + 1}] {name:32s} {rows:3d} row(s) c={concurrency:<3d} "
                                f"{generator:14s} {r.rps:8.0f} req/s  p50 {r.p50_ms:7.2f} ms  "
                                f"p99 {r.p99_ms:8.2f} ms  non-2xx {r.errors}",
                                flush=True,
                            )
                            time.sleep(0.5)
        capture_counts = {s["name"]: scrape(s["metrics"]) for s in servers if "capture" in s}
    # After the servers' SIGTERM: each worker has flushed what it held.
    capture_files = {s["name"]: captured_rows(s["capture"]) for s in servers if "capture" in s}

    print()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores (shared), "
        f"Python {platform.python_version()}; load generators: {', '.join(generators)} (each cell "
        f"with each); {args.rounds} interleaved rounds of {args.seconds:.0f} s per cell, median "
        "round shown"
    )
    print("bare pipeline.predict (in-process, on a ready DataFrame), per interpreter:")
    for line in anchor_text:
        print(f"  {line}")
    print(
        "overhead p50: the p50 at c=1 minus the bare predict of the server's own interpreter (ours: "
        "with object strings, as it runs; KServe, MLServer: their venvs)"
    )
    header = (
        f"{'server':32s} {'rows':>4s} {'c':>3s} {'generator':14s} {'req/s':>8s} {'p50 ms':>8s} "
        f"{'p99 ms':>8s} {'overhead p50':>13s}"
    )
    print(header)
    summary: dict[
        tuple[str, int, int, str], tuple[float, float, float]
    ] = {}  # rps, p50, p99 (medians over rounds)
    for rows in ROWS:
        for concurrency in CONCURRENCY:
            for generator in generators:
                for name, anchor, _, _ in cells:
                    runs = results[(name, rows, concurrency, generator)]
                    rps = statistics.median(r.rps for r in runs)
                    p50 = statistics.median(r.p50_ms for r in runs)
                    p99 = statistics.median(r.p99_ms for r in runs)
                    summary[(name, rows, concurrency, generator)] = (rps, p50, p99)
                    overhead = f"{p50 - anchors[(anchor, rows)] * 1e3:+.2f} ms" if concurrency == 1 else ""
                    print(
                        f"{name:32s} {rows:4d} {concurrency:3d} {generator:14s} {rps:8.0f} {p50:8.2f} "
                        f"{p99:8.2f} {overhead:>13s}"
                    )
    for base_name in ("kserve", "mlserver"):
        if not any(name == base_name for name, *_ in cells):
            continue
        for rows in ROWS:
            for concurrency in CONCURRENCY:
                for generator in generators:
                    base = summary[(base_name, rows, concurrency, generator)]
                    for name, *_ in cells:
                        if name.startswith("ours"):
                            r = summary[(name, rows, concurrency, generator)]
                            print(
                                f"{rows:3d} row(s) c={concurrency:<3d} {generator:14s} {name:32s} "
                                f"{r[0] / base[0]:5.2f}x {base_name}'s throughput, p99 {r[2]:7.2f} ms vs "
                                f"{base[2]:7.2f} ms"
                            )
    for off, on in CAPTURE_PAIRS:
        for generator in generators:
            for concurrency in CONCURRENCY:
                if (off, 1, concurrency, generator) not in summary or (
                    on,
                    1,
                    concurrency,
                    generator,
                ) not in summary:
                    continue
                a_runs, b_runs = (
                    results[(off, 1, concurrency, generator)],
                    results[(on, 1, concurrency, generator)],
                )
                # Per round, so a burst from elsewhere on the machine hits both arms of a ratio alike.
                ratios = [b.rps / a.rps for a, b in zip(a_runs, b_runs, strict=True)]
                base_r, on_r = (
                    summary[(off, 1, concurrency, generator)],
                    summary[(on, 1, concurrency, generator)],
                )
                cost = (1 - statistics.median(ratios)) * 100
                print(
                    f"c={concurrency:<3d} {generator:14s} {on:38s} {on_r[0] / base_r[0]:5.3f}x the "
                    f"throughput of capture off (median of per-round ratios "
                    f"{statistics.median(ratios):5.3f}, cost {cost:+.1f}%), p99 {on_r[2]:7.2f} ms vs "
                    f"{base_r[2]:7.2f} ms"
                )
    if args.capture_cpu_requests:
        cpu = capture_cpu(model_dir, work, requests=args.capture_cpu_requests)
        extra = cpu["offer"] + cpu["writer"]
        print(
            f"capture's own CPU per captured row (in-process): request path {cpu['offer'] * 1e6:.1f} us, "
            f"writer thread {cpu['writer'] * 1e6:.1f} us"
        )
        for batch in (1, 32):
            serve = cpu[f"serve_{batch}"]
            print(
                f"  vs {serve * 1e6:7.1f} us CPU to answer a request in model calls of {batch:2d}: "
                f"capture at 100% costs {extra / serve * 100:4.1f}% of a request's CPU "
                f"({serve / (serve + extra):5.3f}x the throughput of a CPU-bound server)"
            )
    for name, counts in capture_counts.items():
        rows, files = capture_files[name]
        print(
            f"{name}: {rows} rows in {files} Parquet files; "
            f"dropped {counts.get('mlops_serve_capture_dropped_total', 0):.0f}, "
            f"write errors {counts.get('mlops_serve_capture_errors_total', 0):.0f}"
        )


if __name__ == "__main__":
    main()
