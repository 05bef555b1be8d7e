"""The prepare workload on every source kind: sklearn, synthetic, file (CSV, Parquet, pvc://),
ConfigMap, HTTP (from a local http.server, with and without a checksum) and concatenation."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from mlops_operator.api import dataset as api
from mlops_operator.api import workload
from mlops_workloads import runtime
from mlops_workloads.prepare import pipeline

CSV = "a,b,color,y\n" + "".join(f"{i},{i * 0.5},{['red', 'blue'][i % 2]},{i % 3}\n" for i in range(60))


def prepare(tmp_path: pathlib.Path, spec: dict[str, Any], **config: Any) -> dict[str, Any]:
    spec = {"storage": f"file://{tmp_path}/out", **spec}
    cfg = api.PrepareConfig(dataset="ds", spec=api.DatasetSpec.model_validate(spec), **config)
    return pipeline.prepare(cfg, scratch_dir=str(tmp_path))


def version_dir(result: dict[str, Any]) -> pathlib.Path:
    return pathlib.Path(result["storageUri"].removeprefix("file://"))


@pytest.fixture
def http_root(tmp_path: pathlib.Path) -> Iterator[tuple[str, pathlib.Path]]:
    """A local HTTP server on 127.0.0.1 serving ``tmp_path/www``."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args, **kwargs: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("iris", (150, 4, "classification", 3)),
        ("wine", (178, 13, "classification", 3)),
        ("breast_cancer", (569, 30, "classification", 2)),
        ("digits", (1797, 64, "classification", 10)),
        ("diabetes", (442, 10, "regression", None)),
    ],
)
def test_sklearn_sources(
    tmp_path: pathlib.Path, name: str, expected: tuple[int, int, str, int | None]
) -> None:
    rows, features, task, classes = expected
    result = prepare(tmp_path, {"sources": [{"sklearn": {"name": name}}]})
    assert result["rows"]["input"] == rows
    assert result["rows"]["output"] == rows - result["rows"]["dropped"]
    assert result["task"] == task
    assert result["columns"] == features
    assert result["classes"] == classes
    out = version_dir(result)
    assert sorted(p.name for p in out.iterdir()) == [
        "baseline.json", "manifest.json", "preprocessor.skops", "report.json", "schema.json",
        "test.parquet", "train.parquet", "validation.parquet",
    ]  # fmt: skip
    train = pd.read_parquet(out / "train.parquet")
    assert train.shape == (result["rows"]["train"], features + 1)
    assert out.name == result["digest"]


def test_synthetic_classification_respects_weights(tmp_path: pathlib.Path) -> None:
    result = prepare(
        tmp_path,
        {
            "sources": [
                {"synthetic": {"samples": 2000, "features": 6, "informative": 3, "classes": 3,
                               "weights": [0.6, 0.3, 0.1], "seed": 7}}
            ]
        },
    )  # fmt: skip
    assert result["rows"]["input"] == 2000
    assert result["task"] == "classification"
    assert result["classes"] == 3
    balance = result["classBalance"]
    assert balance["0"] > balance["1"] > balance["2"]
    assert abs(balance["2"] / 2000 - 0.1) < 0.02
    train = pd.read_parquet(version_dir(result) / "train.parquet")
    assert list(train.columns) == ["x0", "x1", "x2", "x3", "x4", "x5", "target"]


def test_synthetic_regression(tmp_path: pathlib.Path) -> None:
    result = prepare(
        tmp_path,
        {"sources": [{"synthetic": {"task": "regression", "samples": 300, "features": 12, "noise": 0.5}}]},
    )
    assert result["task"] == "regression"
    assert result["classes"] is None
    assert result["columns"] == 12
    assert (
        result["rows"]["train"] == 210 and result["rows"]["validation"] == 45 and result["rows"]["test"] == 45
    )


def test_csv_file_source(tmp_path: pathlib.Path) -> None:
    (tmp_path / "data.csv").write_text(CSV)
    result = prepare(
        tmp_path, {"sources": [{"file": {"uri": f"file://{tmp_path}/data.csv"}}], "schema": {"target": "y"}}
    )
    assert result["rows"]["input"] == 60
    assert result["task"] == "classification"
    assert result["classBalance"] == {"0": 20, "1": 20, "2": 20}
    schema = json.loads((version_dir(result) / "schema.json").read_text())
    assert [(f["name"], f["dtype"]) for f in schema["features"]] == [
        ("a", "int"), ("b", "float"), ("color", "category"),
    ]  # fmt: skip
    assert schema["classes"] == [0, 1, 2]


def test_parquet_file_on_a_claim(tmp_path: pathlib.Path) -> None:
    """pvc://claim/path is read under <pvcRoot>/pvc/<claim>/path, as the pod mounts it."""
    claim_dir = tmp_path / "mnt" / "pvc" / "data-claim" / "raw"
    claim_dir.mkdir(parents=True)
    frame = pd.read_csv(pd.io.common.StringIO(CSV))
    frame.to_parquet(claim_dir / "data.parquet", index=False)
    result = prepare(
        tmp_path,
        {"sources": [{"file": {"uri": "pvc://data-claim/raw/data.parquet"}}], "schema": {"target": "y"}},
        pvc_root=str(tmp_path / "mnt"),
    )
    assert result["rows"]["input"] == 60
    assert result["columns"] == 3


