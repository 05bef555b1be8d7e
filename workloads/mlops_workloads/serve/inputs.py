"""Request bodies → a validated DataFrame of the schema's feature columns, or a 4xx.

Both protocols end in the same place: one column per feature, in schema order, checked
for presence, type and batch size. A request that cannot be scored is refused with a
4xx whose message names the column and the row; the model never sees it, so a bad input
can never surface as a 500.

Decisions (documented in docs and the OpenAPI text):
- missing and unknown columns, wrong types, wrong shapes, empty and oversized batches,
  NaN/Infinity literals → 4xx (413 for too many rows, 400 for unparseable JSON, 422 for
  the rest);
- numeric values outside the training range and categories never seen in training are
  ACCEPTED with a warning in the response and a ``mlops_serve_input_warnings_total``
  count: refusing them would drop real traffic over a shift that the drift score is there
  to report. ``null`` in a numeric column is read as a missing value (NaN); whether the
  pipeline accepts it is the pipeline's call (a pipeline that cannot impute answers 422).
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from mlops_workloads.serve import bundle as bundle_mod

NUMERIC_V2 = frozenset(
    {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
)
INTEGER_V2 = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
V2_DATATYPES = NUMERIC_V2 | {"BOOL", "BYTES"}
ACCEPTED_V2: dict[str, frozenset[str]] = {
    "float": NUMERIC_V2,
    "int": NUMERIC_V2,
    "bool": frozenset({"BOOL"}),
    "category": frozenset({"BYTES"}) | INTEGER_V2,
    "string": frozenset({"BYTES"}),
}
EXPECTED_TEXT = {
    "float": "a number",
    "int": "an integer",
    "bool": "true or false",
    "category": "a string (category)",
    "string": "a string",
}


class InputError(Exception):
    """A request the server refuses: HTTP ``status`` and a message that says what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Batch:
    """A validated request: its column arrays by feature name (schema order), and the DataFrame
    the model takes, built on first use: a request scored in a joint model call never needs its
    own (``App._score`` concatenates the columns), and pandas' constructor is a sizeable share
    of a small request's cost."""

    __slots__ = ("_frame", "columns", "rows", "warnings")

    def __init__(self, *, columns: dict[str, np.ndarray], rows: int, warnings: list[dict[str, Any]]) -> None:
        self.columns = columns
        self.rows = rows
        self.warnings = warnings
        self._frame: pd.DataFrame | None = None

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            self._frame = frame_of(self.columns)
        return self._frame


