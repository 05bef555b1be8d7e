"""Per-row feature attributions (SHAP) in the Dataset's original columns, and their drift.

Why: a prediction a reviewer cannot explain is hard to trust, and a model whose reasons drift
(the same answers for other reasons) is a problem that input drift alone does not show.

Which explainer (chosen once, when the model loads, from the loaded objects: nothing is
unpickled here, shap only reads the fitted estimator's arrays):

- ``tree``: ``shap.TreeExplainer`` (path-dependent TreeSHAP, exact) on the Pipeline's final
  estimator when it is a tree model shap covers (scikit-learn trees, forests, gradient
  boosting, XGBoost, LightGBM), on the preprocessed columns;
- ``linear``: ``shap.LinearExplainer`` on a ``sklearn.linear_model`` estimator, with the
  background sample as the (independent) masker, on the preprocessed columns;
- ``permutation``: ``shap.PermutationExplainer`` on the WHOLE model (Pipeline or ONNX network
  behind its preprocessor), model-agnostic, on the original columns, masking with up to
  ``PERMUTATION_BACKGROUND_ROWS`` background rows and ``PERMUTATIONS`` antithetic permutations
  per row: an estimate of the Shapley values whose sum is exact.

The first two explain the preprocessed columns; each preprocessed column is traced back to the
original column it came from (``ColumnTransformer.output_indices_``, ``OneHotEncoder``'s output
count per input, column-wise scalers and imputers), and a column's attribution is the sum of
its preprocessed columns' (a one-hot column's categories add up to one number). Where that
trace is not certain (a transformer that mixes columns), the permutation explainer is used.
Before a method is kept, it is checked on background rows: attributions + base value must give
the model's own output, which also tells the output space:

- ``probability`` (a forest's or a permutation's: ``predict_proba``, per class);
- ``margin`` (boosted trees, logistic regression): per class, the log-odds for a binary model
  (class 0's is the negation of class 1's, ``sigmoid(margin) = probability``), the softmax
  logits for a multiclass one (``softmax(margins) = probabilities``);
- ``raw``: a regressor's prediction.

The background sample is part of the model directory: training stores up to
``BACKGROUND_ROWS`` rows of the training split, in the original columns, as JSON in
``baseline.json`` (``explanations.background``; ``background_sample``), and the mean
``|attribution|`` per feature over a validation sample in the model card
(``explanations.meanAbsAttribution``; ``training_summary``). A model directory without a
background sample (trained before this, or by a team's own code) still serves; its explain
endpoints answer 501 with the reason (``Unavailable``).

Attribution drift (``AttributionMonitor``): the request path only keeps a reference to the
last rows served (no copy, no model call); a background thread explains at most
``sample_rows`` of them every ``interval`` seconds and keeps the per-row mean ``|attribution|``
of the last ``window`` explained rows in a ring buffer with a running sum, as ``drift`` keeps
its bins, so the ``/infer`` latency does not change. The importance of a feature in a row is
the mean over the model's outputs (classes) of ``|attribution|``.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from mlops_workloads.serve import bundle as bundle_mod
from mlops_workloads.serve import inputs

log = logging.getLogger("mlops_workloads.serve")

BACKGROUND_ROWS = 100
"""Rows of the training split stored with the model as the background sample."""
PERMUTATION_BACKGROUND_ROWS = 50
"""Background rows the permutation explainer integrates over (its cost is linear in them)."""
PERMUTATIONS = 4
"""Antithetic permutations per explained row (each costs 2·features+1 masked model calls)."""
MAX_ROWS = {"tree": 100, "linear": 100, "permutation": 20}
"""Rows one explain request (and one monitor pass) may explain, by method."""
CHECK_ROWS = 5
"""Background rows the additivity check runs on when a method is chosen."""
BASELINE_KEY = "explanations"
"""The key in baseline.json (background sample) and in model_card.json (training summary)."""
MODEL_AGNOSTIC = "permutation"


class Unavailable(Exception):
    """This model cannot be explained here; the message says why (the explain routes answer 501)."""


@dataclasses.dataclass(frozen=True)
class Attributions:
    """``values[row, feature, output]`` in ``Explainer.features`` x ``Explainer.outputs`` order;
    ``values.sum(axis=1) + base_values`` is the model's output in ``Explainer.space``."""

    values: np.ndarray
    base_values: np.ndarray


