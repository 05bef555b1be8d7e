"""Set up and start the servers we compare against, each in its own venv under /tmp/bench-venvs/.

MLServer (with mlserver-sklearn) and KServe's Python server (``kserve`` package) pin
dependencies that conflict with ours, so each gets its own virtual environment, created on
first use with ``python -m venv`` + pip (the same scikit-learn version as ours, so they load
the same fitted Pipeline). Both are given the SAME model: the Pipeline from our skops file,
written as the joblib file their sklearn runtimes load.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

VENV_ROOT = pathlib.Path(os.environ.get("BENCH_VENVS", "/tmp/bench-venvs"))


def _sklearn_pin() -> str:
    import sklearn

    return f"scikit-learn=={sklearn.__version__}"


PACKAGES = {
    # uvloop 0.22 made get_event_loop() raise without a loop, which MLServer 1.7's workers call.
    "mlserver": ["mlserver", "mlserver-sklearn", "pandas", "uvloop<0.22"],
    "kserve": ["kserve", "pandas"],
}


def venv(name: str) -> pathlib.Path:
    """The venv's python, created (and its packages installed) when missing."""
    root = VENV_ROOT / name
    python = root / "bin" / "python"
    marker = root / ".bench-ready"
    if marker.exists():
        return python
    print(f"[setup] creating {root} (pip install {' '.join(PACKAGES[name])})", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES[name], _sklearn_pin()], check=True)
    marker.write_text("ok\n", encoding="utf-8")
    return python


def export_joblib(model_dir: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    """Our Pipeline as the joblib file MLServer's and KServe's sklearn runtimes load."""
    import joblib

    from mlops_workloads.serve import bundle

    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.joblib"
    joblib.dump(bundle.load(model_dir).pipeline, path)
    return path


def mlserver_command(
    model_path: pathlib.Path,
    workdir: pathlib.Path,
    *,
    port: int,
    grpc_port: int,
    metrics_port: int,
    parallel_workers: int,
) -> list[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "settings.json").write_text(
        json.dumps(
            {
                "http_port": port,
                "grpc_port": grpc_port,
                "metrics_port": metrics_port,
                "parallel_workers": parallel_workers,
                "debug": False,
            }
        ),
        encoding="utf-8",
    )
    (workdir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "iris",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": str(model_path), "version": "v1"},
            }
        ),
        encoding="utf-8",
    )
    python = venv("mlserver")
    return [str(python.parent / "mlserver"), "start", str(workdir)]


KSERVE_SERVER = textwrap.dedent('''
    """A kserve.Model serving a joblib sklearn Pipeline (what kserve's sklearnserver does)."""
    import sys

    import joblib
    import kserve
    import pandas as pd


    class SKLearnModel(kserve.Model):
        def __init__(self, name, path):
            super().__init__(name)
            self.path = path
            self.model = None

        def load(self):
            self.model = joblib.load(self.path)
            self.ready = True
            return self.ready

        def predict(self, payload, headers=None, response_headers=None):
            instances = payload["instances"]
            frame = pd.DataFrame(instances) if isinstance(instances[0], dict) else pd.DataFrame(
                instances, columns=list(self.model.feature_names_in_))
            return {"predictions": self.model.predict(frame).tolist()}


    if __name__ == "__main__":
        model = SKLearnModel("iris", sys.argv[1])
        model.load()
        kserve.ModelServer(http_port=int(sys.argv[2]), grpc_port=int(sys.argv[3]), workers=1,
                           enable_grpc=False, enable_latency_logging=False).start([model])
''')


def kserve_command(
    model_path: pathlib.Path, workdir: pathlib.Path, *, port: int, grpc_port: int
) -> list[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "kserve_server.py"
    script.write_text(KSERVE_SERVER, encoding="utf-8")
    return [str(venv("kserve")), str(script), str(model_path), str(port), str(grpc_port)]
