"""Every failure reason of the prepare workload, with a message that says what to fix, and the
process contract: result JSON on the termination path, exit code 3 for data errors."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from mlops_operator.api import dataset as api
from mlops_operator.api import workload
from mlops_workloads import runtime
from mlops_workloads.prepare import __main__ as prepare_main
from mlops_workloads.prepare import pipeline

GOOD = "x,c,y\n" + "".join(f"{i},{'ab'[i % 2]},{i % 2}\n" for i in range(40))


def fail(tmp_path: pathlib.Path, spec: dict[str, Any], **config: Any) -> runtime.WorkloadError:
    full = {"storage": f"file://{tmp_path}/out", **spec}
    cfg = api.PrepareConfig(dataset="d", spec=api.DatasetSpec.model_validate(full), **config)
    with pytest.raises(runtime.WorkloadError) as err:
        pipeline.prepare(cfg, scratch_dir=str(tmp_path))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing half-written
    return err.value


def csv_source(tmp_path: pathlib.Path, text: str, name: str = "d.csv") -> dict[str, Any]:
    (tmp_path / name).write_text(text)
    return {"file": {"uri": f"file://{tmp_path}/{name}"}}


def test_missing_file(tmp_path: pathlib.Path) -> None:
    err = fail(tmp_path, {"sources": [{"file": {"uri": f"file://{tmp_path}/nope.csv"}}]})
    assert err.reason == "SourceUnreadable"
    assert "no file at" in err.message and "nope.csv" in err.message


def test_broken_parquet(tmp_path: pathlib.Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"this is not parquet")
    err = fail(tmp_path, {"sources": [{"file": {"uri": f"file://{tmp_path}/bad.parquet"}}]})
    assert err.reason == "SourceUnreadable"
    assert "as parquet" in err.message


def test_broken_csv(tmp_path: pathlib.Path) -> None:
    err = fail(tmp_path, {"sources": [csv_source(tmp_path, "a,b,y\n1,2,3\n4,5\n6,7,8,9\n")]})
    assert err.reason == "SourceUnreadable"
    assert "as csv" in err.message


def test_missing_configmap_key(tmp_path: pathlib.Path) -> None:
    err = fail(
        tmp_path,
        {"sources": [{"configMap": {"name": "rows", "key": "data.csv"}}]},
        config_map_root=str(tmp_path / "cm"),
        namespace="team-a",
    )
    assert err.reason == "SourceUnreadable"
    assert "ConfigMap 'rows' in namespace 'team-a'" in err.message


def test_unreachable_url(tmp_path: pathlib.Path) -> None:
    err = fail(tmp_path, {"sources": [{"http": {"url": "http://127.0.0.1:9/data.csv", "timeoutSeconds": 5}}]})
    assert err.reason == "SourceUnreadable"
    assert "download failed" in err.message


def test_declared_column_missing(tmp_path: pathlib.Path) -> None:
    err = fail(
        tmp_path,
        {
            "sources": [csv_source(tmp_path, GOOD)],
            "schema": {"target": "y", "columns": [{"name": "z", "type": "float"}]},
        },
    )
    assert err.reason == "SchemaMismatch"
    assert "['z']" in err.message and "spec.schema.columns" in err.message


def test_target_missing(tmp_path: pathlib.Path) -> None:
    err = fail(tmp_path, {"sources": [csv_source(tmp_path, GOOD)], "schema": {"target": "label"}})
    assert err.reason == "SchemaMismatch"
    assert "target column 'label'" in err.message and "spec.schema.target" in err.message


def test_regression_on_text_target(tmp_path: pathlib.Path) -> None:
    err = fail(
        tmp_path, {"sources": [csv_source(tmp_path, GOOD)], "schema": {"target": "c", "task": "regression"}}
    )
    assert err.reason == "SchemaMismatch"
    assert "must be numeric" in err.message


def test_mean_of_a_category_column(tmp_path: pathlib.Path) -> None:
    err = fail(
        tmp_path,
        {
            "sources": [csv_source(tmp_path, GOOD)],
            "schema": {"target": "y"},
            "cleaning": {"imputation": {"columns": [{"name": "c", "strategy": "mean"}]}},
        },
    )
    assert err.reason == "SchemaMismatch"
    assert "column 'c'" in err.message and "most_frequent" in err.message


def test_violations_fail_by_default(tmp_path: pathlib.Path) -> None:
    text = GOOD + "oops,a,1\n-5,b,0\n"
    err = fail(
        tmp_path,
        {
            "sources": [csv_source(tmp_path, text)],
            "schema": {"target": "y", "columns": [{"name": "x", "type": "int", "min": 0}]},
        },
    )
    assert err.reason == "SchemaViolation"
    assert "2 of 42 rows" in err.message
    assert "1 of the wrong type" in err.message and "1 below min" in err.message and "'oops'" in err.message
    assert "onViolation: drop" in err.message


def test_allowed_values(tmp_path: pathlib.Path) -> None:
    err = fail(
        tmp_path,
        {
            "sources": [csv_source(tmp_path, GOOD)],
            "schema": {"target": "y", "columns": [{"name": "c", "type": "category", "allowed": ["a"]}]},
        },
    )
    assert err.reason == "SchemaViolation"
    assert "20 not in allowed" in err.message


def test_empty_after_cleaning(tmp_path: pathlib.Path) -> None:
    text = "x,c,y\n1,,0\n2,,1\n3,a,\n"
    err = fail(
        tmp_path,
        {
            "sources": [csv_source(tmp_path, text)],
            "schema": {"target": "y"},
            "cleaning": {"imputation": {"strategy": "drop"}},
        },
    )
    assert err.reason == "EmptyAfterCleaning"
    assert "1 missingTarget" in err.message and "2 missingValues" in err.message


def test_header_only_source_is_empty(tmp_path: pathlib.Path) -> None:
    err = fail(tmp_path, {"sources": [csv_source(tmp_path, "x,c,y\n")], "schema": {"target": "y"}})
    assert err.reason == "EmptyAfterCleaning"


def test_class_too_small_to_stratify(tmp_path: pathlib.Path) -> None:
    text = GOOD + "100,a,2\n101,b,2\n"  # class 2 has two rows, three splits need three
    err = fail(tmp_path, {"sources": [csv_source(tmp_path, text)], "schema": {"target": "y"}})
    assert err.reason == "SplitTooSmall"
    assert "'2' has 2" in err.message and "stratify: false" in err.message


def test_too_few_rows_for_the_fractions(tmp_path: pathlib.Path) -> None:
    text = "x,y\n1.5,0.1\n2.5,0.2\n3.5,0.3\n4.5,0.4\n"
    err = fail(
        tmp_path,
        {
            "sources": [csv_source(tmp_path, text)],
            "schema": {"target": "y"},
            "split": {"train": 0.9, "validation": 0.05, "test": 0.05},
        },
    )
    assert err.reason == "SplitTooSmall"
    assert "validation" in err.message and "test" in err.message


def test_no_features(tmp_path: pathlib.Path) -> None:
    err = fail(
        tmp_path,
        {
            "sources": [csv_source(tmp_path, GOOD)],
            "schema": {
                "target": "y",
                "columns": [{"name": "x", "type": "string"}, {"name": "c", "type": "string"}],
            },
        },
    )
    assert err.reason == "NoFeatures"


def run_main(tmp_path: pathlib.Path, config: str) -> tuple[int, dict[str, Any]]:
    result_file = tmp_path / "termination-log"
    env = {
        **os.environ,
        workload.CONFIG_ENV: config,
        workload.RESULT_PATH_ENV: str(result_file),
        "TMPDIR": str(tmp_path),
    }
    env.pop(workload.CONFIG_FILE_ENV, None)
    proc = subprocess.run(
        [sys.executable, "-m", "mlops_workloads.prepare"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, json.loads(result_file.read_text())


def test_main_success_writes_the_result(tmp_path: pathlib.Path) -> None:
    config = {
        "dataset": "iris",
        "spec": {"sources": [{"sklearn": {"name": "iris"}}], "storage": f"file://{tmp_path}/o"},
    }
    code, result = run_main(tmp_path, json.dumps(config))
    assert code == 0
    assert result["ok"] is True and result["rows"]["input"] == 150
    assert len(json.dumps(result)) <= workload.RESULT_LIMIT


def test_main_data_error_exits_permanent(tmp_path: pathlib.Path) -> None:
    (tmp_path / "d.csv").write_text(GOOD)
    config = {
        "dataset": "d",
        "spec": {
            "sources": [{"file": {"uri": f"file://{tmp_path}/d.csv"}}],
            "storage": f"file://{tmp_path}/o",
        },
    }
    code, result = run_main(tmp_path, json.dumps(config))
    assert code == workload.PERMANENT_EXIT_CODE
    assert result == {"ok": False, "reason": "SchemaMismatch", "error": result["error"]}
    assert "target column 'target'" in result["error"]


def test_main_transient_error_exits_one(tmp_path: pathlib.Path) -> None:
    config = {
        "dataset": "d",
        "spec": {
            "sources": [{"file": {"uri": f"file://{tmp_path}/none.csv"}}],
            "storage": f"file://{tmp_path}/o",
        },
    }
    code, result = run_main(tmp_path, json.dumps(config))
    assert code == 1  # a missing file may appear (a volume still syncing): retried
    assert result["reason"] == "SourceUnreadable"


def test_main_invalid_config(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(workload.CONFIG_ENV, json.dumps({"dataset": "d", "spec": {"sources": []}}))
    monkeypatch.delenv(workload.CONFIG_FILE_ENV, raising=False)
    monkeypatch.setenv(workload.RESULT_PATH_ENV, str(tmp_path / "log"))
    assert prepare_main.main() == workload.PERMANENT_EXIT_CODE
    result = json.loads((tmp_path / "log").read_text())
    assert result["reason"] == "InvalidConfig"


def test_storage_unwritable(tmp_path: pathlib.Path) -> None:
    (tmp_path / "taken").write_text("a file where the storage directory should be")
    cfg = api.PrepareConfig(
        dataset="d",
        spec=api.DatasetSpec.model_validate(
            {"sources": [{"sklearn": {"name": "iris"}}], "storage": f"file://{tmp_path}/taken/datasets"}
        ),
    )
    with pytest.raises(runtime.WorkloadError) as err:
        pipeline.prepare(cfg, scratch_dir=str(tmp_path))
    assert err.value.reason == "StorageUnwritable"
    assert f"{tmp_path}/taken/datasets" in err.value.message