# ------------------------------------------------------------------------------------------------
# the background sample (written by training, read by serving)
# ------------------------------------------------------------------------------------------------


def _json_value(dtype: str, value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):
        value = value.item()
    if dtype == "float":
        return float(value)
    if dtype == "int":
        return int(value) if float(value).is_integer() else float(value)
    if dtype == "bool":
        return bool(value)
    if dtype == "category" and type(value) is int:
        return value
    return str(value)


def background_sample(
    frame: pd.DataFrame, *, schema: bundle_mod.Schema, rows: int = BACKGROUND_ROWS, seed: int = 0
) -> dict[str, Any] | None:
    """Up to ``rows`` rows of ``frame`` (seeded), in the schema's columns, as served JSON values.

    Rows with a missing categorical value are left out (a request cannot carry one either);
    ``None`` when no row is left.
    """
    names = list(schema.names)
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks the schema's columns {missing}")
    part = frame[names]
    categorical = [f.name for f in schema.features if not f.numeric]
    if categorical:
        part = part[part[categorical].notna().all(axis=1)]
    if len(part) == 0:
        return None
    if len(part) > rows:
        part = part.sample(n=rows, random_state=seed)
    dtypes = [f.dtype for f in schema.features]
    data = [
        [_json_value(dtype, value) for dtype, value in zip(dtypes, row, strict=True)]
        for row in part.itertuples(index=False, name=None)
    ]
    return {"columns": names, "rows": len(data), "data": data}


def served_frame(sample: dict[str, Any], schema: bundle_mod.Schema) -> pd.DataFrame:
    """A stored sample as the frame a request with the same rows would be (``inputs.decode_v1``)."""
    columns = sample.get("columns")
    data = sample.get("data")
    if not isinstance(columns, list) or not isinstance(data, list) or not data:
        raise ValueError("the sample must hold 'columns' and non-empty 'data'")
    instances = [dict(zip(columns, row, strict=True)) for row in data]
    try:
        batch = inputs.decode_v1({"instances": instances}, schema, max_rows=len(instances))
    except inputs.InputError as exc:
        raise ValueError(f"the sample does not fit schema.json: {exc.message}") from exc
    return batch.frame


def stored_background(baseline: dict[str, Any], schema: bundle_mod.Schema) -> pd.DataFrame:
    """The background sample in baseline.json, or ``Unavailable``."""
    section = baseline.get(BASELINE_KEY) if isinstance(baseline, dict) else None
    sample = section.get("background") if isinstance(section, dict) else None
    if not isinstance(sample, dict):
        raise Unavailable(
            "this model directory has no background sample for explanations (baseline.json "
            "'explanations.background'): it was trained before explanations or by your own code; "
            "retrain it with the built-in trainer to explain it"
        )
    try:
        return served_frame(sample, schema)
    except ValueError as exc:
        raise Unavailable(f"the background sample in baseline.json is unusable: {exc}") from exc


# ------------------------------------------------------------------------------------------------
# tracing preprocessed columns back to original ones
# ------------------------------------------------------------------------------------------------

_COLUMNWISE = (
    "StandardScaler",
    "MinMaxScaler",
    "MaxAbsScaler",
    "RobustScaler",
    "SimpleImputer",
    "OrdinalEncoder",
    "PowerTransformer",
    "QuantileTransformer",
    "Binarizer",
)
"""scikit-learn transformers whose k-th output column is made from their k-th input column alone
(when the output has as many columns as the input: SimpleImputer may drop empty ones)."""


def _is_sklearn(obj: Any, *names: str) -> bool:
    return type(obj).__module__.startswith("sklearn.") and type(obj).__name__ in names


def _out_width(est: Any, names: list[str]) -> int | None:
    try:
        return len(est.get_feature_names_out(names))
    except Exception:
        return None


