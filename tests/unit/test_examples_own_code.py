"""examples/trainingjobs/own-code.yaml carries examples/trainingjobs/own-code/train.py in its
ConfigMap: the two must say the same thing. ``python tests/unit/test_examples_own_code.py
--write`` copies the script into the YAML after an edit."""

from __future__ import annotations

import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "examples" / "trainingjobs" / "own-code.yaml"
SCRIPT = ROOT / "examples" / "trainingjobs" / "own-code" / "train.py"
KEY_LINE = "  train.py: |"


def _embedded() -> str:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    text: str = configmap["data"]["train.py"]
    return text


def test_the_configmap_holds_the_script() -> None:
    assert _embedded() == SCRIPT.read_text(), (
        f"run: python {pathlib.Path(__file__).relative_to(ROOT)} --write"
    )


def test_the_trainingjob_runs_the_mounted_script() -> None:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    trainer = next(d for d in docs if d["kind"] == "TrainingJob")["spec"]["trainer"]
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    assert trainer["codeConfigMap"] == configmap["metadata"]["name"]
    assert trainer["command"][-1] == "/opt/mlops/code/train.py"


def write() -> None:
    lines = MANIFEST.read_text().splitlines(keepends=True)
    start = lines.index(KEY_LINE + "\n") + 1
    end = start
    while end < len(lines) and (lines[end].startswith("    ") or lines[end].strip() == ""):
        end += 1
    body = ["    " + line if line.strip() else "\n" for line in SCRIPT.read_text().splitlines(keepends=True)]
    MANIFEST.write_text("".join(lines[:start] + body + lines[end:]))


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
