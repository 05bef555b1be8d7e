"""spec.logging and the server's capture config: defaults, the rules (pydantic and CEL), and flags."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest

from mlops_operator.api import modeldeployment as api
from mlops_workloads import runtime
from mlops_workloads.serve import __main__ as serve_main


def spec(**logging: Any) -> dict[str, Any]:
    return {
        "model": {"storageUri": "pvc://models/iris"},
        "logging": {"storageUri": "pvc://data/cap", **logging},
    }


def test_logging_defaults_and_root() -> None:
    s = api.ModelDeploymentSpec.model_validate(spec())
    assert s.logging is not None
    assert s.logging.low_confidence is True and s.logging.sample_rate == 0.0
    assert s.logging.max_file_rows == 100_000 and s.logging.max_file_bytes == 16 << 20
    assert s.logging.roll_seconds == 60 and s.logging.queue_rows == 10_000
    assert s.logging.root_uri("ml", "iris") == "pvc://data/cap/ml/iris"
    assert api.LoggingSpec(storage_uri="s3://bucket/p").root_uri("ml", "iris") == "s3://bucket/p/ml/iris"
    assert api.ModelDeploymentSpec.model_validate({"model": {"storageUri": "pvc://m/i"}}).logging is None


@pytest.mark.parametrize(
    ("logging", "fragment"),
    [
        ({"lowConfidence": False}, "set lowConfidence: true or a sampleRate above 0"),
        ({"lowConfidence": False, "sampleRate": 0}, "set lowConfidence: true or a sampleRate above 0"),
        ({"sampleRate": 1.5}, "less than or equal to 1"),
        ({"sampleRate": -0.1}, "greater than or equal to 0"),
        ({"s3": {"endpoint": "http://s3:9000"}}, "logging.s3 only applies to an s3:// logging.storageUri"),
        ({"storageUri": "gs://bucket/x"}, "pattern"),
        ({"maxFileRows": 10}, "greater than or equal to 100"),
        ({"maxFileBytes": 1 << 31}, "less than or equal to 1073741824"),
        ({"rollSeconds": 1}, "greater than or equal to 5"),
        ({"queueRows": 5_000_000}, "less than or equal to 1000000"),
        ({"unknown": 1}, "Extra inputs"),
    ],
)
def test_invalid_logging_is_refused(logging: dict[str, Any], fragment: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=fragment):
        api.ModelDeploymentSpec.model_validate(spec(**logging))


def test_a_storage_uri_is_required() -> None:
    with pytest.raises(pydantic.ValidationError, match="storageUri"):
        api.ModelDeploymentSpec.model_validate({"model": {"storageUri": "pvc://m/i"}, "logging": {}})


def test_s3_logging_with_its_connection_is_accepted() -> None:
    s = api.ModelDeploymentSpec.model_validate(
        spec(storageUri="s3://bucket/cap", s3={"secretRef": {"name": "s3-creds"}}, sampleRate=0.1)
    )
    assert s.logging is not None and s.logging.s3 is not None and s.logging.s3.secret_ref is not None


def _rules(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.extend((path, r) for r in node.get("x-kubernetes-validations", []))
        for key, value in node.items():
            out.extend(_rules(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for value in node:
            out.extend(_rules(value, path))
    return out


def test_the_crd_carries_the_cel_rules_with_messages_naming_the_field() -> None:
    import pathlib

    import yaml

    crd = yaml.safe_load(
        (pathlib.Path(__file__).resolve().parents[2] / "crds/mlops.dev_modeldeployments.yaml").read_text()
    )
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    logging = schema["properties"]["spec"]["properties"]["logging"]
    rules = {r["rule"]: r for _, r in _rules(logging)}
    assert rules[api.CAPTURE_SOMETHING]["fieldPath"] == ".sampleRate"
    assert "lowConfidence" in rules[api.CAPTURE_SOMETHING]["message"]
    assert rules[api.CAPTURE_S3_ONLY_FOR_S3]["message"].startswith("logging.s3")
    assert logging["required"] == ["storageUri"]
    assert logging["properties"]["sampleRate"] == {
        "default": 0.0,
        "description": logging["properties"]["sampleRate"]["description"],
        "maximum": 1,
        "minimum": 0,
        "type": "number",
    }


def test_flags_build_the_capture_config() -> None:
    flags = ["--model-dir", "/m", "--capture-uri", "file:///cap", "--capture-sample-rate", "0.25"]
    flags += ["--capture-no-low-confidence", "--capture-roll-seconds", "9", "--capture-queue-rows", "500"]
    args = serve_main.parse_args(flags)
    config = serve_main.load_config(args, {})
    assert config.capture == api.CaptureConfig(
        uri="file:///cap", sample_rate=0.25, low_confidence=False, roll_seconds=9, queue_rows=500
    )
    assert serve_main.load_config(serve_main.parse_args(["--model-dir", "/m"]), {}).capture is None


def test_flags_override_the_operator_s_config_and_need_a_uri() -> None:
    env = {
        "MLOPS_CONFIG": json.dumps(
            {"modelDir": "/m", "capture": {"uri": "s3://bkt/cap", "sampleRate": 0.5, "maxFileRows": 200}}
        )
    }
    config = serve_main.load_config(serve_main.parse_args(["--capture-sample-rate", "1"]), env)
    assert config.capture is not None
    assert (config.capture.uri, config.capture.sample_rate, config.capture.max_file_rows) == (
        "s3://bkt/cap",
        1.0,
        200,
    )
    with pytest.raises(runtime.WorkloadError, match="need --capture-uri"):
        serve_main.load_config(serve_main.parse_args(["--model-dir", "/m", "--capture-sample-rate", "1"]), {})
    with pytest.raises(runtime.WorkloadError, match="less than or equal to 1"):
        serve_main.load_config(
            serve_main.parse_args(
                ["--model-dir", "/m", "--capture-uri", "file:///c", "--capture-sample-rate", "2"]
            ),
            {},
        )
