"""``python -m mlops_workloads.serve``: load a model directory and serve it over HTTP and gRPC.

Config: the JSON of ``ServeConfig`` from MLOPS_CONFIG_FILE / MLOPS_CONFIG (how the operator
runs it), overridden by command-line flags (how a person runs it). With ``--workers N`` the
model is loaded once, then N processes are forked, each with its own SO_REUSEPORT socket
on the same port (the kernel spreads connections) and a shared Prometheus multiprocess
directory, so /metrics on any worker reports the whole pod. With ``capture`` (the operator
sets it from ``spec.logging``; by hand ``--capture-uri``) each worker captures rows to its own
Parquet files through one writer thread (``serve.capture``), flushed on SIGTERM. Every worker
also serves the OIP v2 gRPC service (``serve.grpc_server``) on ``--grpc-port`` (else
``$MLOPS_SERVE_GRPC_PORT``, else 8081; 0 turns it off), on the same loop and batching queue.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import pathlib
import signal
import sys
import tempfile
from typing import Any

from mlops_operator.api import common
from mlops_operator.api import modeldeployment as md_api
from mlops_workloads import runtime

CAPTURE_FLUSH_SECONDS = 10.0
GRPC_PORT = 8081  # the serving container's port "grpc" (reconcile.modeldeployment_build.GRPC_PORT)
GRPC_PORT_ENV = "MLOPS_SERVE_GRPC_PORT"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlops_workloads.serve", description=__doc__)
    parser.add_argument("--model-dir", help="model directory or file:// / pvc:// URI")
    parser.add_argument("--model-name")
    parser.add_argument("--model-version")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--low-confidence-threshold", type=float)
    parser.add_argument("--max-batch-rows", type=int)
    parser.add_argument("--drift-window", type=int)
    parser.add_argument("--drain-seconds", type=float)
    parser.add_argument(
        "--no-batching", action="store_true", help="score each request with its own model call"
    )
    parser.add_argument(
        "--predict-on-loop",
        action="store_true",
        help="run model calls on the event loop, not a worker thread",
    )
    parser.add_argument("--port-file", help="write the bound port here once listening (tests)")
    parser.add_argument(
        "--grpc-port",
        type=int,
        help="OIP v2 gRPC port (default $MLOPS_SERVE_GRPC_PORT or 8081; 0: no gRPC)",
    )
    parser.add_argument("--grpc-port-file", help="write the bound gRPC port here once listening (tests)")
    parser.add_argument(
        "--capture-uri", help="capture predictions under this pvc://, file:// or s3:// directory"
    )
    parser.add_argument("--capture-sample-rate", type=float, help="share of requests captured (0..1)")
    parser.add_argument(
        "--capture-no-low-confidence",
        action="store_true",
        help="do not capture low-confidence rows (only the sample)",
    )
    parser.add_argument("--capture-roll-seconds", type=int, help="close a capture file after this long")
    parser.add_argument("--capture-queue-rows", type=int, help="rows held waiting for the writer")
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace, environ: dict[str, str]) -> md_api.ServeConfig:
    flags = {
        "model_dir": args.model_dir,
        "model_name": args.model_name,
        "model_version": args.model_version,
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "low_confidence_threshold": args.low_confidence_threshold,
        "max_batch_rows": args.max_batch_rows,
        "drift_window": args.drift_window,
        "drain_seconds": args.drain_seconds,
    }
    data = runtime.config_with_flags(md_api.ServeConfig, environ, flags)
    capture_flags = {
        "uri": args.capture_uri,
        "sample_rate": args.capture_sample_rate,
        "low_confidence": False if args.capture_no_low_confidence else None,
        "roll_seconds": args.capture_roll_seconds,
        "queue_rows": args.capture_queue_rows,
    }
    given = {k: v for k, v in capture_flags.items() if v is not None}
    if given:
        if data.get("capture") is None and "uri" not in given:
            raise runtime.WorkloadError("InvalidConfig", "the --capture-* flags need --capture-uri")
        data["capture"] = {**(data.get("capture") or {}), **given}
    return runtime.validate_config(
        md_api.ServeConfig, data, required="model_dir", hint="give --model-dir or a config with modelDir"
    )


def model_path(config: md_api.ServeConfig) -> str:
    """The model directory on this pod's disk: a mount, a local path, or an s3:// model
    downloaded into the staging directory (complete, its card present, or refused)."""
    if config.model_dir.startswith("s3://"):
        from mlops_workloads import storage

        store = storage.open_store(config.model_dir, connection=config.s3, secrets_root=config.secrets_root)
        local = pathlib.Path(config.staging_dir) / "model"
        return str(storage.fetch(store, scratch=local, marker="model_card.json"))
    if config.model_dir.startswith(("pvc://", "file://")):
        return common.StorageLocation.parse(config.model_dir).local_path(config.pvc_root)
    return config.model_dir


def _run_worker(
    config: md_api.ServeConfig,
    bundle: Any,
    sock: Any,
    *,
    batching: bool,
    offload: bool,
    port_file: str | None,
    grpc_port: int | None = None,
    grpc_reuse_port: bool = False,
    grpc_port_file: str | None = None,
) -> None:
    """Serve in this process. ``grpc_port=None``: no gRPC (imported only here, after the fork:
    grpc's threads must not exist in the parent that forks the workers)."""
    # A SIGTERM that comes while this worker starts (the pod stopped early, or the parent
    # forwarding it) is held until the loop handles it (``ready``), then drains like any: not a
    # worker killed half-started, which the parent would report as a failure.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    from mlops_workloads.serve import app as app_mod
    from mlops_workloads.serve import http

    app = app_mod.App(
        bundle,
        model_name=config.model_name,
        model_version=config.model_version,
        low_confidence_threshold=config.low_confidence_threshold,
        max_batch_rows=config.max_batch_rows,
        drift_window=config.drift_window,
        capture=config.capture,
        pvc_root=config.pvc_root,
        secrets_root=config.secrets_root,
    )
    app_mod.freeze_heap(app)
    server = http.Server(app, max_body_bytes=config.max_body_bytes, batching=batching, offload=offload)
    frontends: list[Any] = []
    if grpc_port is not None:
        from mlops_workloads.serve import grpc_server

        grpc_frontend = grpc_server.GrpcFrontend(
            config.host, grpc_port, reuse_port=grpc_reuse_port, max_message_bytes=config.max_body_bytes
        )
        frontends.append(grpc_frontend)

    def ready(port: int) -> None:
        logging.getLogger("mlops_workloads.serve").info(
            "serving %s (%s) on %s:%d", config.model_name, bundle.digest, config.host, port
        )
        if config.capture is not None:
            logging.getLogger("mlops_workloads.serve").info(
                "capturing %s low-confidence rows and %.4g%% of requests to %s/captured/",
                "the" if config.capture.low_confidence else "no",
                config.capture.sample_rate * 100,
                config.capture.uri,
            )
        if frontends:
            logging.getLogger("mlops_workloads.serve").info(
                "serving OIP v2 gRPC on %s:%d", config.host, grpc_frontend.port
            )
            if grpc_port_file:
                _write_port(grpc_port_file, grpc_frontend.port)
        if port_file:  # last: the tests wait for it, and find the gRPC port written then
            _write_port(port_file, port)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)  # serve's handlers are in place

    loop = http.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(
            http.serve(server, sock, drain_seconds=config.drain_seconds, ready=ready, frontends=frontends)
        )
    finally:
        loop.close()
        # Every answer is out; write what capture holds (within the pod's grace period).
        app.close(CAPTURE_FLUSH_SECONDS)