def _resolve_columns(cols: Any, names_in: list[str]) -> list[str] | None:
    if isinstance(cols, str):
        return [cols]
    if isinstance(cols, (int, np.integer)) and not isinstance(cols, bool):
        return [names_in[int(cols)]]
    if isinstance(cols, slice):
        return names_in[cols]
    values = list(cols) if isinstance(cols, (list, tuple, np.ndarray, pd.Index)) else None
    if values is None:
        return None
    if values and all(isinstance(v, (bool, np.bool_)) for v in values):
        return [n for n, keep in zip(names_in, values, strict=True) if keep]
    out: list[str] = []
    for v in values:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, (int, np.integer)):
            out.append(names_in[int(v)])
        else:
            return None
    return out


def trace_columns(est: Any, names: list[str]) -> list[str] | None:
    """For each output column of the fitted transformer ``est`` fed the columns ``names``, the
    input column it comes from; ``None`` where an output depends on several inputs (or is unknown)."""
    if est is None or (isinstance(est, str) and est == "passthrough"):
        return list(names)
    if isinstance(est, str):
        return [] if est == "drop" else None
    if _is_sklearn(est, "Pipeline"):
        current: list[str] | None = list(names)
        for _, step in est.steps:
            if current is None:
                return None
            current = trace_columns(step, current)
        return current
    if _is_sklearn(est, "ColumnTransformer"):
        names_in = [str(n) for n in getattr(est, "feature_names_in_", names)]
        indices = getattr(est, "output_indices_", None)
        if not isinstance(indices, dict):
            return None
        width = max((s.stop for s in indices.values()), default=0)
        out: list[str | None] = [None] * width
        for name, trans, cols in est.transformers_:
            part = indices.get(name)
            if part is None or part.stop == part.start:
                continue
            resolved = _resolve_columns(cols, names_in)
            if resolved is None:
                return None
            sub = trace_columns(trans, resolved)
            if sub is None or len(sub) != part.stop - part.start:
                return None
            out[part] = sub
        if any(o is None for o in out):
            return None
        return [str(o) for o in out]
    if len(names) == 1:
        width = _out_width(est, names)
        return None if width is None else names * width
    if _is_sklearn(est, "OneHotEncoder"):
        counts = getattr(est, "_n_features_outs", None)
        if counts is None or len(counts) != len(names):
            return None
        traced = [n for n, c in zip(names, counts, strict=True) for _ in range(int(c))]
        return traced if _out_width(est, names) == len(traced) else None
    if _is_sklearn(est, *_COLUMNWISE):
        return list(names) if _out_width(est, names) == len(names) else None
    return None


# ------------------------------------------------------------------------------------------------
# the explainers
# ------------------------------------------------------------------------------------------------


def _dense(x: Any) -> np.ndarray:
    if hasattr(x, "toarray"):
        x = x.toarray()
    return np.ascontiguousarray(np.asarray(x, dtype=np.float64))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    out: np.ndarray = z / z.sum(axis=1, keepdims=True)
    return out


def _outputs3(values: Any) -> np.ndarray:
    """shap's values as (rows, features, outputs)."""
    if isinstance(values, list):
        arr = np.stack([np.asarray(v, dtype=np.float64) for v in values], axis=-1)
    else:
        arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"unexpected attribution shape {arr.shape}")
    return arr


