"""The operator with only some handlers, as a killable subprocess watching one namespace.

Tests that kill the operator mid-way (restart safety) or that must not share the session's
in-process operator start one of these with their own ``launch`` script (which handler modules
to import) and wait for its /metrics before going on.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
import urllib.request

from conftest import Cluster, free_port, wait_until


@dataclasses.dataclass
class SubprocessOperator:
    cluster: Cluster
    namespace: str
    launch: str = ""  # Python run with argv [namespace, metrics port]
    label: str = "operator"
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log_path(self) -> pathlib.Path:
        return pathlib.Path(f"/tmp/mlops-{self.label}-operator-{self.namespace}.log")

    def start(self) -> SubprocessOperator:
        port = free_port()
        env = dict(os.environ, KUBECONFIG=str(self.cluster.kubeconfig), PYTHONUNBUFFERED="1")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", self.launch, self.namespace, str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.starts += 1

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2):
                    return True
            except OSError:
                return False

        wait_until(up, timeout=60, what=f"the {self.label} operator's /metrics")
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when the node dies."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""
