"""SQL sources without a cluster: the API model, the prepare pod's Secret volume, and the
workload on SQLite files (types, failures, timeouts, read-only) and on an unreachable
PostgreSQL (the password must never reach a message). The real PostgreSQL runs in
``tests/integration/test_dataset_sql.py``."""

from __future__ import annotations

import decimal
import pathlib
import sqlite3
from typing import Any

import numpy as np
import pandas as pd
import pydantic
import pytest

from mlops_operator.api import dataset as api
from mlops_operator.api import dataset_sources as api_sources
from mlops_operator.crdgen import crd
from mlops_operator.reconcile import dataset_build as rds_build
from mlops_operator.reconcile import workload as rworkload
from mlops_workloads import runtime
from mlops_workloads.prepare import pipeline, sources, sql

PASSWORD = "S3cr3t-p@ss/word"  # characters a URL must quote
QUOTED = "S3cr3t-p%40ss%2Fword"


def sql_source(query: str = "SELECT * FROM rows", **extra: Any) -> dict[str, Any]:
    return {"sql": {"connectionSecretRef": {"name": "warehouse"}, "query": query, **extra}}


def config(tmp_path: pathlib.Path, *entries: dict[str, Any], **spec: Any) -> api.PrepareConfig:
    body = {"sources": list(entries) or [sql_source()], "storage": f"file://{tmp_path}/out", **spec}
    return api.PrepareConfig(
        dataset="ds",
        namespace="team-a",
        spec=api.DatasetSpec.model_validate(body),
        secrets_root=str(tmp_path / "secrets"),
    )


def mount_secret(tmp_path: pathlib.Path, url: str, *, index: int = 0, key: str = "url") -> None:
    """The Secret's key where the kubelet mounts it for source ``index``."""
    folder = tmp_path / "secrets" / "sources" / str(index)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / key).write_text(url + "\n")


def sqlite_db(tmp_path: pathlib.Path, *statements: str, rows: list[tuple[Any, ...]] | None = None) -> str:
    """An SQLite file with ``statements`` run (``rows`` inserted into table rows); its URL."""
    path = tmp_path / "db.sqlite"
    with sqlite3.connect(path) as conn:
        for statement in statements:
            conn.execute(statement)
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            conn.executemany(f"INSERT INTO rows VALUES ({marks})", rows)
    return f"sqlite:///{path}"


def load(cfg: api.PrepareConfig, tmp_path: pathlib.Path) -> pd.DataFrame:
    return sources.load(cfg, scratch=tmp_path).frame


def failure(cfg: api.PrepareConfig, tmp_path: pathlib.Path) -> runtime.WorkloadError:
    with pytest.raises(runtime.WorkloadError) as err:
        load(cfg, tmp_path)
    return err.value


# ---------------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------------


def test_defaults_and_wire_names() -> None:
    source = api_sources.Source.model_validate(sql_source())
    assert source.kind() == "sql" and source.known_task() is None
    assert source.sql is not None
    assert source.sql.connection_secret_ref.key == "url" and source.sql.timeout_seconds == 300
    assert source.to_api() == {
        "sql": {
            "connectionSecretRef": {"name": "warehouse", "key": "url"},
            "query": "SELECT * FROM rows",
            "timeoutSeconds": 300,
        }
    }


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {**sql_source(), "sklearn": {"name": "iris"}},
            "exactly one of sklearn, synthetic, file, configMap, http or sql",
        ),
        (sql_source(query="  \n "), "sql.query must not be blank"),
        (sql_source(query=""), "at least 1 character"),
        (sql_source(query="x" * 65537), "at most 65536 characters"),
        (sql_source(timeoutSeconds=0), "greater than or equal to 1"),
        ({"sql": {"connectionSecretRef": {"name": "Bad_Name"}, "query": "SELECT 1"}}, "should match pattern"),
        ({"sql": {"query": "SELECT 1"}}, "connectionSecretRef"),
        ({"sql": {"connectionSecretRef": {"name": "x"}, "query": "SELECT 1", "url": "x"}}, "Extra inputs"),
    ],
)
def test_invalid_sql_sources(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError) as err:
        api_sources.Source.model_validate(entry)
    assert message in str(err.value)


def test_the_crd_counts_sql_in_the_exactly_one_rule_and_refuses_a_blank_query() -> None:
    rendered = crd.build(next(r for r in crd.discover() if r.crd.kind == "Dataset"))
    source = rendered["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "sources"
    ]["items"]
    assert "(has(self.sql) ? 1 : 0)" in source["x-kubernetes-validations"][0]["rule"]
    sql_schema = source["properties"]["sql"]
    assert sql_schema["required"] == ["connectionSecretRef", "query"]
    assert sql_schema["x-kubernetes-validations"] == [
        {
            "fieldPath": ".query",
            "message": "sql.query must not be blank",
            "rule": "self.query.matches(r'\\S')",
        }
    ]
    assert "SQLAlchemy URL" in sql_schema["properties"]["connectionSecretRef"]["description"]


