"""The trainer contract (``mlops_workloads.trainer``): your own code in, the same result out.

First the helper on its own (config, the ``MLOPS_PARAM_`` names, what ``report`` refuses,
ranks other than 0, the 4 KiB limit, ``fail`` and uncaught exceptions), then the example
trainer (examples/trainingjobs/own-code/train.py) run as a subprocess on a Dataset version the
real prepare pipeline wrote: its result, its per-epoch history, and a model directory the
serving code loads and whose predictions give the accuracy the script reported.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys
import types
import typing
from typing import Any

import pandas as pd
import pytest

import mlops_workloads as mw
from mlops_operator.api import dataset as dataset_api
from mlops_operator.api import rightsizing, trainingjob, workload
from mlops_workloads import trainer
from mlops_workloads.prepare import pipeline
from mlops_workloads.serve import bundle
from mlops_workloads.train import staging

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "trainingjobs" / "own-code" / "train.py"
DIGEST = "sha256:" + "ab" * 32
DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def _config(
    tmp: pathlib.Path,
    *,
    data_dir: pathlib.Path,
    with_paths: bool = True,
    target: str = "y",
    **changes: Any,
) -> trainingjob.TrainConfig:
    fields: dict[str, Any] = {
        "name": "own-mlp",
        "namespace": "team",
        "trainer": "custom",
        "image": "registry.example.com/team/train:1.0",
        "command": ["python", "/opt/mlops/code/train.py"],
        "task": "classification",
        "params": {"epochs": 3, "hidden_units": 16, "learning-rate": 0.01, "layers": [8, 4], "act": "relu"},
        "metrics": ["accuracy"],
        "objective_metric": "accuracy",
        "objective_direction": "maximize",
        "dataset_name": "rows",
        "dataset_uri": f"file://{data_dir}",
        "dataset_digest": DIGEST,
        "output_uri": f"file://{tmp / 'models'}",  # where versions are published
        "code_version": "git:1a2b3c",
        "resources": {"cpu": "2", "memory": "1Gi"},
        "output_dir": str(tmp / "model"),  # the staging directory the code writes into
    }
    if with_paths:
        fields["data"] = trainingjob.DataPaths(
            dir=str(data_dir),
            train=str(data_dir / "train.parquet"),
            validation=str(data_dir / "validation.parquet"),
            test=str(data_dir / "test.parquet"),
            preprocessor=str(data_dir / "preprocessor.skops"),
            schema_file=str(data_dir / "schema.json"),
            target=target,
        )
    fields.update(changes)
    return trainingjob.TrainConfig(**fields)


def _write_config(path: pathlib.Path, config: trainingjob.TrainConfig) -> pathlib.Path:
    path.write_text(config.model_dump_json(by_alias=True), encoding="utf-8")
    return path


@pytest.fixture
def run_env(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """A fake Dataset version, a config naming it, the env pointing at both; returns tmp_path."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "schema.json").write_text(json.dumps({"target": "y", "task": "classification", "features": []}))
    (data / "baseline.json").write_text(json.dumps({"a": {"type": "numeric"}}))
    manifest = {"digest": DIGEST, "spec": {"sources": [{"sklearn": {"name": "iris"}}]}}
    (data / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "model").mkdir()
    _write_config(tmp_path / "config.json", _config(tmp_path, data_dir=data))
    monkeypatch.setenv(workload.CONFIG_FILE_ENV, str(tmp_path / "config.json"))
    monkeypatch.setenv(workload.RESULT_PATH_ENV, str(tmp_path / "result.json"))
    monkeypatch.delenv(workload.CONFIG_ENV, raising=False)
    for name in DIST_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # config() chains its hook; restored after
    monkeypatch.setattr(trainer, "_history", trainer._History())
    return tmp_path


def _result(tmp: pathlib.Path) -> dict[str, Any]:
    text = (tmp / "result.json").read_text(encoding="utf-8")
    assert len(text.encode()) <= workload.RESULT_LIMIT
    value: dict[str, Any] = json.loads(text)
    return value