def _write_port(path: str, port: int | None) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(str(port))
    os.replace(tmp, path)


def grpc_port_of(flag: int | None, environ: dict[str, str]) -> int:
    """The gRPC port: ``--grpc-port``, else ``$MLOPS_SERVE_GRPC_PORT``, else 8081; 0: off."""
    text = environ.get(GRPC_PORT_ENV, "").strip()
    if flag is not None:
        value = flag
    elif text:
        try:
            value = int(text)
        except ValueError:
            raise runtime.WorkloadError("InvalidConfig", f"{GRPC_PORT_ENV}={text!r} is not a port") from None
    else:
        value = GRPC_PORT
    if not 0 <= value <= 65535:
        raise runtime.WorkloadError("InvalidConfig", f"the gRPC port must be within 0..65535, not {value}")
    return value


def run(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    args = parse_args(argv)
    env = dict(os.environ if environ is None else environ)
    config = load_config(args, env)
    grpc_port: int | None = grpc_port_of(args.grpc_port, env) or None
    if config.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Must be set before prometheus_client is imported (it picks its value class then).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mlops-serve-metrics-")
    from mlops_workloads.serve import bundle as bundle_mod
    from mlops_workloads.serve import http, inputs

    inputs.prefer_object_strings()  # before the model is loaded: see its docstring
    bundle = bundle_mod.load(model_path(config))
    from mlops_workloads.serve import app as app_mod

    app_mod.freeze_heap()  # the libraries and the model, before --workers forks
    batching = not args.no_batching
    offload = not args.predict_on_loop
    if config.workers == 1:
        sock = http.make_socket(config.host, config.port, reuse_port=False)
        _run_worker(
            config,
            bundle,
            sock,
            batching=batching,
            offload=offload,
            port_file=args.port_file,
            grpc_port=grpc_port,
            grpc_port_file=args.grpc_port_file,
        )
        return 0
    # Reserve the port (bound, not listening: it receives no connections), then fork. The
    # workers bind it again with SO_REUSEPORT, so "any free port" (0) is one port for all.
    # The gRPC port too (grpc binds with SO_REUSEPORT): one held by another program fails here.
    keeper = http.make_socket(config.host, config.port, reuse_port=True)
    port = keeper.getsockname()[1]
    grpc_keeper = None if grpc_port is None else http.make_socket(config.host, grpc_port, reuse_port=True)
    children: list[int] = []
    for index in range(config.workers):
        pid = os.fork()
        if pid == 0:
            keeper.close()
            if grpc_keeper is not None:
                grpc_keeper.close()
            sock = http.make_socket(config.host, port, reuse_port=True)
            code = 0
            try:
                _run_worker(
                    config,
                    bundle,
                    sock,
                    batching=batching,
                    offload=offload,
                    port_file=args.port_file if index == 0 else None,
                    grpc_port=grpc_port,
                    grpc_reuse_port=True,
                    grpc_port_file=args.grpc_port_file if index == 0 else None,
                )
            except BaseException:
                logging.getLogger("mlops_workloads.serve").exception("worker failed")
                code = 1
            os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    remaining = set(children)
    while remaining:
        pid, code = os.wait()
        remaining.discard(pid)
        if code != 0:
            status = 1
            forward(signal.SIGTERM, None)  # One worker died: stop the pod, the kubelet restarts it.
    return status


def main() -> int:
    return runtime.server_main(run)


if __name__ == "__main__":
    sys.exit(main())