class Explainer:
    """One model's explainer: ``explain(frame)`` for frames in the schema's columns."""

    method: str
    explainer: str  # shap's class name
    space: str = ""  # set by the additivity check
    features: tuple[str, ...]
    outputs: tuple[Any, ...]

    def __init__(self, *, pipeline: Any, schema: bundle_mod.Schema, classes: tuple[Any, ...] | None) -> None:
        self.pipeline = pipeline
        self.schema = schema
        self.features = schema.names
        self.classification = schema.task == "classification"
        self.outputs = tuple(classes) if self.classification and classes else ("prediction",)
        self._lock = threading.Lock()

    @property
    def max_rows(self) -> int:
        return MAX_ROWS[self.method]

    def explain(self, frame: pd.DataFrame) -> Attributions:
        with self._lock:
            values, base = self._explain(frame)
        if self.classification and len(self.outputs) == 2 and values.shape[2] == 1:
            # One margin (class 1's log-odds): class 0's is its negation.
            values = np.concatenate([-values, values], axis=2)
            base = np.concatenate([-base, base])
        if values.shape[1:] != (len(self.features), len(self.outputs)) or base.shape != (len(self.outputs),):
            raise ValueError(
                f"the {self.explainer} gave attributions of shape {values.shape} and base values of "
                f"shape {base.shape} for {len(self.features)} features and {len(self.outputs)} outputs"
            )
        return Attributions(values=values, base_values=base)

    def _explain(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def model_output(self, frame: pd.DataFrame) -> np.ndarray:
        """What the model answers for ``frame``: probabilities (rows, classes) or predictions (rows, 1)."""
        if self.classification:
            return np.asarray(self.pipeline.predict_proba(frame), dtype=np.float64)
        return np.asarray(self.pipeline.predict(frame), dtype=np.float64).reshape(-1, 1)

    def check(self, frame: pd.DataFrame) -> str:
        """Set and return the output space in which attributions + base value give the model's
        output on ``frame``; ``ValueError`` if they give it in none."""
        got = self.explain(frame)
        total = got.values.sum(axis=1) + got.base_values
        want = self.model_output(frame)
        if total.shape != want.shape:
            raise ValueError(f"outputs of shape {total.shape}, the model's are {want.shape}")
        if not self.classification:
            scale = max(1.0, float(np.max(np.abs(want))))
            if np.allclose(total, want, rtol=1e-4, atol=1e-4 * scale):
                self.space = "raw"
                return self.space
        else:
            candidates = [("probability", total)]
            candidates.append(("margin", _sigmoid(total) if total.shape[1] == 2 else _softmax(total)))
            for space, value in candidates:
                if np.all(np.isfinite(value)) and np.allclose(value, want, rtol=1e-4, atol=1e-4):
                    self.space = space
                    return space
        worst = float(np.max(np.abs(total - want)))
        raise ValueError(f"attributions do not add up to the model's output (off by up to {worst:.3g})")


class _TransformedExplainer(Explainer):
    """Tree or linear SHAP on the final estimator's input, summed back to the original columns."""

    def __init__(
        self,
        *,
        pipeline: Any,
        schema: bundle_mod.Schema,
        classes: tuple[Any, ...] | None,
        preprocess: Any,
        estimator: Any,
        traced: list[str],
        shap_explainer: Any,
        method: str,
    ) -> None:
        super().__init__(pipeline=pipeline, schema=schema, classes=classes)
        self.method = method
        self.explainer = type(shap_explainer).__name__
        self._preprocess = preprocess
        self._estimator = estimator
        self._shap = shap_explainer
        index = {name: i for i, name in enumerate(self.features)}
        # group[t, f] = 1 when preprocessed column t comes from original column f.
        self._group = np.zeros((len(traced), len(self.features)))
        for t, name in enumerate(traced):
            self._group[t, index[name]] = 1.0

    def _transform(self, frame: pd.DataFrame) -> np.ndarray:
        return _dense(frame if self._preprocess is None else self._preprocess.transform(frame))

    def _explain(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        x = self._transform(frame)
        kwargs = {"check_additivity": False} if self.method == "tree" else {}
        values = _outputs3(self._shap.shap_values(x, **kwargs))  # (rows, preprocessed, outputs)
        grouped = np.einsum("rto,tf->rfo", values, self._group)
        base = np.atleast_1d(np.asarray(self._shap.expected_value, dtype=np.float64)).reshape(-1)
        return grouped, base


class _Codec:
    """Original columns <-> the float matrix shap's maskers need: categorical values become codes
    (indexes in a per-column list that only grows, so the background's codes never change)."""

    def __init__(self, schema: bundle_mod.Schema) -> None:
        self.features = schema.features
        self.books: dict[str, list[Any]] = {f.name: [] for f in schema.features if not f.numeric}
        self._index: dict[str, dict[Any, int]] = {name: {} for name in self.books}

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(frame), len(self.features)), dtype=np.float64)
        for j, f in enumerate(self.features):
            values = frame[f.name].to_numpy()
            if f.numeric:
                out[:, j] = np.asarray(values, dtype=np.float64)
                continue
            book, index = self.books[f.name], self._index[f.name]
            codes = np.empty(len(values), dtype=np.float64)
            for i, v in enumerate(values.tolist()):
                key = (type(v), v)
                code = index.get(key)
                if code is None:
                    code = index[key] = len(book)
                    book.append(v)
                codes[i] = code
            out[:, j] = codes
        return out

    def decode(self, matrix: np.ndarray) -> pd.DataFrame:
        columns: dict[str, Any] = {}
        for j, f in enumerate(self.features):
            col = matrix[:, j]
            if f.numeric:
                if f.dtype == "int" and not np.isnan(col).any():
                    columns[f.name] = col.astype(np.int64)
                else:
                    columns[f.name] = col
            else:
                book = np.asarray(self.books[f.name], dtype=object)
                decoded = book[col.astype(np.int64)]
                columns[f.name] = decoded.astype(bool) if f.dtype == "bool" else decoded
        return pd.DataFrame(columns, copy=False)