# ---------------------------------------------------------------------------------------------
# The helper on its own
# ---------------------------------------------------------------------------------------------


def test_importing_the_package_imports_no_heavy_library() -> None:
    code = (
        "import sys, mlops_workloads as mw; mw.config; "
        "print(sorted(m for m in ('torch', 'sklearn', 'pandas', 'numpy', 'pydantic', 'skops') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("name", "env"),
    [
        ("epochs", "MLOPS_PARAM_EPOCHS"),
        ("hidden_units", "MLOPS_PARAM_HIDDEN_UNITS"),
        ("learning-rate", "MLOPS_PARAM_LEARNING_RATE"),
        ("lr.init", "MLOPS_PARAM_LR_INIT"),
        ("batchSize", "MLOPS_PARAM_BATCHSIZE"),
        ("2nd stage", "MLOPS_PARAM_2ND_STAGE"),
        ("maß", "MLOPS_PARAM_MA_"),
    ],
)
def test_param_env_name(name: str, env: str) -> None:
    assert trainer.param_env_name(name) == env
    assert env.startswith(trainingjob.PARAM_ENV_PREFIX)
    assert mw.param_env_name is trainer.param_env_name


@pytest.mark.parametrize(
    ("value", "text"),
    [("relu", "relu"), (20, "20"), (0.01, "0.01"), (True, "true"), (None, "null"), ([64, 32], "[64,32]")],
)
def test_param_env_value(value: Any, text: str) -> None:
    assert trainer.param_env_value(value) == text
    assert trainer.param_env_value({"b": 1, "a": "x"}) == '{"a":"x","b":1}'


def test_config_reads_the_file_the_operator_mounts(run_env: pathlib.Path) -> None:
    cfg = mw.config()
    assert isinstance(cfg, mw.TrainerConfig)
    assert cfg.params.epochs == 3 and cfg.params["learning-rate"] == 0.01
    assert cfg.params.get("missing", 7) == 7 and dict(cfg.params)["layers"] == [8, 4]
    with pytest.raises(AttributeError, match="no param 'batch'"):
        _ = cfg.params.batch
    assert cfg.data.train == run_env / "data" / "train.parquet"
    assert cfg.data.preprocessor.name == "preprocessor.skops" and cfg.data.target == "y"
    assert cfg.data.baseline == run_env / "data" / "baseline.json"
    assert cfg.output_dir == run_env / "model" and cfg.output_uri == f"file://{run_env / 'models'}"
    assert (cfg.task, cfg.objective_metric, cfg.objective_direction) == (
        "classification",
        "accuracy",
        "maximize",
    )
    assert (cfg.rank, cfg.world_size, cfg.local_rank, cfg.is_chief) == (0, 1, 0, True)
    assert cfg.dataset_digest == DIGEST and cfg.command[0] == "python" and cfg.raw.trainer == "custom"


