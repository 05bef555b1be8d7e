"""The reviewed rows both models are scored on: labelled captured rows the challenger never saw.

Read with the feedback source's own reader (``prepare.feedback.read_root``, ``labelled: true``):
the rows of the deployment's capture root whose latest decision is confirmed or corrected, the
label as the Dataset's target, the features under their original names. Then:

- no capture yet, or no confirmed or corrected label yet: no reviewed rows, with a warning (the
  test split still decides; never a failure);
- the captured rows lack a feature of the Dataset version (they were answered by a model with
  other inputs): every reviewed row is skipped with a warning, since neither model could score
  them; a feature the Dataset version does not have is ignored;
- a row without a target (a label that could not be read) is skipped, counted in a warning;
- a row whose features and target equal a row of the version's train or validation split is
  excluded (``excluded`` counts them): the challenger learnt from it. Rows are compared by
  ``row_keys``, a 64-bit hash over the canonical values of the feature columns and the target:
  numbers (bools included) as float64 (float32 when either side stores the column as float32),
  so ``1`` and ``1.0`` are the same value; missing values (None, NaN, NA) as one value; other
  values by their text.

Other failures of the reader (unreadable files, a label that is not of the model's type) are
not hidden: they fail the evaluation with the reader's reason.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlops_operator.api import dataset_sources as api_sources
from mlops_operator.api import retrain as api
from mlops_workloads import runtime, storage
from mlops_workloads.prepare import feedback
from mlops_workloads.train import artifacts

LOG = logging.getLogger("mlops_workloads.evaluate")
WHERE = "reviewed rows"
# Only named in the reader's messages, which are logged, never shown.
SOURCE = api_sources.FeedbackSource(model_deployment="reviewed", labelled=True)
MISSING = "\x00missing"


@dataclasses.dataclass(frozen=True)
class Reviewed:
    """The held-out reviewed rows (features and target) and what was left out."""

    frame: pd.DataFrame
    excluded: int
    warnings: tuple[str, ...] = ()


def read(config: api.EvaluateConfig, dataset: artifacts.PreparedDataset) -> Reviewed:
    """The reviewed rows under ``config.reviewed_uri`` that are in neither train nor validation."""
    assert config.reviewed_uri is not None
    root = storage.open_store(
        config.reviewed_uri,
        connection=config.reviewed_s3,
        pvc_root=config.pvc_root,
        secrets_root=config.secrets_root,
    )
    columns = [*dataset.features, dataset.target]
    empty = pd.DataFrame({name: [] for name in columns})
    try:
        got = feedback.read_root(root, SOURCE, target=dataset.target, where=WHERE)
    except runtime.WorkloadError as exc:
        if exc.reason != "FeedbackEmpty":
            raise
        LOG.warning("no reviewed rows: %s", exc.message)
        return Reviewed(
            empty,
            0,
            (
                f"reviewed: no captured row under {root.uri} has a confirmed or corrected label yet; "
                "scored on the test split only",
            ),
        )
    warnings: list[str] = []
    if got.task is not None and dataset.task and got.task != dataset.task:
        warnings.append(
            f"reviewed: the {len(got.frame)} rows were captured from a {got.task} model, the Dataset "
            f"version is {dataset.task}; skipped"
        )
        return Reviewed(empty, 0, tuple(warnings))
    missing = [name for name in dataset.features if name not in got.frame.columns]
    if missing:
        warnings.append(
            f"reviewed: the captured rows lack the Dataset version's features {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}; {len(got.frame)} reviewed rows skipped"
        )
        return Reviewed(empty, 0, tuple(warnings))
    frame = got.frame[columns]
    unlabelled = frame[dataset.target].isna().to_numpy()
    if unlabelled.any():
        warnings.append(f"reviewed: {int(unlabelled.sum())} rows without a readable label skipped")
        frame = frame[~unlabelled]
    frame = _like(frame.reset_index(drop=True), dataset.splits["train"])
    seen = [s for s in (dataset.splits["train"], dataset.splits["validation"]) if len(s)]
    learnt = pd.concat([s[columns] for s in seen], ignore_index=True)
    inside = np.isin(row_keys(frame, columns, like=learnt), row_keys(learnt, columns, like=frame))
    excluded = int(inside.sum())
    held = frame[~inside].reset_index(drop=True)
    LOG.info(
        "reviewed rows under %s: %d labelled, %d held out, %d excluded (in the train or validation split)",
        root.uri,
        len(got.frame),
        len(held),
        excluded,
    )
    return Reviewed(held, excluded, tuple(warnings))


def _like(frame: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s numeric and bool columns in ``reference``'s dtypes where that loses nothing (the
    captured nullable Int64/boolean as the split's int64/bool; float64 where a value is missing
    or not whole). Text columns are left as captured: a category the split never saw must stay."""
    out = frame.copy()
    for name in frame.columns:
        if name not in reference.columns:
            continue
        want = reference[name].dtype
        column = frame[name]
        if column.dtype == want or not _numeric(column):
            continue
        try:
            if pd.api.types.is_bool_dtype(want):
                if not column.isna().any() and pd.api.types.is_bool_dtype(column):
                    out[name] = column.astype(bool)
            elif pd.api.types.is_integer_dtype(want):
                whole = pd.api.types.is_integer_dtype(column) or pd.api.types.is_bool_dtype(column)
                if whole and not column.isna().any():
                    out[name] = column.astype(want)
                else:
                    out[name] = column.to_numpy(dtype=np.float64, na_value=np.nan)
            elif pd.api.types.is_float_dtype(want):
                out[name] = column.to_numpy(dtype=np.float64, na_value=np.nan).astype(want)
        except (TypeError, ValueError):
            continue  # left as captured; the model decides whether it can read it
    return out


def row_keys(frame: pd.DataFrame, columns: Sequence[str], *, like: pd.DataFrame) -> np.ndarray:
    """A uint64 per row of ``frame`` over ``columns``, equal for rows with equal values.

    ``like`` is the frame the keys are compared with: a column is hashed as numbers only when
    it is numeric (or bool) in both, so both sides hash it the same way.
    """
    if len(frame) == 0:
        return np.asarray([], dtype=np.uint64)
    hashed: dict[str, np.ndarray] = {}
    for name in columns:
        column = frame[name]
        other = like[name] if name in like.columns else column
        if _numeric(column) and _numeric(other):
            single = np.float32 in (column.dtype, other.dtype)
            hashed[name] = pd.util.hash_array(_numbers(column, single=single))
        else:
            hashed[name] = pd.util.hash_array(
                np.asarray([_text(v) for v in column.astype(object).tolist()], dtype=object)
            )
    keys: np.ndarray = pd.util.hash_pandas_object(pd.DataFrame(hashed), index=False).to_numpy()
    return keys


def _numeric(column: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column))


def _numbers(column: pd.Series, *, single: bool) -> np.ndarray:
    values: np.ndarray = column.to_numpy(dtype=np.float64, na_value=np.nan)
    if single:
        values = values.astype(np.float32).astype(np.float64)
    values = values + 0.0  # -0.0 → 0.0
    values[np.isnan(values)] = np.nan  # one NaN, whatever its payload
    return values


def _text(value: Any) -> str:
    """One value of a column hashed as text: numbers as their float, missing as one marker."""
    if value is None or value is pd.NA or value is pd.NaT:
        return MISSING
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, (bool, int, float)):
        number = float(value)
        return MISSING if math.isnan(number) else repr(number + 0.0)
    return f"s:{value}"
