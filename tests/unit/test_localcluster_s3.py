"""The local cluster's S3 wiring without a server: credentials, the Secret, argv, the seeded data.

The integration test (tests/integration/test_s3_server.py) runs versitygw for real; these pin
the parts that must hold whatever the server does: secrets made once and kept private, never
on a command line, the pod address being the real node's bridge, the example data's shape.
"""

from __future__ import annotations

import base64
import io
import json
import pathlib
import stat

import localcluster
import pyarrow.parquet
import pytest
import realnode_config
import seed_s3


@pytest.fixture
def state(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.setattr(localcluster, "STATE", tmp_path)
    monkeypatch.setattr(localcluster, "S3_CREDENTIALS", tmp_path / "s3-credentials.json")
    return tmp_path


def test_credentials_are_made_once_private_and_reused(state: pathlib.Path) -> None:
    first, made = localcluster._s3_credentials(create=True)
    assert made
    again, made_again = localcluster._s3_credentials(create=True)
    assert again == first and not made_again
    assert stat.S_IMODE((state / "s3-credentials.json").stat().st_mode) == 0o600
    assert len(first["access_key"]) == 20 and first["access_key"].isalnum()
    assert len(first["secret_key"]) == 40 and first["secret_key"].isalnum()
    assert [p.name for p in state.iterdir()] == ["s3-credentials.json"]  # no temporary left


def test_fresh_credentials_differ() -> None:
    assert localcluster.new_s3_credentials() != localcluster.new_s3_credentials()


def test_missing_credentials_are_an_error_naming_the_file(state: pathlib.Path) -> None:
    with pytest.raises(RuntimeError, match=r"no S3 credentials at .*s3-credentials\.json"):
        localcluster.s3_info()


def test_broken_credentials_file_names_the_missing_key(state: pathlib.Path) -> None:
    (state / "s3-credentials.json").write_text(json.dumps({"access_key": "AK"}))
    with pytest.raises(RuntimeError, match="lacks secret_key") as err:
        localcluster._s3_credentials(create=True)
    assert "AK" not in str(err.value)


def test_s3_info_points_host_and_pods_at_the_server(state: pathlib.Path) -> None:
    creds, _ = localcluster._s3_credentials(create=True)
    info = localcluster.s3_info()
    port = localcluster.PORT_BASE + 900
    assert info == {
        "endpoint": f"http://127.0.0.1:{port}",
        "pod_endpoint": f"http://10.244.1.1:{port}",
        "access_key": creds["access_key"],
        "secret_key": creds["secret_key"],
        "region": "us-east-1",
        "bucket": "mlops-examples",
        "secret": "mlops-s3",
    }
    assert localcluster.POD_HOST_IP == realnode_config.NODE_IP


def test_secret_manifest_carries_the_aws_variable_names() -> None:
    manifest = localcluster.s3_secret_manifest({"access_key": "AKX", "secret_key": "s3cr3t"})
    assert manifest["metadata"] == {
        "name": "mlops-s3",
        "namespace": "default",
        "labels": {"app.kubernetes.io/managed-by": "localcluster"},
    }
    data = manifest["data"]
    assert isinstance(data, dict)
    assert {k: base64.b64decode(v).decode() for k, v in data.items()} == {
        "AWS_ACCESS_KEY_ID": "AKX",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t",
    }


def test_versitygw_argv_serves_the_posix_dir_on_all_addresses(state: pathlib.Path) -> None:
    creds, _ = localcluster._s3_credentials(create=True)
    argv = localcluster.versitygw_argv(pathlib.Path("/bins"))
    assert argv[0] == "/bins/versitygw"
    assert argv[argv.index("--port") + 1] == f"0.0.0.0:{localcluster.PORTS.s3}"
    assert argv[-2:] == ["posix", str(localcluster.S3_DIR)]
    assert not any(creds["secret_key"] in a or creds["access_key"] in a for a in argv)


def test_versitygw_is_a_component_so_down_and_status_cover_it() -> None:
    assert "versitygw" in localcluster.COMPONENTS
    ports = [getattr(localcluster.PORTS, f) for f in localcluster.Ports.__dataclass_fields__]
    assert len(ports) == len(set(ports))


def test_write_private_replaces_with_mode_0600(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "s3.json"
    target.write_text("old")
    target.chmod(0o644)
    localcluster._write_private(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_breast_cancer_parts_cover_the_table_in_order() -> None:
    from sklearn import datasets

    frame = datasets.load_breast_cancer(as_frame=True).frame
    tables = [pyarrow.parquet.read_table(io.BytesIO(b)) for b in seed_s3.breast_cancer_parts()]
    assert [t.num_rows for t in tables] == [190, 190, 189]
    for table in tables:
        assert table.column_names == list(frame.columns) and table.column_names[-1] == "target"
    joined = pyarrow.concat_tables(tables).to_pandas()
    assert joined.equals(frame.reset_index(drop=True))


def test_seeded_objects_and_iris_csv() -> None:
    objects = seed_s3.objects()
    assert sorted(objects) == [
        "datasets/breast-cancer-parquet/part-0000.parquet",
        "datasets/breast-cancer-parquet/part-0001.parquet",
        "datasets/breast-cancer-parquet/part-0002.parquet",
        "datasets/iris.csv",
    ]
    lines = objects["datasets/iris.csv"].decode().splitlines()
    assert len(lines) == 151 and lines[0].split(",")[-1] == "target"
    assert seed_s3.objects() == objects  # deterministic bytes: sizes compare across runs


def test_filesystem_rejects_an_endpoint_that_is_no_url() -> None:
    info = {"endpoint": "127.0.0.1:9000", "access_key": "a", "secret_key": "b", "region": "us-east-1"}
    with pytest.raises(ValueError, match="'endpoint' is not an http"):
        seed_s3.filesystem(info)
