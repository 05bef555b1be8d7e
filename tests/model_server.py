"""A real model server process (``python -m mlops_workloads.serve``) for tests: started on a
free port on 127.0.0.1, waited for, and stopped with SIGTERM (its drain path) afterwards."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator


@contextlib.contextmanager
def running(
    model_dir: pathlib.Path, tmp: pathlib.Path, *args: str, max_batch_rows: int = 100
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port_file = tmp / f"port-{time.monotonic_ns()}"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"MLOPS_CONFIG", "MLOPS_CONFIG_FILE", "PROMETHEUS_MULTIPROC_DIR"}
    }
    proc = subprocess.Popen(
        [
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
            "0",
            "--port-file",
            str(port_file),
            "--max-batch-rows",
            str(max_batch_rows),
            # No gRPC unless a test asks (its own --grpc-port in args): the default 8081 is one
            # port for all, and tests run side by side.
            "--grpc-port",
            "0",
            *args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start: {proc.communicate()[0].decode()[-2000:]}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port_file.read_text()}", proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