class _PermutationExplainer(Explainer):
    """``shap.PermutationExplainer`` on the whole model, over the original columns."""

    method = MODEL_AGNOSTIC
    explainer = "PermutationExplainer"

    def __init__(
        self,
        *,
        pipeline: Any,
        schema: bundle_mod.Schema,
        classes: tuple[Any, ...] | None,
        background: pd.DataFrame,
        shap: Any,
    ) -> None:
        super().__init__(pipeline=pipeline, schema=schema, classes=classes)
        self._codec = _Codec(schema)
        rows = background.iloc[:PERMUTATION_BACKGROUND_ROWS]
        masker = shap.maskers.Independent(self._codec.encode(rows), max_samples=PERMUTATION_BACKGROUND_ROWS)
        self._max_evals = PERMUTATIONS * (2 * len(self.features) + 1)
        self._shap = shap.PermutationExplainer(self._model, masker, seed=0)

    def _model(self, matrix: np.ndarray) -> np.ndarray:
        return self.model_output(self._codec.decode(np.asarray(matrix, dtype=np.float64)))

    def _explain(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        got = self._shap(self._codec.encode(frame), max_evals=self._max_evals, silent=True)
        values = _outputs3(got.values)
        base = np.asarray(got.base_values, dtype=np.float64).reshape(len(frame), -1)[0]
        return values, base


def _import_shap() -> Any:
    try:
        import shap  # type: ignore[import-untyped]
    except ImportError as exc:
        raise Unavailable(f"shap is not installed in this image: {exc}") from exc
    return shap


def _split(pipeline: Any) -> tuple[Any, Any]:
    """(preprocessing, final estimator) of a scikit-learn Pipeline; (None, model) otherwise."""
    if _is_sklearn(pipeline, "Pipeline") and len(pipeline.steps) >= 1:
        final = pipeline.steps[-1][1]
        return (pipeline[:-1] if len(pipeline.steps) > 1 else None), final
    return None, pipeline


def _tree_or_linear(shap: Any, estimator: Any, x: np.ndarray) -> tuple[str, Any] | None:
    module = type(estimator).__module__
    if module.startswith(("sklearn.tree", "sklearn.ensemble", "xgboost", "lightgbm")):
        return "tree", shap.TreeExplainer(estimator)
    if module.startswith("sklearn.linear_model") and hasattr(estimator, "coef_"):
        masker = shap.maskers.Independent(x, max_samples=BACKGROUND_ROWS)
        return "linear", shap.LinearExplainer(estimator, masker)
    return None


def build(
    pipeline: Any, *, schema: bundle_mod.Schema, classes: tuple[Any, ...] | None, background: pd.DataFrame
) -> Explainer:
    """The model's explainer: tree or linear SHAP where they apply and add up, else permutation."""
    shap = _import_shap()
    if len(background) == 0:
        raise Unavailable("the background sample is empty")
    check = background.iloc[:CHECK_ROWS]
    preprocess, estimator = _split(pipeline)
    why = ""
    if not isinstance(pipeline, bundle_mod.OnnxPipeline):
        try:
            names = list(schema.names)
            traced = trace_columns(preprocess, names) if preprocess is not None else names
            x = _dense(background if preprocess is None else preprocess.transform(background))
            if traced is None or len(traced) != x.shape[1] or not set(traced) <= set(schema.names):
                why = "the preprocessed columns cannot be traced back to the original ones"
            else:
                chosen = _tree_or_linear(shap, estimator, x)
                if chosen is not None:
                    method, shap_explainer = chosen
                    explainer: Explainer = _TransformedExplainer(
                        pipeline=pipeline,
                        schema=schema,
                        classes=classes,
                        preprocess=preprocess,
                        estimator=estimator,
                        traced=traced,
                        shap_explainer=shap_explainer,
                        method=method,
                    )
                    explainer.check(check)
                    return explainer
        except Exception as exc:  # shap does not cover it, or it did not add up: model-agnostic
            why = f"{type(exc).__name__}: {exc}"
    if why:
        log.info("explanations use the permutation explainer: %s", why[:300])
    explainer = _PermutationExplainer(
        pipeline=pipeline, schema=schema, classes=classes, background=background, shap=shap
    )
    try:
        explainer.check(check)
    except ValueError as exc:
        raise Unavailable(f"no explainer adds up for this model: {exc}") from exc
    return explainer


def from_bundle(bundle: bundle_mod.Bundle) -> Explainer:
    """The loaded model's explainer, or ``Unavailable`` (why)."""
    background = stored_background(bundle.baseline, bundle.schema)
    return build(bundle.pipeline, schema=bundle.schema, classes=bundle.classes, background=background)


def load(bundle: bundle_mod.Bundle) -> tuple[Explainer | None, str]:
    """``from_bundle`` that never raises: (explainer, "") or (None, why)."""
    try:
        return from_bundle(bundle), ""
    except Unavailable as exc:
        return None, str(exc)
    except Exception as exc:  # A model that cannot be explained must still serve.
        log.exception("building the explainer failed; the explain endpoints answer 501")
        return None, f"building the explainer failed: {type(exc).__name__}: {exc}"[:500]


# ------------------------------------------------------------------------------------------------
# importance: training's, and its drift while serving
# ------------------------------------------------------------------------------------------------


def importance(values: np.ndarray) -> np.ndarray:
    """Per row and feature, the mean over outputs of |attribution|: (rows, features)."""
    out: np.ndarray = np.abs(values).mean(axis=2)
    return out


def training_summary(explainer: Explainer, frame: pd.DataFrame, *, split: str) -> dict[str, Any]:
    """The model card's ``explanations``: how the model is explained and its mean |attribution|."""
    rows = frame.iloc[: explainer.max_rows]
    got = explainer.explain(rows)
    means = importance(got.values).mean(axis=0)
    return {
        "method": explainer.method,
        "explainer": explainer.explainer,
        "outputSpace": explainer.space,
        "outputs": list(explainer.outputs),
        "baseValues": got.base_values.tolist(),
        "split": split,
        "rows": len(rows),
        "meanAbsAttribution": {f: float(v) for f, v in zip(explainer.features, means, strict=True)},
    }


def training_means(card: dict[str, Any], explainer: Explainer) -> dict[str, float] | None:
    """Training's mean |attribution| per feature from the card, if it was made the same way."""
    summary = card.get(BASELINE_KEY) if isinstance(card, dict) else None
    if not isinstance(summary, dict) or not isinstance(summary.get("meanAbsAttribution"), dict):
        return None
    if summary.get("method") != explainer.method or summary.get("outputSpace") != explainer.space:
        log.warning(
            "the model card's attributions were made by %s/%s, this server explains by %s/%s: "
            "training's mean |attribution| is not compared",
            summary.get("method"),
            summary.get("outputSpace"),
            explainer.method,
            explainer.space,
        )
        return None
    means = summary["meanAbsAttribution"]
    out: dict[str, float] = {}
    for f in explainer.features:
        value = means.get(f)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[f] = float(value)
    return out


class AttributionWindow:
    """The per-feature importance of the last ``window`` explained rows (ring buffer + running sum)."""

    def __init__(self, features: int, window: int) -> None:
        if window < 1:
            raise ValueError("the attribution window must hold at least one row")
        self.ring = np.zeros((window, features), dtype=np.float64)
        self.total = np.zeros(features, dtype=np.float64)
        self.filled = 0
        self.head = 0

    def add(self, rows: np.ndarray) -> None:
        size = len(self.ring)
        if len(rows) >= size:
            self.ring[:] = rows[-size:]
            self.filled, self.head = size, 0
            self.total = self.ring.sum(axis=0)
            return
        positions = (self.head + np.arange(len(rows))) % size
        if self.filled == size:
            self.total -= self.ring[positions].sum(axis=0)
        else:
            overflow = max(0, self.filled + len(rows) - size)
            if overflow:
                self.total -= self.ring[positions[len(rows) - overflow :]].sum(axis=0)
            self.filled = min(size, self.filled + len(rows))
        self.ring[positions] = rows
        self.total += rows.sum(axis=0)
        self.head = (self.head + len(rows)) % size

    def means(self) -> np.ndarray:
        if self.filled == 0:
            return np.zeros_like(self.total)
        out: np.ndarray = np.maximum(self.total, 0.0) / self.filled
        return out


class AttributionMonitor:
    """Explains a bounded sample of served rows off the request path; see the module docstring.

    ``publish(means, rows)`` receives the window's mean |attribution| per feature after each pass
    (the telemetry gauges); ``on_error()`` is called when a pass fails.
    """

    def __init__(
        self,
        explainer: Explainer,
        *,
        window: int = 1000,
        interval: float = 30.0,
        sample_rows: int | None = None,
        publish: Callable[[dict[str, float], int], None] | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self.explainer = explainer
        self.interval = interval
        self.sample_rows = max(1, min(sample_rows or explainer.max_rows, explainer.max_rows))
        self.window = AttributionWindow(len(explainer.features), window)
        self.explained = 0
        self._publish = publish
        self._on_error = on_error
        self._pending: collections.deque[tuple[dict[str, np.ndarray], int]] = collections.deque()
        self._pending_rows = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def offer(self, columns: dict[str, np.ndarray], rows: int) -> None:
        """Keep a reference to a served batch's columns (the request path: no copy, no model call)."""
        if rows <= 0:
            return
        with self._lock:
            self._pending.append((columns, rows))
            self._pending_rows += rows
            while self._pending_rows - self._pending[0][1] >= self.sample_rows:
                _, dropped = self._pending.popleft()
                self._pending_rows -= dropped

    def _take(self) -> pd.DataFrame | None:
        with self._lock:
            pending, self._pending = self._pending, collections.deque()
            self._pending_rows = 0
        if not pending:
            return None
        columns = {
            name: np.concatenate([cols[name] for cols, _ in pending])[-self.sample_rows :]
            for name in self.explainer.features
        }
        return pd.DataFrame(columns, copy=False)

    def run_once(self) -> int:
        """Explain the rows offered since the last pass (at most ``sample_rows``); the rows explained."""
        frame = self._take()
        if frame is None:
            return 0
        got = self.explainer.explain(frame)
        self.window.add(importance(got.values))
        self.explained += len(frame)
        if self._publish is not None:
            self._publish(self.means(), self.window.filled)
        return len(frame)

    def means(self) -> dict[str, float]:
        return {f: float(v) for f, v in zip(self.explainer.features, self.window.means(), strict=True)}

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:  # The monitor is best effort: the answers never depend on it.
                log.exception("explaining the served sample failed")
                if self._on_error is not None:
                    self._on_error()

    def start(self) -> None:
        if self._thread is None and self.interval > 0:
            self._thread = threading.Thread(target=self._loop, name="attribution-monitor", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.ident is not None:  # started
            self._thread.join(timeout)
        self._thread = None
