"""The test cluster's S3 endpoint (versitygw over a POSIX directory), through the clients we use.

Checks what the examples and workloads rely on: the server answers and enforces SigV4, the
bucket exists, pyarrow's S3FileSystem can write, read, list recursively, delete a prefix and
upload a file big enough to go multipart, the Secret ``default/mlops-s3`` carries the same
credentials, seeding makes the example data sets, and ``up()`` brings back a stopped versitygw
while the control plane keeps running.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import stat
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import localcluster
import pyarrow.csv
import pyarrow.dataset
import pyarrow.fs
import pytest
import seed_s3

from conftest import Cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def info(cluster: Cluster) -> dict[str, str]:
    return localcluster.s3_info()


@pytest.fixture
def prefix(info: dict[str, str]) -> Iterator[str]:
    """A fresh ``<bucket>/t-<hex>`` prefix, emptied afterwards."""
    path = f"{info['bucket']}/t-{uuid.uuid4().hex[:8]}"
    yield path
    fs = seed_s3.filesystem(info)
    fs.delete_dir_contents(path, missing_dir_ok=True)
    if fs.get_file_info(path).type == pyarrow.fs.FileType.Directory:
        fs.delete_dir(path)


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_server_answers_and_refuses_anonymous_requests(info: dict[str, str]) -> None:
    status, headers, body = _get(info["endpoint"] + localcluster.S3_HEALTH_PATH)
    assert status == 200, body
    status, headers, body = _get(f"{info['endpoint']}/{info['bucket']}?list-type=2")
    assert status == 403 and b"AccessDenied" in body
    assert headers.get("Server") == "VERSITYGW"
    assert localcluster.status()["versitygw"]


def test_info_matches_the_state_file_and_secrets_are_private(info: dict[str, str]) -> None:
    assert json.loads(localcluster.S3_INFO.read_text()) == info
    assert info["endpoint"] == f"http://127.0.0.1:{localcluster.PORTS.s3}"
    assert info["pod_endpoint"] == f"http://10.244.1.1:{localcluster.PORTS.s3}"
    assert (info["region"], info["bucket"]) == ("us-east-1", "mlops-examples")
    for path in (localcluster.S3_INFO, localcluster.S3_CREDENTIALS):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # Passed in versitygw's environment, never on its command line (ps shows that to everyone).
    pid = localcluster._pid("versitygw")
    assert pid is not None
    cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    assert info["secret_key"].encode() not in cmdline and info["access_key"].encode() not in cmdline


def test_bucket_exists_and_is_listed(info: dict[str, str]) -> None:
    fs = seed_s3.filesystem(info)
    assert fs.get_file_info(info["bucket"]).type == pyarrow.fs.FileType.Directory
    buckets = {i.path for i in fs.get_file_info(pyarrow.fs.FileSelector("", recursive=False))}
    assert info["bucket"] in buckets


def test_wrong_secret_is_refused(info: dict[str, str]) -> None:
    fs = seed_s3.filesystem({**info, "secret_key": "x" * 40})
    with pytest.raises(OSError, match=r"(?i)signature|denied|forbidden|403"):
        fs.get_file_info(pyarrow.fs.FileSelector(info["bucket"], recursive=False))


def test_put_get_list_delete_with_pyarrow(info: dict[str, str], prefix: str) -> None:
    fs = seed_s3.filesystem(info)
    with fs.open_output_stream(f"{prefix}/a/one.txt") as out:
        out.write(b"hello")
    with fs.open_output_stream(f"{prefix}/b/c/two.bin") as out:
        out.write(b"\x00" * 10)
    with fs.open_input_stream(f"{prefix}/a/one.txt") as src:
        assert src.read() == b"hello"

    found = fs.get_file_info(pyarrow.fs.FileSelector(prefix, recursive=True))
    files = {i.path: i.size for i in found if i.type == pyarrow.fs.FileType.File}
    assert files == {f"{prefix}/a/one.txt": 5, f"{prefix}/b/c/two.bin": 10}

    fs.delete_file(f"{prefix}/a/one.txt")
    assert fs.get_file_info(f"{prefix}/a/one.txt").type == pyarrow.fs.FileType.NotFound
    fs.delete_dir_contents(prefix)
    left = fs.get_file_info(pyarrow.fs.FileSelector(prefix, recursive=True))
    assert [i.path for i in left if i.type == pyarrow.fs.FileType.File] == []


def test_multipart_upload_of_20_mb(info: dict[str, str], prefix: str) -> None:
    # pyarrow buffers 10 MiB parts: 20 MiB is a multipart upload of two parts and a completion.
    fs = seed_s3.filesystem(info)
    data = os.urandom(20 * 1024 * 1024)
    with fs.open_output_stream(f"{prefix}/big.bin") as out:
        for start in range(0, len(data), 1 << 20):
            out.write(data[start : start + (1 << 20)])
    assert fs.get_file_info(f"{prefix}/big.bin").size == len(data)
    with fs.open_input_stream(f"{prefix}/big.bin") as src:
        assert src.read() == data


def test_secret_in_default_carries_the_credentials(cluster: Cluster, info: dict[str, str]) -> None:
    secret: dict[str, Any] | None = cluster.get("secret", localcluster.S3_SECRET, "default")
    assert secret is not None, "Secret default/mlops-s3 is missing"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {"AWS_ACCESS_KEY_ID": info["access_key"], "AWS_SECRET_ACCESS_KEY": info["secret_key"]}
    # Server-side apply: no last-applied annotation repeating the secret in clear.
    annotations = secret["metadata"].get("annotations") or {}
    assert "kubectl.kubernetes.io/last-applied-configuration" not in annotations


def test_seed_makes_the_example_data_sets_and_is_idempotent(info: dict[str, str]) -> None:
    seed_s3.seed(info)
    assert set(seed_s3.seed(info).values()) == {"kept"}

    fs = seed_s3.filesystem(info)
    parts_dir = f"{info['bucket']}/{seed_s3.BREAST_CANCER_PREFIX}"
    parts = sorted(
        i.base_name
        for i in fs.get_file_info(pyarrow.fs.FileSelector(parts_dir))
        if i.type == pyarrow.fs.FileType.File
    )
    assert parts == ["part-0000.parquet", "part-0001.parquet", "part-0002.parquet"]
    table = pyarrow.dataset.dataset(parts_dir, filesystem=fs, format="parquet").to_table()
    assert table.num_rows == 569
    assert table.num_columns == 31 and table.column_names[-1] == "target"
    assert "mean radius" in table.column_names

    with fs.open_input_stream(f"{info['bucket']}/{seed_s3.IRIS_KEY}") as src:
        iris = pyarrow.csv.read_csv(src)
    assert iris.num_rows == 150 and iris.column_names[-1] == "target"


def test_up_restarts_a_stopped_versitygw_and_keeps_the_data(cluster: Cluster, info: dict[str, str]) -> None:
    seed_s3.seed(info)
    localcluster._stop("versitygw")
    assert not localcluster.status()["versitygw"]
    assert not localcluster.running()
    localcluster.up()  # the control plane still runs: only versitygw starts
    assert localcluster.status()["versitygw"]
    assert localcluster.s3_info() == info  # same credentials, same endpoint
    fs = seed_s3.filesystem(info)
    assert fs.get_file_info(f"{info['bucket']}/{seed_s3.IRIS_KEY}").type == pyarrow.fs.FileType.File
