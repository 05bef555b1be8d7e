"""Immutable model versions: every run publishes ``<output>/<version>/``, never over an older one.

The version is a SHA-256 of the model's files (not the card or the history, which hold
timestamps); a local mount gets it whole by one rename, an existing version is never touched.
The built-in trainer, your own code's ``report()`` and the operator's config and status are
each checked against a file:// output (the S3 side is tests/integration/test_storage_s3.py).
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
from typing import Any

import _train_data
import pytest

from mlops_operator.api import rightsizing, trainingjob, workload
from mlops_operator.reconcile import trainingjob_build as build
from mlops_operator.reconcile import workload as rworkload
from mlops_workloads import runtime, trainer
from mlops_workloads.train import card as card_mod
from mlops_workloads.train import run, staging

SETTINGS = rworkload.WorkloadSettings()


def _tj(params: dict[str, Any], *, out: pathlib.Path, annotations: dict[str, str] | None = None) -> Any:
    return trainingjob.TrainingJob.from_body(
        {
            "metadata": {"name": "rf", "namespace": "team", "annotations": annotations or {}},
            "spec": {
                "datasetRef": {"name": "iris"},
                "model": {"estimator": "RandomForestClassifier", "params": params},
                "metrics": ["accuracy"],
                "resources": {"cpu": "1", "memory": "2Gi"},
                "output": {"storageUri": f"file://{out}"},
            },
        }
    )


def _config(data_dir: pathlib.Path, tj: Any, staging_dir: pathlib.Path) -> trainingjob.TrainConfig:
    digest = json.loads((data_dir / "manifest.json").read_text())["digest"]
    config = build.train_config(
        tj, dataset_uri=f"file://{data_dir}", dataset_digest=digest, settings=SETTINGS
    )
    return _train_data.staged(config, staging_dir)


def _snapshot(folder: pathlib.Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and its mtime (ns)."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    folder = _train_data.make_prepared(tmp_path_factory.mktemp("datasets"), "iris")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["spec"] = {"sources": [{"sklearn": {"name": "iris"}}], "split": {"test": 0.2}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


# -- the built-in trainer ------------------------------------------------------------------------


def test_an_edited_rerun_adds_a_version_and_leaves_the_first_byte_identical(
    iris: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "models"
    first = run.train(_config(iris, _tj({"n_estimators": 3}, out=out), tmp_path / "s1"))
    v1 = _train_data.model_dir(first)
    assert first["modelUri"] == f"file://{out}/{first['modelVersion']}"
    before = _snapshot(v1)
    assert set(before) == {"model.skops", "schema.json", "baseline.json", "model_card.json"}

    second = run.train(_config(iris, _tj({"n_estimators": 7}, out=out), tmp_path / "s2"))
    v2 = _train_data.model_dir(second)
    assert second["modelVersion"] != first["modelVersion"]
    assert sorted(p.name for p in out.iterdir()) == sorted([v1.name, v2.name])  # no partials left
    assert _snapshot(v1) == before
    card = json.loads((v2 / "model_card.json").read_text())
    assert card["params"]["n_estimators"] == 7 and card["version"] == second["modelVersion"]


def test_the_card_records_the_lineage(iris: pathlib.Path, tmp_path: pathlib.Path) -> None:
    tj = _tj({"n_estimators": 3}, out=tmp_path / "models", annotations={"mlops.dev/code-version": "v1.2.3"})
    result = run.train(_config(iris, tj, tmp_path / "staging"))
    card = json.loads((_train_data.model_dir(result) / "model_card.json").read_text())
    manifest = json.loads((iris / "manifest.json").read_text())
    assert card["version"] == result["modelVersion"] and card["modelUri"] == result["modelUri"]
    assert card["codeVersion"] == "v1.2.3" and card["image"] == SETTINGS.workload_image
    assert card["dataset"] == {
        "name": "iris",
        "uri": f"file://{iris}",
        "digest": manifest["digest"],
        "preparation": manifest["spec"],
    }
    assert card["params"]["n_estimators"] == 3 and card["specParams"] == {"n_estimators": 3}
    assert set(card["metrics"]) == {"validation", "test"} and card["device"] == "cpu"
    assert card["durationSeconds"] > 0
    assert card["resources"]["requested"] == {"cpu": "1", "memory": "2Gi", "gpu": 0}
    used = card["resources"]["used"]
    assert used["peakMemoryBytes"] > 50 * 2**20 and used["cpuSeconds"] > 0
    assert result["resourcesUsed"] == used  # one measure for the card and the result
    assert card["resources"]["suggested"] == rightsizing.suggest(used, gpu=0)
    # Existing keys stay.
    assert {"estimator", "libraries", "hardware", "createdAt", "modelSizeBytes", "rows"} <= set(card)


def test_without_a_code_version_the_card_names_the_image(iris: pathlib.Path, tmp_path: pathlib.Path) -> None:
    result = run.train(_config(iris, _tj({"n_estimators": 2}, out=tmp_path / "m"), tmp_path / "s"))
    card = json.loads((_train_data.model_dir(result) / "model_card.json").read_text())
    assert card["codeVersion"] == card["image"] == SETTINGS.workload_image


# -- publishing ----------------------------------------------------------------------------------


def _staged_model(folder: pathlib.Path, model: bytes) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.skops").write_bytes(model)
    (folder / "schema.json").write_text('{"target": "y"}')
    card_mod.write_card(folder / card_mod.CARD_FILE, {"createdAt": card_mod.created_at()})
    return folder


def _file_config(out: pathlib.Path) -> trainingjob.TrainConfig:
    return trainingjob.TrainConfig(
        name="x",
        task="classification",
        metrics=["accuracy"],
        objective_metric="accuracy",
        objective_direction="maximize",
        dataset_uri="file:///nowhere",
        output_uri=f"file://{out}",
    )


def test_the_same_model_bytes_publish_one_version_untouched_the_second_time(tmp_path: pathlib.Path) -> None:
    config = _file_config(tmp_path / "models")
    first = staging.publish(config, _staged_model(tmp_path / "a", b"weights"))
    assert not first.existed and first.uri == f"file://{tmp_path}/models/{first.version}"
    before = _snapshot(tmp_path / "models" / first.version)

    again = _staged_model(tmp_path / "b", b"weights")
    card_mod.write_card(again / card_mod.CARD_FILE, {"another": "card"})  # cards do not count
    (again / card_mod.HISTORY_FILE).write_text('{"epoch": 1}\n')  # nor does the history
    second = staging.publish(config, again)
    assert second == staging.Published(version=first.version, uri=first.uri, existed=True)
    assert _snapshot(tmp_path / "models" / first.version) == before
    assert [p.name for p in (tmp_path / "models").iterdir()] == [first.version]

    third = staging.publish(config, _staged_model(tmp_path / "c", b"weights, retrained"))
    assert not third.existed and third.version != first.version


def test_the_version_id_is_the_model_files_bytes_and_names(tmp_path: pathlib.Path) -> None:
    a = _staged_model(tmp_path / "a", b"w")
    version = card_mod.version_id(a)
    assert len(version) == card_mod.VERSION_LENGTH and int(version, 16) >= 0
    (a / ".model.skops.tmp123").write_bytes(b"a leftover temporary file")
    assert card_mod.version_id(a) == version
    (a / "schema.json").write_text('{"target": "z"}')
    assert card_mod.version_id(a) != version  # what serving reads counts
    b = _staged_model(tmp_path / "b", b"w")
    (b / "model.skops").rename(b / "model2.skops")
    assert card_mod.version_id(b) != version  # names count too
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no model files"):
        card_mod.version_id(empty)


def test_a_half_published_version_is_never_visible(tmp_path: pathlib.Path, monkeypatch: Any) -> None:
    config = _file_config(tmp_path / "models")
    folder = _staged_model(tmp_path / "a", b"weights")
    version = card_mod.version_id(folder)

    def broken(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(runtime.WorkloadError) as info:
        staging.publish(config, folder)
    assert info.value.reason == "OutputNotWritable" and version in info.value.message
    assert list((tmp_path / "models").iterdir()) == []  # the partial copy is gone, no version appeared
    monkeypatch.undo()

    # A directory without its card (written by hand, or by something else) is no version: set aside.
    stray = tmp_path / "models" / version
    stray.mkdir()
    (stray / "model.skops").write_bytes(b"half")
    published = staging.publish(config, folder)
    assert not published.existed and (stray / "model.skops").read_bytes() == b"weights"
    aside = [p.name for p in (tmp_path / "models").iterdir() if p.name != version]
    assert len(aside) == 1 and aside[0].startswith(f".{version}.incomplete-")


def test_publish_needs_the_marker(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "model.skops").write_bytes(b"w")
    with pytest.raises(runtime.WorkloadError) as info:
        staging.publish(_file_config(tmp_path / "models"), folder)
    assert info.value.reason == "OutputIncomplete"
    assert not (tmp_path / "models").exists()


def test_an_old_unversioned_model_in_the_output_stays(tmp_path: pathlib.Path) -> None:
    out = _staged_model(tmp_path / "models", b"old model, written before versions")
    before = _snapshot(out)
    published = staging.publish(_file_config(out), _staged_model(tmp_path / "a", b"new"))
    assert {k: v for k, v in _snapshot(out).items() if "/" not in k} == before
    assert (out / published.version / "model.skops").read_bytes() == b"new"


# -- your own code -------------------------------------------------------------------------------


@pytest.fixture
def own_code(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> trainingjob.TrainConfig:
    data = tmp_path / "data"
    data.mkdir()
    (data / "schema.json").write_text(json.dumps({"target": "y"}))
    (data / "manifest.json").write_text(json.dumps({"digest": "sha256:" + "c" * 64}))
    config = trainingjob.TrainConfig(
        name="own",
        trainer="custom",
        task="classification",
        metrics=["accuracy"],
        objective_metric="accuracy",
        objective_direction="maximize",
        dataset_uri=f"file://{data}",
        output_uri=f"file://{tmp_path / 'models'}",
        output_dir=str(tmp_path / "staging"),
    )
    monkeypatch.setenv(workload.CONFIG_ENV, config.model_dump_json(by_alias=True))
    monkeypatch.setenv(workload.RESULT_PATH_ENV, str(tmp_path / "result.json"))
    monkeypatch.delenv(workload.CONFIG_FILE_ENV, raising=False)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # config() chains its hook; restored after
    monkeypatch.setattr(trainer, "_history", trainer._History())
    (tmp_path / "staging").mkdir()
    return config


def test_report_publishes_your_model_as_a_version(
    own_code: trainingjob.TrainConfig, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = trainer.config()
    (cfg.output_dir / "weights.pt").write_bytes(b"v1")
    first = trainer.report({"accuracy": 0.8})
    version = first["modelVersion"]
    published = tmp_path / "models" / version
    assert first["modelUri"] == f"file://{published}"
    assert json.loads((tmp_path / "result.json").read_text())["modelVersion"] == version
    assert (published / "weights.pt").read_bytes() == b"v1"
    card = json.loads((published / "model_card.json").read_text())
    assert (
        card["version"] == version and card["codeVersion"] is None and card["dataset"]["preparation"] is None
    )
    before = _snapshot(published)

    # The same bytes again (a retried pod): one version, kept as it was.
    (cfg.output_dir / "model_card.json").unlink()
    again = trainer.report({"accuracy": 0.81})
    assert again["modelVersion"] == version and _snapshot(published) == before
    assert "published before" in capsys.readouterr().out

    # Other bytes: a second version; the first is untouched.
    (cfg.output_dir / "weights.pt").write_bytes(b"v2")
    (cfg.output_dir / "model_card.json").unlink()
    third = trainer.report({"accuracy": 0.9})
    assert third["modelVersion"] != version and _snapshot(published) == before
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == sorted([version, third["modelVersion"]])


def test_extra_keys_cannot_claim_the_version(own_code: trainingjob.TrainConfig) -> None:
    (pathlib.Path(own_code.output_dir) / "weights.pt").write_bytes(b"v1")
    with pytest.raises(trainer.ReportError, match="modelVersion"):
        trainer.report({"accuracy": 0.8}, modelVersion="mine")


# -- the operator --------------------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["pvc://data/models/x", "file:///srv/models/x", "s3://bucket/models/x"])
def test_the_trainer_always_writes_into_the_staging_directory(uri: str) -> None:
    tj = trainingjob.TrainingJob.from_body(
        {
            "metadata": {"name": "rf", "namespace": "team", "annotations": {"mlops.dev/code-version": "abc"}},
            "spec": {
                "datasetRef": {"name": "iris"},
                "model": {"estimator": "RandomForestClassifier"},
                "resources": {"cpu": "500m", "gpu": 0},
                "output": {"storageUri": uri},
            },
        }
    )
    config = build.train_config(
        tj, dataset_uri="pvc://data/datasets/iris/abc", dataset_digest="", settings=SETTINGS
    )
    assert config.output_dir == f"{workload.STAGING_DIR}/model" == staging.STAGING_MODEL_DIR
    assert config.output_uri == uri and config.code_version == "abc"
    assert config.resources is not None and config.resources.cpu == "500m"
    assert config.to_api()["codeVersion"] == "abc"