def test_config_derives_paths_and_ranks_when_the_config_lacks_them(
    run_env: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(run_env, data_dir=run_env / "data", with_paths=False, output_dir="", workers=4)
    monkeypatch.delenv(workload.CONFIG_FILE_ENV)
    monkeypatch.setenv(workload.CONFIG_ENV, config.model_dump_json(by_alias=True))
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    cfg = trainer.config()
    assert cfg.data.validation == run_env / "data" / "validation.parquet"
    assert cfg.data.target == "y"  # from schema.json
    assert cfg.output_dir == pathlib.Path(staging.STAGING_MODEL_DIR)  # never the output itself
    assert (cfg.rank, cfg.world_size, cfg.is_chief) == (2, 4, False)


@pytest.mark.parametrize("output_dir", ["models", "models/sub", "."])
def test_config_never_writes_into_the_output_itself(
    run_env: pathlib.Path, monkeypatch: pytest.MonkeyPatch, output_dir: str
) -> None:
    # An older operator named the output's mount as output_dir: the code gets the staging dir.
    config = _config(run_env, data_dir=run_env / "data", output_dir=str(run_env / output_dir))
    monkeypatch.delenv(workload.CONFIG_FILE_ENV)
    monkeypatch.setenv(workload.CONFIG_ENV, config.model_dump_json(by_alias=True))
    assert trainer.config().output_dir == pathlib.Path(staging.STAGING_MODEL_DIR)


def test_config_without_a_config_fails_permanently(
    run_env: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(workload.CONFIG_FILE_ENV)
    with pytest.raises(SystemExit) as exit_:
        trainer.config()
    assert exit_.value.code == workload.PERMANENT_EXIT_CODE
    result = _result(run_env)
    assert (result["ok"], result["reason"]) == (False, "MissingConfig")
    assert workload.CONFIG_FILE_ENV in result["error"]


def test_config_refuses_a_dataset_version_other_than_the_pinned_one(run_env: pathlib.Path) -> None:
    (run_env / "data" / "manifest.json").write_text(json.dumps({"digest": "sha256:other"}))
    with pytest.raises(SystemExit) as exit_:
        trainer.config()
    assert exit_.value.code == workload.PERMANENT_EXIT_CODE
    assert _result(run_env)["reason"] == "DatasetDigestMismatch"


def test_report_writes_the_result_card_schema_and_baseline(run_env: pathlib.Path) -> None:
    (run_env / "model" / "weights.bin").write_bytes(b"my model")
    for epoch in (1, 2, 3):
        mw.log_epoch(epoch, loss=1.0 / epoch, accuracy=0.8 + epoch / 100)
    result = mw.report({"accuracy": 0.91, "f1": 0.9}, note="hello")  # flat: validation
    assert result == _result(run_env)
    assert result["ok"] is True and result["metrics"] == {"validation": {"accuracy": 0.91, "f1": 0.9}}
    assert (result["objectiveMetric"], result["objectiveValue"]) == ("accuracy", 0.91)
    # Published as a version of the output: <output_uri>/<version>, the staging dir's files.
    version = result["modelVersion"]
    out = run_env / "models" / version
    assert len(version) == 16 and [p.name for p in (run_env / "models").iterdir()] == [version]
    assert result["modelUri"] == f"file://{out}" and result["datasetDigest"] == DIGEST
    assert {p.name for p in out.iterdir()} == {
        "weights.bin",
        "schema.json",
        "baseline.json",
        "history.jsonl",
        "model_card.json",
    }
    assert (result["epochs"], result["rank"], result["worldSize"], result["device"]) == (3, 0, 1, "cpu")
    assert result["note"] == "hello" and result["durationSeconds"] > 0
    assert any("no model.skops" in w for w in result["warnings"])
    card = json.loads((out / "model_card.json").read_text())
    assert card["trainer"] == "custom" and card["image"] == "registry.example.com/team/train:1.0"
    assert card["params"]["epochs"] == 3 and card["dataset"] == {
        "name": "rows",
        "uri": f"file://{run_env / 'data'}",
        "digest": DIGEST,
        "preparation": {"sources": [{"sklearn": {"name": "iris"}}]},  # manifest.json's spec
    }
    assert card["version"] == version and card["modelUri"] == result["modelUri"]
    assert card["codeVersion"] == "git:1a2b3c" and card["device"] == "cpu"
    assert card["resources"]["requested"] == {"cpu": "2", "memory": "1Gi", "gpu": 0}
    used = card["resources"]["used"]
    assert used["peakMemoryBytes"] > 10 * 2**20 and used["cpuSeconds"] > 0 and used["cpuCores"] > 0
    assert used["source"] in {"rusage", "cgroup2", "cgroup1", "cgroup2+rusage", "cgroup1+rusage"}
    assert "gpuUtilizationMean" not in used and "gpuPeakMemoryBytes" not in used  # no GPU measured
    # The result carries the same measure (added for the code); the card adds the suggestion.
    assert result["resourcesUsed"] == used
    assert card["resources"]["suggested"] == rightsizing.suggest(used, gpu=0)
    assert card["resources"]["suggested"]["gpu"] == 0
    assert card["history"] == f"{result['modelUri']}/history.jsonl"
    assert card["objective"] == {"metric": "accuracy", "direction": "maximize", "value": 0.91}
    assert card["worldSize"] == 1 and card["epochs"] == 3 and card["createdAt"].endswith("Z")
    assert json.loads((out / "schema.json").read_text())["target"] == "y"
    assert (out / "baseline.json").read_bytes() == (run_env / "data" / "baseline.json").read_bytes()
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3] and history[0]["metrics"]["loss"] == 1.0


def test_report_keeps_what_the_code_wrote_and_reports_a_subdirectory(run_env: pathlib.Path) -> None:
    sub = run_env / "model" / "final"
    sub.mkdir()
    (sub / "model_card.json").write_text('{"mine": true}')
    (sub / "weights.bin").write_bytes(b"final weights")
    result = mw.report(
        {"validation": {"accuracy": 0.5}, "test": {"accuracy": 0.4}, "train": {"accuracy": 0.9}},
        model_dir=sub,
        epochs=7,
        device="cuda:0 (NVIDIA H200)",
    )
    assert result["modelUri"] == f"file://{run_env / 'models'}/{result['modelVersion']}/final"
    published = run_env / "models" / result["modelVersion"] / "final"
    assert json.loads((published / "model_card.json").read_text()) == {"mine": True}
    assert (published / "weights.bin").read_bytes() == b"final weights"
    assert result["metrics"] == {"validation": {"accuracy": 0.5}, "test": {"accuracy": 0.4}}  # no train
    assert (result["epochs"], result["device"]) == (7, "cuda:0 (NVIDIA H200)")
    assert json.loads((sub / "model_card.json").read_text()) == {"mine": True}
    assert (sub / "schema.json").is_file()


@pytest.mark.parametrize(
    ("metrics", "kwargs", "match"),
    [
        ({"accuracy": math.nan}, {}, "finite"),
        ({"accuracy": math.inf}, {}, "finite"),
        ({"accuracy": True}, {}, "must be a number"),
        ({"accuracy": "0.9"}, {}, "must be a number"),
        ({"accuracy": 0.9, "val loss": 0.1}, {}, "metric name 'val loss'"),
        ({"accuracy": 0.9, "_x": 0.1}, {}, "metric name '_x'"),
        ({"validation": {"accuracy": 0.9}, "holdout": {"accuracy": 0.9}}, {}, "unknown split 'holdout'"),
        ({"validation": {"accuracy": 0.9}, "loss": 0.2}, {}, "mixes splits and numbers"),
        ({"f1": 0.9}, {}, "objective metric 'accuracy'"),
        ({"validation": {"f1": 0.9}, "test": {"accuracy": 0.9}}, {}, "objective metric 'accuracy'"),
        ({f"m{i}": 0.1 for i in range(17)} | {"accuracy": 0.9}, {}, "at most 16"),
        ({"accuracy": 0.9}, {"modelUri": "s3://x"}, "extra result key 'modelUri'"),
        ({"accuracy": 0.9}, {"Bad_key": 1}, "extra result key 'Bad_key'"),
        ({"accuracy": 0.9}, {"blob": object()}, "not a JSON value"),
        ({"accuracy": 0.9}, {"epochs": -1}, "epochs must be"),
        ({"accuracy": 0.9}, {"model_dir": "/"}, "outside output_dir"),
        ({"accuracy": 0.9}, {"model_dir": "/nonexistent/model"}, "does not exist"),
    ],
)
def test_report_refuses_what_breaks_the_contract(
    run_env: pathlib.Path, metrics: dict[str, Any], kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(mw.ReportError, match=match):
        mw.report(metrics, **kwargs)
    assert not (run_env / "result.json").exists()
    assert not (run_env / "model" / "model_card.json").exists()


def test_report_takes_numpy_and_tensor_numbers_and_falls_back_to_test_without_validation(
    run_env: pathlib.Path,
) -> None:
    import numpy as np

    torch = pytest.importorskip("torch")
    with pytest.raises(mw.ReportError, match="must be one number"):
        mw.log_epoch(1, loss=torch.ones(3))
    mw.log_epoch(1, loss=torch.tensor(0.5), accuracy=np.float32(0.25))
    test: dict[str, typing.SupportsFloat] = {
        "accuracy": np.float32(0.75),
        "n": np.int64(3),
        "t": torch.tensor(2),
    }
    result = mw.report({"test": test})
    assert result["objectiveValue"] == 0.75 and result["metrics"]["test"] == {
        "accuracy": 0.75,
        "n": 3.0,
        "t": 2.0,
    }
    assert any("test split" in w for w in result["warnings"]) and result["epochs"] == 1
    assert result["device"] == "cpu"  # torch is imported but CUDA was never initialised


def test_other_ranks_write_a_small_result_and_touch_no_file(
    run_env: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    mw.log_epoch(1, loss=0.5)
    result = mw.report({"whatever": math.nan}, epochs=1)  # not validated: rank 0 speaks for the run
    assert result == _result(run_env)
    assert set(result) == {"ok", "rank", "worldSize", "device", "durationSeconds", "resourcesUsed"}
    assert (result["ok"], result["rank"], result["worldSize"]) == (True, 1, 2)
    assert list((run_env / "model").iterdir()) == []


def test_a_pods_second_process_leaves_the_termination_message_to_the_first(
    run_env: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    mw.report({"accuracy": 0.9})
    assert not (run_env / "result.json").exists()
    assert '"rank":1' in capsys.readouterr().out


def test_the_result_fits_4_kib_with_the_most_metrics_allowed(run_env: pathlib.Path) -> None:
    names = [f"m{i:02d}_" + "x" * 59 for i in range(15)] + ["accuracy"]
    splits = {s: {n: 1 / 3 + i for i, n in enumerate(names)} for s in ("validation", "test")}
    result = mw.report(splits, warnings=["w" * 300] * 20, big="y" * 3000, small=1)
    text = (run_env / "result.json").read_text()
    assert len(text.encode()) <= workload.RESULT_LIMIT
    assert json.loads(text) == result and result["metrics"] == splits  # every metric kept
    assert result["truncated"] is True and "big" not in result
    card = json.loads((run_env / "model" / "model_card.json").read_text())
    assert card["big"] == "y" * 3000 and len(card["warnings"]) == 21  # the card keeps everything


@pytest.mark.parametrize(("permanent", "code"), [(True, workload.PERMANENT_EXIT_CODE), (False, 1)])
def test_fail_writes_the_reason_and_exits(run_env: pathlib.Path, permanent: bool, code: int) -> None:
    with pytest.raises(SystemExit) as exit_:
        mw.fail("DataTooSmall", "need 100 rows, got 3", permanent=permanent)
    assert exit_.value.code == code
    assert _result(run_env) == {
        "ok": False,
        "reason": "DataTooSmall",
        "error": "need 100 rows, got 3",
        "rank": 0,
    }


@pytest.mark.parametrize(
    ("reason", "written"),
    [
        ("out of memory", "OutOfMemory"),
        ("cuda-error", "CudaError"),
        ("42", "TrainerFailed"),
        ("", "TrainerFailed"),
    ],
)
def test_fail_makes_a_reason_one_camel_case_word(run_env: pathlib.Path, reason: str, written: str) -> None:
    with pytest.raises(SystemExit):
        trainer.fail(reason, "x" * 5000)
    result = _result(run_env)
    assert result["reason"] == written and len(result["error"]) == trainer.MAX_ERROR


def test_log_epoch_rewrites_a_previous_attempts_later_epochs(run_env: pathlib.Path) -> None:
    history = run_env / "model" / "history.jsonl"
    history.write_text(
        "".join(json.dumps({"epoch": e, "metrics": {"loss": 9.0}}) + "\n" for e in range(1, 6))
    )
    mw.log_epoch(3, loss=0.3, diverged=math.nan)  # a retried pod resumed from epoch 2's checkpoint
    mw.log_epoch(4, loss=0.2)
    lines = [json.loads(line) for line in history.read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3, 4]
    assert lines[2]["metrics"] == {"loss": 0.3, "diverged": None} and lines[3]["metrics"]["loss"] == 0.2
    with pytest.raises(mw.ReportError):
        mw.log_epoch(0, loss=1.0)
    with pytest.raises(mw.ReportError):
        mw.log_epoch(5, **{"bad name": 1.0})


def test_an_uncaught_exception_is_reported_with_its_reason(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = _write_config(tmp_path / "config.json", _config(tmp_path, data_dir=data))
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    env |= {workload.CONFIG_FILE_ENV: str(config), workload.RESULT_PATH_ENV: str(tmp_path / "result.json")}
    code = "import mlops_workloads as mw; mw.config(); raise KeyError('column y')"
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and "KeyError" in done.stderr  # the traceback is still printed
    assert _result(tmp_path) == {
        "ok": False,
        "reason": "TrainerError",
        "error": "KeyError: 'column y'",
        "rank": 0,
    }


def test_device_names_what_torch_would_use() -> None:
    name = mw.device()
    assert name == "cpu" or (name.startswith("cuda:") and name.endswith(")"))
    assert trainer._used_device() in {"cpu", name}


def test_report_names_the_gpu_the_code_initialised(
    run_env: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cuda = types.SimpleNamespace(
        is_available=lambda: True,
        device_count=lambda: 2,
        is_initialized=lambda: True,
        current_device=lambda: 1,
        get_device_name=lambda index: f"NVIDIA H200 #{index}",
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert mw.device() == "cuda:0 (NVIDIA H200 #0)"  # LOCAL_RANK's GPU
    assert mw.report({"accuracy": 0.9})["device"] == "cuda:1 (NVIDIA H200 #1)"  # the one it used
    cuda.is_initialized = lambda: False
    assert mw.report({"accuracy": 0.9})["device"] == "cpu"


# ---------------------------------------------------------------------------------------------
# The example trainer, end to end on a Dataset version the real prepare pipeline wrote
# ---------------------------------------------------------------------------------------------


def _prepare(tmp: pathlib.Path, name: str) -> dict[str, Any]:
    spec = dataset_api.DatasetSpec.model_validate(
        {"storage": f"file://{tmp}/datasets/{name}", "sources": [{"sklearn": {"name": name}}]}
    )
    prepared: dict[str, Any] = pipeline.prepare(
        dataset_api.PrepareConfig(dataset=name, spec=spec), scratch_dir=str(tmp)
    )
    return prepared


def _run_example(
    tmp: pathlib.Path, prepared: dict[str, Any], *, script: pathlib.Path = EXAMPLE, **changes: Any
) -> tuple[subprocess.CompletedProcess[str], trainingjob.TrainConfig]:
    version = pathlib.Path(prepared["storageUri"].removeprefix("file://"))
    config = _config(
        tmp, data_dir=version, dataset_digest=prepared["digest"], target=prepared["target"], **changes
    )
    _write_config(tmp / "config.json", config)
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV and k != workload.CONFIG_ENV}
    env |= {
        workload.CONFIG_FILE_ENV: str(tmp / "config.json"),
        workload.RESULT_PATH_ENV: str(tmp / "result.json"),
    }
    done = subprocess.run(
        [sys.executable, str(script)], check=False, env=env, capture_output=True, text=True, timeout=300
    )
    return done, config


def test_the_example_trainer_end_to_end(tmp_path: pathlib.Path) -> None:
    prepared = _prepare(tmp_path, "breast_cancer")
    params = {"epochs": 20, "hidden_units": 32, "alpha": 1e-4, "learning_rate_init": 0.01}
    done, config = _run_example(tmp_path, prepared, params=params, metrics=["accuracy"])
    assert done.returncode == 0, done.stderr
    result = _result(tmp_path)
    assert result["ok"] is True and result["epochs"] == 20 and result["device"] == "cpu"
    assert result["metrics"]["validation"]["accuracy"] >= 0.9
    assert result["objectiveValue"] == result["metrics"]["validation"]["accuracy"]
    assert result["datasetDigest"] == prepared["digest"]
    assert result["modelUri"] == f"{config.output_uri}/{result['modelVersion']}"
    assert result["warnings"] == [] and result["estimator"] == "MLPClassifier"

    out = pathlib.Path(result["modelUri"].removeprefix("file://"))
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == list(range(1, 21))
    assert {"loss", "accuracy", "f1_macro"} <= set(history[-1]["metrics"])
    assert history[-1]["metrics"]["loss"] < history[0]["metrics"]["loss"]

    model = bundle.load(out)  # as the serving workload loads a model directory: allowlisted types only
    assert model.task == "classification" and model.card["trainer"] == "custom"
    assert model.card["dataset"]["digest"] == prepared["digest"] and model.card["epochs"] == 20
    test = pd.read_parquet(pathlib.Path(prepared["storageUri"].removeprefix("file://")) / "test.parquet")
    x = test[list(model.schema.names)]
    accuracy = float((model.pipeline.predict(x) == test[prepared["target"]].to_numpy()).mean())
    assert accuracy == pytest.approx(result["metrics"]["test"]["accuracy"], abs=1e-12)


def test_the_example_trainer_regresses_too(tmp_path: pathlib.Path) -> None:
    prepared = _prepare(tmp_path, "diabetes")
    done, _ = _run_example(
        tmp_path,
        prepared,
        task="regression",
        params={"epochs": 5, "hidden_units": 16, "learning_rate_init": 0.05},
        metrics=["rmse"],
        objective_metric="rmse",
        objective_direction="minimize",
    )
    assert done.returncode == 0, done.stderr
    result = _result(tmp_path)
    assert result["ok"] is True and result["epochs"] == 5 and result["objectiveMetric"] == "rmse"
    assert set(result["metrics"]["test"]) == {"rmse", "mae", "r2"}
    model = bundle.load(pathlib.Path(result["modelUri"].removeprefix("file://")))
    assert model.task == "regression" and model.classes is None


def test_the_readme_example_runs(tmp_path: pathlib.Path) -> None:
    readme = (ROOT / "workloads" / "mlops_workloads" / "README.md").read_text(encoding="utf-8")
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "example.py").write_text(code, encoding="utf-8")
    prepared = _prepare(tmp_path, "breast_cancer")
    done, _ = _run_example(tmp_path, prepared, script=tmp_path / "example.py", params={"epochs": 5})
    assert done.returncode == 0, done.stderr
    result = _result(tmp_path)
    assert result["ok"] is True and result["epochs"] == 5 and result["warnings"] == []  # servable
    assert bundle.load(pathlib.Path(result["modelUri"].removeprefix("file://"))).task == "classification"


def test_the_example_trainer_fails_on_an_objective_it_does_not_report(tmp_path: pathlib.Path) -> None:
    prepared = _prepare(tmp_path, "iris")
    done, _ = _run_example(tmp_path, prepared, params={"epochs": 1}, objective_metric="roc_auc")
    assert done.returncode == 1
    result = _result(tmp_path)
    assert result["ok"] is False and result["reason"] == "InvalidReport"
    assert "roc_auc" in result["error"]
