"""Writing a version directory: atomically, deterministically, once.

The directory is built under a temporary name next to its final place and renamed into
``<storage>/<digest>/`` in one step, so a reader never sees half a version and a retried
pod never mixes two attempts. Since the name is the content hash, an existing directory
with a manifest already holds exactly this version and is left alone.

Parquet files are byte-identical for identical data: no index, fixed compression, fixed
row-group size, no timestamps (pyarrow writes none), and the column order of the schema.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import skops.io as sio

from mlops_workloads import runtime

PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 1,
    "row_group_size": 1 << 20,
    "version": "2.6",
    "write_statistics": True,
}
MANIFEST = "manifest.json"


def write_parquet(frame: pd.DataFrame, path: pathlib.Path) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # Dictionary pages pay off for text columns only; on floats the writer tries and gives up.
    text = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    pq.write_table(table, path, use_dictionary=text or False, **PARQUET_OPTIONS)


def write_json(value: Any, path: pathlib.Path) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def write_version(
    root: pathlib.Path,
    digest: str,
    *,
    splits: dict[str, pd.DataFrame],
    preprocessor: Any,
    documents: dict[str, Any],
) -> tuple[pathlib.Path, bool]:
    """Write ``root/<digest>/``; returns (its path, whether it was written now rather than reused)."""
    final = root / digest
    if (final / MANIFEST).is_file():
        return final, False
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=root))
    except OSError as exc:
        raise runtime.WorkloadError(
            "StorageUnwritable", f"cannot write under {root}: {exc}; check the volume and its permissions"
        ) from exc
    try:
        os.chmod(staging, 0o755)
        for name, frame in splits.items():
            write_parquet(frame, staging / f"{name}.parquet")
        sio.dump(preprocessor, staging / "preprocessor.skops")
        for name, value in documents.items():
            if name != MANIFEST:
                write_json(value, staging / name)
        write_json(documents[MANIFEST], staging / MANIFEST)  # last: its presence marks a complete version
        if final.exists():  # a leftover without a manifest: an interrupted older attempt
            shutil.rmtree(final)
        os.replace(staging, final)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if (final / MANIFEST).is_file():  # another pod won the race with the same content
            return final, False
        raise runtime.WorkloadError("StorageUnwritable", f"cannot write {final}: {exc}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final, True
