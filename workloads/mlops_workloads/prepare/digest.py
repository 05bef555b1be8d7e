"""The content digest of a prepared version, from a canonical serialisation of the splits.

Hashing the parquet files would tie the digest to the writer (pyarrow and pandas put their
versions in the footer): an upgrade would change every digest without changing one value.
So the digest covers what the data *is*: the preparation spec, the column names and types,
and each split's values column by column in a fixed binary form (little-endian numbers,
a packed missing-value mask, UTF-8 strings with 64-bit offsets). The same values give the
same digest on any machine and with any library version.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mlops_workloads.prepare import validate as validate_mod

FORMAT = 1


def _update(sha: Any, blob: bytes) -> None:
    sha.update(len(blob).to_bytes(8, "little"))
    sha.update(blob)


def _column_bytes(series: pd.Series, dtype: str) -> tuple[bytes, bytes]:
    """(missing mask, values) of one column in canonical form."""
    missing = series.isna().to_numpy()
    mask = np.packbits(missing, bitorder="little").tobytes()
    if dtype == "float":
        values = series.to_numpy(dtype="float64", na_value=0.0) + 0.0  # -0.0 → 0.0
        return mask, values.astype("<f8").tobytes()
    if dtype == "int":
        return mask, series.to_numpy(dtype="int64", na_value=0).astype("<i8").tobytes()
    if dtype == "bool":
        return mask, series.to_numpy(dtype="uint8", na_value=0).tobytes()
    text = pa.array(series.to_numpy(dtype=object, na_value=""), type=pa.large_string())
    buffers = text.buffers()
    offsets = np.frombuffer(buffers[1], dtype="<i8", count=len(text) + 1)
    end = int(offsets[-1])
    data = buffers[2].to_pybytes()[:end] if buffers[2] is not None else b""
    return mask, offsets.tobytes() + data


def compute(
    splits: dict[str, pd.DataFrame], *, columns: list[validate_mod.Column], preparation: dict[str, Any]
) -> str:
    """sha256 (hex) over the preparation spec, the columns and every split's values."""
    sha = hashlib.sha256()
    header = {
        "format": FORMAT,
        "preparation": preparation,
        "columns": [[c.name, c.dtype] for c in columns],
        "rows": {name: len(frame) for name, frame in splits.items()},
    }
    _update(sha, json.dumps(header, sort_keys=True, separators=(",", ":"), default=str).encode())
    for name in sorted(splits):
        frame = splits[name]
        for column in columns:
            mask, values = _column_bytes(frame[column.name], column.dtype)
            _update(sha, mask)
            _update(sha, values)
    return sha.hexdigest()