def test_configmap_source(tmp_path: pathlib.Path) -> None:
    """A ConfigMap source is read where the Job mounts it: <configMapRoot>/<source index>/<key>."""
    mounted = tmp_path / "cm" / "0"
    mounted.mkdir(parents=True)
    (mounted / "rows.csv").write_text(CSV)
    result = prepare(
        tmp_path,
        {"sources": [{"configMap": {"name": "inline", "key": "rows.csv"}}], "schema": {"target": "y"}},
        config_map_root=str(tmp_path / "cm"),
    )
    assert result["rows"]["input"] == 60


def test_http_source_with_checksum(tmp_path: pathlib.Path, http_root: tuple[str, pathlib.Path]) -> None:
    base, root = http_root
    (root / "data.csv").write_text(CSV)
    sha = hashlib.sha256(CSV.encode()).hexdigest()
    result = prepare(
        tmp_path,
        {
            "sources": [{"http": {"url": f"{base}/data.csv", "sha256": sha.upper()}}],
            "schema": {"target": "y"},
        },
    )
    assert result["rows"]["input"] == 60


def test_http_parquet_without_checksum(tmp_path: pathlib.Path, http_root: tuple[str, pathlib.Path]) -> None:
    base, root = http_root
    pd.read_csv(pd.io.common.StringIO(CSV)).to_parquet(root / "data.parquet", index=False)
    result = prepare(
        tmp_path, {"sources": [{"http": {"url": f"{base}/data.parquet"}}], "schema": {"target": "y"}}
    )
    assert result["rows"]["input"] == 60


def test_http_checksum_mismatch(tmp_path: pathlib.Path, http_root: tuple[str, pathlib.Path]) -> None:
    base, root = http_root
    (root / "data.csv").write_text(CSV)
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(runtime.WorkloadError) as err:
        prepare(tmp_path, {"sources": [{"http": {"url": f"{base}/data.csv", "sha256": wrong}}]})
    assert err.value.reason == "ChecksumMismatch"
    assert wrong in err.value.message and hashlib.sha256(CSV.encode()).hexdigest() in err.value.message


def test_http_not_found(tmp_path: pathlib.Path, http_root: tuple[str, pathlib.Path]) -> None:
    base, _ = http_root
    with pytest.raises(runtime.WorkloadError) as err:
        prepare(tmp_path, {"sources": [{"http": {"url": f"{base}/missing.csv"}}]})
    assert err.value.reason == "SourceUnreadable"
    assert "HTTP 404" in err.value.message and "sources[0]" in err.value.message


def test_sources_concatenate(tmp_path: pathlib.Path, http_root: tuple[str, pathlib.Path]) -> None:
    """Data collected from several places: same columns (in any order) are stacked in source order."""
    base, root = http_root
    (tmp_path / "a.csv").write_text(CSV)
    reordered = pd.read_csv(pd.io.common.StringIO(CSV))[["y", "color", "b", "a"]]
    reordered["a"] += 1000  # distinct rows, so nothing is a duplicate
    reordered.to_csv(root / "b.csv", index=False)
    result = prepare(
        tmp_path,
        {
            "sources": [{"file": {"uri": f"file://{tmp_path}/a.csv"}}, {"http": {"url": f"{base}/b.csv"}}],
            "schema": {"target": "y"},
        },
    )
    assert result["rows"]["input"] == 120
    assert result["duplicatesRemoved"] == 0
    report = json.loads((version_dir(result) / "report.json").read_text())
    assert [s["rows"] for s in report["sources"]] == [60, 60]


def test_concatenated_sources_must_share_columns(tmp_path: pathlib.Path) -> None:
    (tmp_path / "a.csv").write_text(CSV)
    (tmp_path / "b.csv").write_text("a,b,shade,y\n1,2,red,0\n")
    with pytest.raises(runtime.WorkloadError) as err:
        prepare(
            tmp_path,
            {
                "sources": [
                    {"file": {"uri": f"file://{tmp_path}/a.csv"}},
                    {"file": {"uri": f"file://{tmp_path}/b.csv"}},
                ],
                "schema": {"target": "y"},
            },
        )
    assert err.value.reason == "SchemaMismatch"
    assert (
        "sources[1]" in err.value.message
        and "'color'" in err.value.message
        and "'shade'" in err.value.message
    )


def test_the_operators_configmap_runs_the_workload(tmp_path: pathlib.Path) -> None:
    """What the reconciler puts in the ConfigMap is what the workload loads and runs."""
    from mlops_operator.reconcile import dataset_build as rds_build
    from mlops_operator.reconcile import workload as rworkload

    ds = api.Dataset.from_body(
        {
            "metadata": {"name": "iris", "namespace": "ml", "uid": "u", "generation": 1},
            "spec": {"sources": [{"sklearn": {"name": "iris"}}], "storage": "pvc://data/datasets/iris"},
        }
    )
    config_map = rds_build.build_configmap(ds, settings=rworkload.WorkloadSettings(pvc_root=str(tmp_path)))
    config_file = tmp_path / "config.json"
    config_file.write_text(config_map["data"]["config.json"])
    config = runtime.load_config(api.PrepareConfig, {workload.CONFIG_FILE_ENV: str(config_file)})
    result = pipeline.prepare(config, scratch_dir=str(tmp_path))
    assert result["storageUri"] == f"pvc://data/datasets/iris/{result['digest']}"
    written = tmp_path / "pvc" / "data" / "datasets" / "iris" / result["digest"]
    assert (written / "manifest.json").is_file()
    assert json.loads((written / "manifest.json").read_text())["namespace"] == "ml"
