"""A real MLflow tracking server for the tests, and MLflow's own client to read it back.

``mlflow server`` from PyPI (pinned in tests/mlflow/requirements.txt, installed by
tests/mlflow/install.sh into a venv of its own) on loopback, with a SQLite backend store and
artifacts served from a local directory (``--serve-artifacts``), as a team runs it. The
operator talks to it over HTTP; the tests read what landed there with ``mlflow.MlflowClient``
run from that venv (the project's .venv has no mlflow), as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import textwrap
import urllib.request
from typing import Any

from conftest import ROOT, free_port, wait_until

INSTALL = ROOT / "tests" / "mlflow" / "install.sh"


def install() -> pathlib.Path:
    """The pinned MLflow's venv (installed on first use; a few seconds' check afterwards)."""
    proc = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"tests/mlflow/install.sh failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return pathlib.Path(proc.stdout.strip().splitlines()[-1])


@dataclasses.dataclass
class MlflowServer:
    venv: pathlib.Path
    root: pathlib.Path  # the SQLite database and the artifacts live here (kept across restarts)
    port: int = dataclasses.field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> pathlib.Path:
        return self.root / "server.log"

    def start(self) -> MlflowServer:
        (self.root / "artifacts").mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(self.venv / "bin" / "mlflow"),
                    "server",
                    "--backend-store-uri",
                    f"sqlite:///{self.root / 'mlflow.db'}",
                    "--artifacts-destination",
                    str(self.root / "artifacts"),
                    "--serve-artifacts",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,  # its workers go with it on stop()
            )
        wait_until(self._healthy, timeout=180, interval=0.5, what="the MLflow server's /health")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log()
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""

    def read(self, experiment: str, registered_model: str) -> dict[str, Any]:
        """Everything the export should have made, as MLflow's own client sees it."""
        script = textwrap.dedent(
            """
            import json, sys, tempfile
            from mlflow import MlflowClient
            from mlflow.exceptions import MlflowException
            url, experiment, name = sys.argv[1:4]
            client = MlflowClient(tracking_uri=url, registry_uri=url)
            out = {"experiment": None, "runs": [], "model": None, "versions": []}
            exp = client.get_experiment_by_name(experiment)
            if exp is not None:
                out["experiment"] = {"id": exp.experiment_id, "name": exp.name, "tags": exp.tags}
                for run in client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"]):
                    files = [f.path for f in client.list_artifacts(run.info.run_id)]
                    card = None
                    if "model_card.json" in files:
                        with tempfile.TemporaryDirectory() as tmp:
                            path = client.download_artifacts(run.info.run_id, "model_card.json", tmp)
                            with open(path) as fh:
                                card = json.load(fh)
                    out["runs"].append({
                        "id": run.info.run_id, "name": run.info.run_name, "status": run.info.status,
                        "start": run.info.start_time, "end": run.info.end_time,
                        "params": run.data.params, "metrics": run.data.metrics, "tags": run.data.tags,
                        "artifacts": files, "card": card,
                    })
            try:
                model = client.get_registered_model(name)
            except MlflowException:
                model = None
            if model is not None:
                out["model"] = {"name": model.name, "description": model.description,
                                "aliases": model.aliases, "tags": model.tags}
                for v in client.search_model_versions(f"name = '{name}'"):
                    out["versions"].append({"version": v.version, "source": v.source, "run_id": v.run_id,
                                            "tags": v.tags, "aliases": list(v.aliases)})
                out["versions"].sort(key=lambda v: int(v["version"]))
            print(json.dumps(out))
            """
        )
        proc = subprocess.run(
            [str(self.venv / "bin" / "python"), "-c", script, self.url, experiment, registered_model],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(f"reading MLflow back failed: {proc.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return result

    def set_alias(self, registered_model: str, alias: str, version: str) -> None:
        """Set an alias as a person in MLflow's UI would (the mirror removes what the Model lacks)."""
        script = (
            "import sys; from mlflow import MlflowClient; "
            "MlflowClient(tracking_uri=sys.argv[1], registry_uri=sys.argv[1])"
            ".set_registered_model_alias(sys.argv[2], sys.argv[3], sys.argv[4])"
        )
        subprocess.run(
            [str(self.venv / "bin" / "python"), "-c", script, self.url, registered_model, alias, version],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
