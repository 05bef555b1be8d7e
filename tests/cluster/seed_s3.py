"""Seeds the local cluster's S3 bucket with the example data sets, through the S3 API itself.

    .venv/bin/python tests/cluster/seed_s3.py        # after localcluster.py up (make cluster-up does both)

Uploads to ``s3://mlops-examples/`` (``localcluster.s3_info()``):

- ``datasets/breast-cancer-parquet/part-0000.parquet`` .. ``part-0002.parquet``: scikit-learn's
  breast-cancer table (30 features, ``target`` last) in three row ranges, the shape of a
  partitioned Parquet data set;
- ``datasets/iris.csv``: iris as one CSV file.

Both come from the data scikit-learn ships, so nothing is downloaded. Idempotent: an object
that exists with the size of the bytes it would upload is left alone. Goes through pyarrow's
S3FileSystem (the client the workloads read with), so a seeded bucket also proves that client
works against the server. Needs the project's venv (pyarrow, pandas, scikit-learn).
"""

from __future__ import annotations

import io
import itertools
import pathlib
import sys
import urllib.parse

import pyarrow
import pyarrow.fs
import pyarrow.parquet

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import localcluster  # noqa: E402

BREAST_CANCER_PREFIX = "datasets/breast-cancer-parquet"
BREAST_CANCER_PARTS = 3
IRIS_KEY = "datasets/iris.csv"


def filesystem(info: dict[str, str], *, endpoint_key: str = "endpoint") -> pyarrow.fs.S3FileSystem:
    """A pyarrow S3 client for ``info`` (``localcluster.s3_info()``), at ``info[endpoint_key]``."""
    url = urllib.parse.urlsplit(info[endpoint_key])
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ValueError(f"s3 info {endpoint_key!r} is not an http(s) URL: {info[endpoint_key]!r}")
    return pyarrow.fs.S3FileSystem(
        endpoint_override=url.netloc,
        scheme=url.scheme,
        access_key=info["access_key"],
        secret_key=info["secret_key"],
        region=info["region"],
    )


def breast_cancer_parts(parts: int = BREAST_CANCER_PARTS) -> list[bytes]:
    """The breast-cancer frame as ``parts`` Parquet files of consecutive row ranges."""
    from sklearn import datasets

    frame = datasets.load_breast_cancer(as_frame=True).frame
    sizes = [len(frame) // parts + (i < len(frame) % parts) for i in range(parts)]  # as numpy's array_split
    bounds = [0, *itertools.accumulate(sizes)]
    out = []
    for start, stop in itertools.pairwise(bounds):
        table = pyarrow.Table.from_pandas(frame.iloc[start:stop], preserve_index=False)
        buf = io.BytesIO()
        pyarrow.parquet.write_table(table, buf)
        out.append(buf.getvalue())
    return out


def iris_csv() -> bytes:
    from sklearn import datasets

    frame = datasets.load_iris(as_frame=True).frame
    return str(frame.to_csv(index=False)).encode()


def objects() -> dict[str, bytes]:
    """Every seeded object: key in the bucket -> its bytes."""
    seeded = {
        f"{BREAST_CANCER_PREFIX}/part-{i:04d}.parquet": data for i, data in enumerate(breast_cancer_parts())
    }
    seeded[IRIS_KEY] = iris_csv()
    return seeded


def seed(info: dict[str, str]) -> dict[str, str]:
    """Upload what is missing or differs in size; return key -> "uploaded" or "kept"."""
    fs = filesystem(info)
    bucket = info["bucket"]
    result = {}
    for key, data in objects().items():
        path = f"{bucket}/{key}"
        try:
            existing = fs.get_file_info(path)
        except OSError as exc:
            raise RuntimeError(f"cannot reach s3://{path} at {info['endpoint']}: {exc}") from exc
        if existing.type == pyarrow.fs.FileType.File and existing.size == len(data):
            result[key] = "kept"
            continue
        with fs.open_output_stream(path) as out:
            out.write(data)
        result[key] = "uploaded"
    return result


def main() -> int:
    info = localcluster.s3_info()
    for key, what in seed(info).items():
        # stderr: `make cluster-up` keeps KUBECONFIG=<path> as its last line on stdout.
        print(f"seed_s3: {what} s3://{info['bucket']}/{key}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