# ---------------------------------------------------------------------------------------------
# The prepare pod
# ---------------------------------------------------------------------------------------------


def test_the_prepare_pod_mounts_the_secret_key_read_only_where_the_workload_reads_it() -> None:
    ds = api.Dataset.from_body(
        {
            "metadata": {"name": "orders", "namespace": "team-a", "uid": "u-1", "generation": 1},
            "spec": {
                "sources": [
                    {"sklearn": {"name": "iris"}},
                    {
                        "sql": {
                            "connectionSecretRef": {"name": "warehouse", "key": "dsn"},
                            "query": "SELECT 1",
                        }
                    },
                ],
                "storage": "pvc://data/datasets/orders",
            },
        }
    )
    settings = rworkload.WorkloadSettings(workload_image="registry.local/mlops-workloads:1")
    pod = rds_build.build_job(ds, settings=settings)["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "source-1")
    assert volume == {
        "name": "source-1",
        "secret": {"secretName": "warehouse", "items": [{"key": "dsn", "path": "dsn"}], "optional": True},
    }
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "source-1")
    config = rds_build.prepare_config(ds, settings=settings)
    assert mount == {"name": "source-1", "mountPath": f"{config.secrets_root}/sources/1", "readOnly": True}
    assert config.secrets_root == "/var/run/secrets/mlops.dev"
    assert not any(v["name"] == "source-0" for v in pod["volumes"])  # sklearn needs no volume
    # The config names the Secret, never a URL: the operator has none to give.
    text = rds_build.build_configmap(ds, settings=settings)["data"]["config.json"]
    assert '"connectionSecretRef":{"name":"warehouse","key":"dsn"}' in text
    assert text.count("://") == 1  # the storage URI; no connection URL


# ---------------------------------------------------------------------------------------------
# The workload on SQLite
# ---------------------------------------------------------------------------------------------


def test_sqlite_types_become_the_pipeline_types(tmp_path: pathlib.Path) -> None:
    url = sqlite_db(
        tmp_path,
        "CREATE TABLE rows (id INTEGER, price REAL, city TEXT, flag INTEGER, note TEXT, empty TEXT, "
        "target INTEGER)",
        rows=[
            (i, i * 1.5 if i % 7 else None, ["Oslo", "Lima"][i % 2], i % 2, None, None, i % 3)
            for i in range(40)
        ],
    )
    mount_secret(tmp_path, url)
    frame = load(config(tmp_path), tmp_path)
    assert frame.shape == (40, 7)
    assert str(frame["id"].dtype) == "Int64" and str(frame["target"].dtype) == "Int64"
    assert frame["price"].dtype == np.float64 and int(frame["price"].isna().sum()) == 6
    assert pd.api.types.is_string_dtype(frame["city"]) and frame["city"].tolist()[:2] == ["Oslo", "Lima"]
    assert frame["empty"].isna().all() and frame["note"].isna().all()