def frame_of(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """The model's input frame over column arrays (no copy; the dict's order is the schema's)."""
    return pd.DataFrame(columns, copy=False)


def prefer_object_strings() -> bool:
    """Make pandas keep strings as ``object`` columns, as pandas 2 did, for this process: the model
    server calls this once at start, before the model is loaded.

    pandas 3 infers its pyarrow-backed ``str`` dtype for string data, column names included, and
    every DataFrame a scikit-learn ColumnTransformer builds inside ``predict`` pays for that: a
    one-row ``predict`` of the iris Pipeline takes ~0.5 ms longer (1.76 ms against 1.28 ms on a
    2-core VM, ``benchmarks/serving_throughput.py``'s anchors), and its answers are the same,
    since fitted encoders hold their categories as object arrays either way. The option is
    deprecated (pandas 4 drops it): where it is gone this does nothing and says so (False)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the option's deprecation notice (reading it warns too)
        try:
            pd.set_option("future.infer_string", False)
        except (KeyError, ValueError, pd.errors.OptionError):
            return False
    return True


def _reject_constant(token: str) -> Any:
    raise InputError(400, f"the body holds {token}, which is not valid JSON; send finite numbers or null")


# One decoder for every request: json.loads with a keyword builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def parse_json(body: bytes) -> dict[str, Any]:
    if not body:
        raise InputError(400, "the request body is empty; send a JSON object")
    try:
        # What json.loads does with bytes (UTF-8, or UTF-16/32 by their BOM or zero bytes).
        text = body.decode(json.detect_encoding(body), "surrogatepass")
        value = _DECODER.decode(text)
    except InputError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InputError(422, f"the body must be a JSON object, not {type(value).__name__}")
    return value


def _value_ok(dtype: str, value: Any) -> bool:
    kind = type(value)
    if dtype == "float":
        return kind is float or kind is int or value is None
    if dtype == "int":
        return kind is int or (kind is float and value.is_integer()) or value is None
    if dtype == "bool":
        return kind is bool
    if dtype == "category":
        return kind is str or kind is int
    return kind is str


# The value types each dtype takes as they are (the common case, checked at C speed before
# the per-value check that names the first bad row).
_FAST_TYPES: dict[str, frozenset[type]] = {
    "float": frozenset({float, int}),
    "category": frozenset({str, int}),
    "string": frozenset({str}),
}


def _column(feature: bundle_mod.Feature, values: list[Any], *, where: str) -> np.ndarray:
    """Check every value of one column and build its array (NaN for null numerics)."""
    dtype = feature.dtype
    fast = _FAST_TYPES.get(dtype)
    if fast is not None and set(map(type, values)) <= fast:
        return np.array(values, dtype=np.float64 if dtype == "float" else object)
    for row, value in enumerate(values):
        if not _value_ok(dtype, value):
            shown = json.dumps(value)[:60] if not isinstance(value, (bytes, bytearray)) else repr(value)[:60]
            raise InputError(
                422,
                f"{where} feature {feature.name!r}, row {row}: got {shown}, expected {EXPECTED_TEXT[dtype]}",
            )
    if dtype == "float":
        return np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    if dtype == "int":
        if any(v is None for v in values):
            return np.array([math.nan if v is None else v for v in values], dtype=np.float64)
        return np.array([int(v) for v in values], dtype=np.int64)
    if dtype == "bool":
        return np.array(values, dtype=bool)
    return np.array(values, dtype=object)


def _warnings(schema: bundle_mod.Schema, columns: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for feature in schema.features:
        arr = columns[feature.name]
        if feature.numeric and (feature.min is not None or feature.max is not None):
            if len(arr) and _within(arr, feature.min, feature.max):
                continue  # the usual case, in two reductions
            with np.errstate(invalid="ignore"):
                low = arr < feature.min if feature.min is not None else np.zeros(arr.shape, dtype=bool)
                high = arr > feature.max if feature.max is not None else np.zeros(arr.shape, dtype=bool)
            count = int(np.count_nonzero(low | high))
            if count:
                out.append(
                    {
                        "feature": feature.name,
                        "kind": "outOfRange",
                        "rows": count,
                        "message": f"{count} value(s) outside the training range "
                        f"[{feature.min}, {feature.max}]",
                    }
                )
        elif feature.allowed is not None and not feature.numeric:
            allowed = _allowed(feature.allowed)
            unknown = {v for v in arr.tolist() if v not in allowed}
            if unknown:
                count = int(sum(1 for v in arr.tolist() if v in unknown))
                shown = sorted(map(str, unknown))[:5]
                out.append(
                    {
                        "feature": feature.name,
                        "kind": "unknownCategory",
                        "rows": count,
                        "message": f"{count} value(s) not seen in training: {shown}",
                    }
                )
    return out


def _within(arr: np.ndarray, low: float | None, high: float | None) -> bool:
    """All values within [low, high], NaN ignored (as the comparisons below ignore it)."""
    with np.errstate(invalid="ignore"):
        if low is not None and np.fmin.reduce(arr) < low:
            return False
        return not (high is not None and np.fmax.reduce(arr) > high)


@functools.lru_cache(maxsize=256)
def _allowed(values: tuple[Any, ...]) -> frozenset[Any]:
    return frozenset(values)


def _check_rows(rows: int, max_rows: int) -> None:
    if rows == 0:
        raise InputError(422, "the batch has no rows")
    if rows > max_rows:
        raise InputError(
            413, f"the batch has {rows} rows; this server accepts at most {max_rows} per request"
        )


def _finish(schema: bundle_mod.Schema, columns: dict[str, np.ndarray], rows: int) -> Batch:
    ordered = {name: columns[name] for name in schema.names}
    return Batch(columns=ordered, rows=rows, warnings=_warnings(schema, ordered))


def _names_check(schema: bundle_mod.Schema, given: list[str], *, what: str) -> None:
    expected = set(schema.names)
    got = set(given)
    missing = [n for n in schema.names if n not in got]
    unknown = sorted(got - expected)
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing {what}: {missing}")
        if unknown:
            parts.append(f"unknown {what}: {unknown}")
        raise InputError(422, "; ".join(parts) + f" (expected exactly: {list(schema.names)})")
    if len(given) != len(got):
        dupes = sorted({n for n in given if given.count(n) > 1})
        raise InputError(422, f"duplicate {what}: {dupes}")


# ----------------------------------------------------------------------------------------------
# KServe v1: {"instances": [[...], ...]} or {"instances": [{"col": v, ...}, ...]}
# ----------------------------------------------------------------------------------------------


def decode_v1(body: dict[str, Any], schema: bundle_mod.Schema, *, max_rows: int) -> Batch:
    unknown_keys = sorted(set(body) - {"instances", "parameters"})
    if unknown_keys:
        raise InputError(422, f"unknown top-level field(s) {unknown_keys}; a v1 request holds 'instances'")
    instances = body.get("instances")
    if not isinstance(instances, list):
        raise InputError(
            422, "'instances' must be a list of rows (lists of values or objects of named columns)"
        )
    _check_rows(len(instances), max_rows)
    names = schema.names
    width = len(names)
    kinds = set(map(type, instances))  # JSON gives exact dicts and lists
    if kinds == {dict}:
        # Rows of the schema's width that hold every name hold exactly its names: the usual
        # case, checked without a loop per row; else the first row that does not is named.
        raw: dict[str, list[Any]] | None = None
        if set(map(len, instances)) == {width}:
            try:
                raw = {n: [row[n] for row in instances] for n in names}
            except KeyError:
                raw = None
        if raw is None:
            for i, row in enumerate(instances):
                if len(row) != width or not all(n in row for n in names):
                    try:
                        _names_check(schema, list(row), what="columns")
                    except InputError as exc:
                        raise InputError(422, f"instance {i}: {exc.message}") from None
            raise AssertionError("unreachable: some instance lacks a column")  # pragma: no cover
    elif kinds == {list}:
        for i, row in enumerate(instances):
            if len(row) != width:
                raise InputError(
                    422, f"instance {i} has {len(row)} values; expected {width} in the order {list(names)}"
                )
        raw = {n: [row[j] for row in instances] for j, n in enumerate(names)}
    else:
        raise InputError(
            422, "every instance must be a list of values or an object of named columns, not mixed"
        )
    columns = {f.name: _column(f, raw[f.name], where="") for f in schema.features}
    return _finish(schema, columns, len(instances))


# ----------------------------------------------------------------------------------------------
# Open Inference Protocol v2: named-column tensors or one numeric [N, F] tensor
# ----------------------------------------------------------------------------------------------


def _flatten(data: Any, *, name: str) -> list[Any]:
    if not isinstance(data, list):
        raise InputError(422, f"input {name!r}: 'data' must be a list")
    if data and isinstance(data[0], list):
        out: list[Any] = []
        stack = [data]

        # Row-major flattening of nested lists (OIP allows both forms).
        def walk(node: list[Any], depth: int) -> None:
            if depth > 8:
                raise InputError(422, f"input {name!r}: 'data' is nested too deeply")
            for item in node:
                if isinstance(item, list):
                    walk(item, depth + 1)
                else:
                    out.append(item)

        walk(stack[0], 0)
        return out
    return data


def _shape(tensor: dict[str, Any], *, name: str) -> list[int]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not shape or not all(type(d) is int and d >= 0 for d in shape):
        raise InputError(422, f"input {name!r}: 'shape' must be a non-empty list of non-negative integers")
    return shape


def _tensor_header(tensor: Any, index: int) -> tuple[str, str, list[int]]:
    if not isinstance(tensor, dict):
        raise InputError(422, f"inputs[{index}] must be an object with name, shape, datatype and data")
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(422, f"inputs[{index}]: 'name' must be a non-empty string")
    unknown = sorted(set(tensor) - {"name", "shape", "datatype", "data", "parameters"})
    if unknown:
        raise InputError(422, f"input {name!r}: unknown field(s) {unknown}")
    datatype = tensor.get("datatype")
    if datatype not in V2_DATATYPES:
        raise InputError(422, f"input {name!r}: 'datatype' must be one of {sorted(V2_DATATYPES)}")
    if "data" not in tensor:
        raise InputError(422, f"input {name!r}: 'data' is required")
    return name, str(datatype), _shape(tensor, name=name)


def decode_v2(body: dict[str, Any], schema: bundle_mod.Schema, *, max_rows: int) -> Batch:
    unknown_keys = sorted(set(body) - {"id", "inputs", "outputs", "parameters"})
    if unknown_keys:
        raise InputError(422, f"unknown top-level field(s) {unknown_keys}; a v2 request holds 'inputs'")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InputError(422, "'inputs' must be a non-empty list of tensors")
    headers = [_tensor_header(t, i) for i, t in enumerate(inputs)]
    names = schema.names
    width = len(names)
    if len(inputs) == 1 and len(headers[0][2]) == 2 and (headers[0][0] not in names or width > 1):
        return _decode_matrix(inputs[0], headers[0], schema, max_rows=max_rows)
    _names_check(schema, [h[0] for h in headers], what="input tensors")
    rows: int | None = None
    raw: dict[str, list[Any]] = {}
    by_name = {f.name: f for f in schema.features}
    for tensor, (name, datatype, shape) in zip(inputs, headers, strict=True):
        feature = by_name[name]
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise InputError(422, f"input {name!r}: shape {shape} is not a column; use [N] or [N, 1]")
        if rows is None:
            rows = shape[0]
            _check_rows(rows, max_rows)
        elif shape[0] != rows:
            raise InputError(422, f"input {name!r} has {shape[0]} rows but the first input has {rows}")
        if datatype not in ACCEPTED_V2[feature.dtype]:
            raise InputError(
                422,
                f"input {name!r}: datatype {datatype} does not fit feature dtype {feature.dtype!r} "
                f"(use one of {sorted(ACCEPTED_V2[feature.dtype])})",
            )
        data = _flatten(tensor["data"], name=name)
        if len(data) != shape[0]:
            raise InputError(
                422, f"input {name!r}: shape {shape} needs {shape[0]} values, 'data' has {len(data)}"
            )
        raw[name] = data
    assert rows is not None
    columns = {f.name: _column(f, raw[f.name], where="input") for f in schema.features}
    return _finish(schema, columns, rows)


def _decode_matrix(
    tensor: dict[str, Any], header: tuple[str, str, list[int]], schema: bundle_mod.Schema, *, max_rows: int
) -> Batch:
    name, datatype, shape = header
    width = len(schema.names)
    if shape[1] != width:
        raise InputError(
            422,
            f"input {name!r}: shape {shape} has {shape[1]} columns; "
            f"the model takes {width}: {list(schema.names)}",
        )
    _check_rows(shape[0], max_rows)
    non_numeric = [f.name for f in schema.features if not f.numeric]
    if non_numeric:
        raise InputError(
            422,
            f"input {name!r}: a single [N, F] tensor only fits all-numeric schemas; "
            f"features {non_numeric} are "
            "not numeric, send one named tensor per column",
        )
    if datatype not in NUMERIC_V2:
        raise InputError(422, f"input {name!r}: datatype {datatype} is not numeric (use FP32 or FP64)")
    data = _flatten(tensor["data"], name=name)
    if len(data) != shape[0] * width:
        raise InputError(
            422, f"input {name!r}: shape {shape} needs {shape[0] * width} values, 'data' has {len(data)}"
        )
    for i, value in enumerate(data):
        if type(value) is not float and type(value) is not int:
            shown = json.dumps(value)[:60]
            raise InputError(
                422, f"input {name!r}: element {i} (row {i // width}) is {shown}, expected a number"
            )
    matrix = np.asarray(data, dtype=np.float64).reshape(shape[0], width)
    columns: dict[str, np.ndarray] = {}
    for j, feature in enumerate(schema.features):
        col = matrix[:, j]
        if feature.dtype == "int":
            if not np.all(np.mod(col, 1) == 0):
                raise InputError(422, f"input {name!r}: column {j} ({feature.name!r}) must hold integers")
            col = col.astype(np.int64)
        columns[feature.name] = col
    return _finish(schema, columns, shape[0])