def test_columns_widen_across_chunks(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite is dynamically typed: a column of integers that turns to floats (or text) later."""
    monkeypatch.setattr(sql, "CHUNK_ROWS", 3)
    rows = [
        (1, 1, None, True),
        (2, 2, None, False),
        (3, 3, None, None),
        (4.5, "four", 7, True),
        (5, 5, None, False),
    ]
    url = sqlite_db(tmp_path, "CREATE TABLE rows (a, b, c, d BOOLEAN)", rows=rows)
    mount_secret(tmp_path, url)
    frame = load(config(tmp_path), tmp_path)
    assert frame["a"].dtype == np.float64 and frame["a"].tolist() == [1.0, 2.0, 3.0, 4.5, 5.0]
    assert frame["b"].tolist() == ["1", "2", "3", "four", "5"]
    assert str(frame["c"].dtype) == "Int64" and frame["c"].isna().sum() == 4 and frame["c"][3] == 7
    assert str(frame["d"].dtype) == "Int64"  # SQLite keeps booleans as 0/1 integers


def test_value_kinds_and_conversions() -> None:
    assert sql.value_kind([None, decimal.Decimal("1.25"), 3]) == "float"
    assert sql.value_kind([True, None]) == "bool"
    assert sql.value_kind([True, 2]) == "int"
    assert sql.value_kind([None, None]) == "null"
    assert sql.value_kind([b"\x00"]) == "binary"
    assert sql.widen("int", "text") == "text" and sql.widen("null", "datetime") == "datetime"
    decimals = sql.convert([decimal.Decimal("1.5"), None], "float", name="n", where="w")
    assert decimals.dtype == np.float64 and decimals[0] == 1.5 and np.isnan(decimals[1])
    flags = sql.convert([True, None, False], "bool", name="b", where="w")
    assert str(flags.dtype) == "boolean" and flags.isna().tolist() == [False, True, False]
    with pytest.raises(runtime.WorkloadError) as err:
        sql.convert([b"\x00"], "binary", name="blob", where="sources[0]")
    assert err.value.reason == "SchemaMismatch" and "'blob' holds binary data" in err.value.message


def test_a_whole_preparation_from_sqlite(tmp_path: pathlib.Path) -> None:
    url = sqlite_db(
        tmp_path,
        "CREATE TABLE rows (x REAL, colour TEXT, label TEXT)",
        rows=[(i * 0.1, ["red", "blue", "green"][i % 3], ["yes", "no"][i % 2]) for i in range(120)],
    )
    mount_secret(tmp_path, url)
    cfg = config(
        tmp_path, sql_source("SELECT x, colour, label FROM rows WHERE x >= 0"), schema={"target": "label"}
    )
    result = pipeline.prepare(cfg, scratch_dir=str(tmp_path))
    assert result["rows"]["input"] == 120 and result["task"] == "classification" and result["classes"] == 2
    assert result["features"] == 4  # x plus three one-hot colours


def test_percent_signs_and_colons_in_a_query_are_the_query_s_own(tmp_path: pathlib.Path) -> None:
    url = sqlite_db(tmp_path, "CREATE TABLE rows (s TEXT)", rows=[("a%b",), ("c:d",)])
    mount_secret(tmp_path, url)
    frame = load(config(tmp_path, sql_source("SELECT s, ':x' AS c FROM rows WHERE s LIKE '%' ;")), tmp_path)
    assert frame["s"].tolist() == ["a%b", "c:d"] and frame["c"].tolist() == [":x", ":x"]


def test_a_query_sqlite_refuses_is_query_failed_with_its_message(tmp_path: pathlib.Path) -> None:
    mount_secret(tmp_path, sqlite_db(tmp_path, "CREATE TABLE rows (a INTEGER)"))
    error = failure(config(tmp_path, sql_source("SELECT * FROM nope")), tmp_path)
    assert error.reason == "QueryFailed"
    assert "no such table: nope" in error.message
    assert error.message.startswith("sources[0] (sql warehouse: SELECT * FROM nope)")
    assert "fix spec.sources[0].sql.query" in error.message


def test_the_query_runs_read_only(tmp_path: pathlib.Path) -> None:
    url = sqlite_db(tmp_path, "CREATE TABLE rows (a INTEGER)", rows=[(1,)])
    mount_secret(tmp_path, url)
    error = failure(config(tmp_path, sql_source("DELETE FROM rows RETURNING a")), tmp_path)
    assert error.reason == "QueryFailed" and "readonly" in error.message
    with sqlite3.connect(tmp_path / "db.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM rows").fetchone() == (1,)


def test_a_slow_query_is_query_timeout(tmp_path: pathlib.Path) -> None:
    mount_secret(tmp_path, sqlite_db(tmp_path, "CREATE TABLE rows (a INTEGER)"))
    slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) AS c FROM n"
    error = failure(config(tmp_path, sql_source(slow, timeoutSeconds=1)), tmp_path)
    assert error.reason == "QueryTimeout"
    assert (
        "longer than timeoutSeconds (1s)" in error.message
        and "spec.sources[0].sql.timeoutSeconds" in error.message
    )


def test_no_rows_is_source_empty(tmp_path: pathlib.Path) -> None:
    mount_secret(tmp_path, sqlite_db(tmp_path, "CREATE TABLE rows (a INTEGER, b TEXT)"))
    error = failure(config(tmp_path), tmp_path)
    assert error.reason == "SourceEmpty" and "returned no rows (columns ['a', 'b'])" in error.message


def test_duplicate_column_names_are_refused(tmp_path: pathlib.Path) -> None:
    mount_secret(tmp_path, sqlite_db(tmp_path, "CREATE TABLE rows (a INTEGER)", rows=[(1,)]))
    error = failure(config(tmp_path, sql_source("SELECT a, a FROM rows")), tmp_path)
    assert error.reason == "SchemaMismatch" and "duplicate column names ['a']" in error.message


def test_a_missing_secret_names_the_secret_namespace_and_key(tmp_path: pathlib.Path) -> None:
    error = failure(config(tmp_path), tmp_path)
    assert error.reason == "SourceUnreadable"
    assert "Secret 'warehouse' in namespace 'team-a' does not exist or has no key 'url'" in error.message


def test_a_missing_sqlite_file_is_not_created(tmp_path: pathlib.Path) -> None:
    mount_secret(tmp_path, f"sqlite:///{tmp_path}/absent.db")
    error = failure(config(tmp_path), tmp_path)
    assert (
        error.reason == "SourceUnreadable"
        and f"no SQLite database file at {tmp_path}/absent.db" in error.message
    )
    assert not (tmp_path / "absent.db").exists()


# ---------------------------------------------------------------------------------------------
# The password never shows
# ---------------------------------------------------------------------------------------------


def assert_hidden(text: str) -> None:
    if any(secret in text for secret in (PASSWORD, QUOTED, "S3cr3t")):
        pytest.fail(f"the password appears in: {text.replace('S3cr3t', '<found here>')}", pytrace=False)


def test_an_unreachable_postgresql_is_connection_failed_without_the_password(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    mount_secret(tmp_path, f"postgresql://mlops:{QUOTED}@127.0.0.1:1/warehouse")
    error = failure(config(tmp_path, sql_source(timeoutSeconds=5)), tmp_path)
    assert error.reason == "ConnectionFailed"
    assert "cannot connect to postgresql+psycopg://mlops:***@127.0.0.1:1/warehouse" in error.message
    assert "Connection refused" in error.message
    out = capsys.readouterr()
    for text in (
        error.message,
        caplog.text,
        out.out,
        out.err,
        repr(error.__cause__),
        repr(error.__context__),
    ):
        assert_hidden(text)


def test_the_entrypoint_reports_the_failure_without_the_password(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlops_workloads.prepare import __main__ as prepare_main

    mount_secret(tmp_path, f"postgresql+psycopg://mlops:{QUOTED}@127.0.0.1:1/warehouse")
    config_file = tmp_path / "config.json"
    config_file.write_text(config(tmp_path, sql_source(timeoutSeconds=5)).model_dump_json(by_alias=True))
    monkeypatch.setenv("MLOPS_CONFIG_FILE", str(config_file))
    monkeypatch.setenv("MLOPS_RESULT_PATH", str(tmp_path / "result.json"))
    assert prepare_main.main() == 1  # a connection failure may heal: retried
    result = (tmp_path / "result.json").read_text()
    assert '"reason":"ConnectionFailed"' in result
    out = capsys.readouterr()
    for text in (result, out.out, out.err):
        assert_hidden(text)


@pytest.mark.parametrize(
    ("url", "reason", "expected"),
    [
        (f"not a url {PASSWORD}", "InvalidConfig", "is not an SQLAlchemy URL"),
        (f"mysql+pymysql://u:{QUOTED}@db/x", "InvalidConfig", "no SQLAlchemy driver for 'mysql+pymysql'"),
        (f"postgresql+psycopg2://u:{QUOTED}@db/x", "InvalidConfig", "it has postgresql+psycopg, sqlite"),
    ],
)
def test_unusable_urls_are_invalid_config_without_the_password(
    tmp_path: pathlib.Path, url: str, reason: str, expected: str
) -> None:
    mount_secret(tmp_path, url)
    error = failure(config(tmp_path), tmp_path)
    assert error.reason == reason and expected in error.message, error.message
    assert_hidden(error.message)


def test_a_driver_message_quoting_the_password_is_scrubbed() -> None:
    target = sql.parse_url(f"postgresql://mlops:{QUOTED}@db:5432/x", where="sources[0]")
    assert target.url.drivername == "postgresql+psycopg"
    assert target.shown == "postgresql+psycopg://mlops:***@db:5432/x"
    leaky = RuntimeError(f"auth failed for {PASSWORD} via postgresql://mlops:{QUOTED}@db:5432/x\n  again")
    text = sql.db_message(leaky, target)
    assert_hidden(text)
    assert text == "auth failed for *** via *** again"


def test_the_source_label_names_the_secret_and_the_query_not_the_url() -> None:
    source = api_sources.Source.model_validate(sql_source("SELECT a,\n   b FROM " + "t" * 80))
    label = sources.label(2, source)
    assert label.startswith("sources[2] (sql warehouse: SELECT a, b FROM ttt") and label.endswith("...)")


def test_an_unexpected_driver_error_is_reported_scrubbed(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mount_secret(tmp_path, f"postgresql+psycopg://mlops:{QUOTED}@db.example:5432/warehouse")

    def explode(*args: Any, **kwargs: Any) -> pd.DataFrame:
        raise RuntimeError(f"driver bug while using {PASSWORD}")

    monkeypatch.setattr(sql, "_run_query", explode)
    error = failure(config(tmp_path), tmp_path)
    assert error.reason == "SourceUnreadable"
    assert "reading from postgresql+psycopg://mlops:***@db.example:5432/warehouse failed: RuntimeError" in (
        error.message
    )
    assert_hidden(error.message)
