"""The trainer contract: what your own training code (``TrainingJob.spec.trainer``) gets and reports.

A TrainingJob with ``spec.trainer`` runs your image and command instead of a built-in
estimator. Your code gets the same JSON config as the built-in trainer and answers with the
same JSON result, so a sweep, the status, the model card and serving treat it alike. This
module is the small helper that reads the one and writes the other; it imports only the
standard library and the contract's constants (torch, scikit-learn, pandas and pydantic are
imported by your code or when a function needs them, never at import), so
``import mlops_workloads as mw`` costs milliseconds::

    import mlops_workloads as mw

    cfg = mw.config()                               # the run's config (below)
    for epoch in range(1, cfg.params.get("epochs", 10) + 1):
        ...                                         # train one epoch
        mw.log_epoch(epoch, loss=loss, accuracy=val_accuracy)
    ...                                             # save the model into cfg.output_dir
    mw.report({"validation": {"accuracy": 0.94}, "test": {"accuracy": 0.93}})

In (``config()``)
    The file named by ``$MLOPS_CONFIG_FILE`` (or the JSON in ``$MLOPS_CONFIG``), a
    ``mlops_operator.api.trainingjob.TrainConfig`` with ``trainer: custom``. ``config()``
    returns it as a ``TrainerConfig``: ``params`` (your free-form params; ``cfg.params.lr``
    or ``cfg.params.get("lr", 0.1)``), ``data`` (local paths of the prepared Dataset
    version: ``train``/``validation``/``test`` parquet files holding the raw feature columns
    and the ``target`` column, ``preprocessor`` (preprocessor.skops, the feature transform
    fitted on train: load it with ``load_skops``), ``schema``, ``baseline``), ``output_dir``
    (write the model here; ``output_uri`` is its storage URI), ``task``,
    ``objective_metric``/``objective_direction``, ``seed``, ``dataset_digest``, and where
    this process stands in a distributed run: ``rank``, ``world_size``, ``local_rank``,
    ``is_chief`` (rank 0). ``cfg.raw`` is the full ``TrainConfig``. ``output_dir`` is a
    local staging directory, whatever the storage: ``report()`` publishes it as a new,
    immutable version ``<output_uri>/<version>/`` (the version: a SHA-256 of the files you
    wrote), so a run never writes over another run's model. Keep nothing there that must
    outlive the pod (a retried pod starts with an empty one).
    Every param is also in the environment as ``MLOPS_PARAM_<NAME>`` (``param_env_name``:
    each character other than ASCII letters and digits turned into ``_``, then upper case;
    the value is compact JSON unless it is a plain string: ``param_env_value``). With several workers the pods
    have ``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` and ``LOCAL_RANK`` as
    torchrun sets them, so ``torch.distributed.init_process_group("nccl")`` just works.

Out (``report()``, ``fail()``)
    ONE compact JSON object of at most 4 KiB in the termination-message file
    (``$MLOPS_RESULT_PATH``, else /dev/termination-log; also printed to stdout):
    ``ok``, ``metrics`` (``{"validation": {name: number}, "test": {...}}``),
    ``objectiveMetric``, ``objectiveValue`` (the objective on validation), ``modelUri``
    (``<output_uri>/<modelVersion>``, plus the sub-directory ``model_dir`` named),
    ``modelVersion``, ``datasetDigest``, ``device`` (the device the code used: ``cpu``, ``cuda:0 (NVIDIA
    H200)``), ``worldSize``, ``rank``, ``epochs``, ``durationSeconds``, ``modelSizeBytes``
    (of model.skops, when there is one), ``warnings``, ``resourcesUsed`` (added for you,
    ``mlops_workloads.usage``: ``cpuSeconds``, ``cpuCores``, ``peakMemoryBytes`` of the
    container's cgroup, else of this process and its children, ``source`` saying which, and
    with GPUs ``gpuPeakMemoryBytes`` (torch's) and ``gpuUtilizationMean``/``Max`` (NVML,
    sampled from ``config()`` on); what the status suggests requesting is computed from it),
    and the keywords you pass as ``**extra``; or ``ok: false`` with ``reason`` (one CamelCase
    word) and ``error``.
    ``report()`` also completes the model directory: a ``model_card.json`` (unless your code
    wrote one) and the Dataset version's ``schema.json`` and ``baseline.json`` (which
    serving needs for input checks and drift), then publishes ``output_dir`` as the version
    (the card last; an identical version published before is kept as it is). The card
    records the lineage: ``version``, ``image``, ``codeVersion``, ``dataset`` (with the
    Dataset version's ``preparation``), ``params``, ``metrics``, ``device``,
    ``durationSeconds``, ``resources`` (requested, used and suggested). A ModelDeployment can
    serve the directory when it holds ``model.skops``: ONE scikit-learn ``Pipeline`` over the raw feature
    columns, made of types this project's own models are made of (``skops_types.json``).

Per epoch (``log_epoch()``)
    One JSON line per epoch, ``{"epoch": 3, "metrics": {...}, "elapsedSeconds": 1.2}``, in
    ``<output_dir>/history.jsonl`` (rank 0 only, at most ``MAX_HISTORY`` lines; a retried
    pod rewrites the lines of the epochs it trains again), and one line on stdout.

Exit codes
    0: reported; ``PERMANENT_EXIT_CODE`` (3): ``fail(..., permanent=True)``, the Job does
    not retry; any other: retried up to ``runPolicy.backoffLimit``. After ``config()`` an
    exception your code does not catch is written as ``ok: false`` (reason
    ``TrainerError``, or the exception's own ``reason``) before Python exits with 1.

Distributed runs
    Every rank may call ``report()``: rank 0 validates, completes the model directory,
    publishes it as the version and writes the full result; other ranks write only
    ``{"ok": true, "rank": ..., ...}`` and touch no files. Processes other than the first of
    their pod (``LOCAL_RANK`` > 0) print their result but leave the pod's termination message
    to the first.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import math
import os
import pathlib
import re
import sys
import time
import types
import typing
from typing import TYPE_CHECKING, Any, NoReturn

from mlops_operator.api import workload
from mlops_workloads import usage
from mlops_workloads.train import card as card_mod

if TYPE_CHECKING:
    from mlops_operator.api import trainingjob

PARAM_ENV_PREFIX = "MLOPS_PARAM_"
"""Mirrors ``mlops_operator.api.trainingjob.PARAM_ENV_PREFIX`` (not imported: that module is pydantic)."""
METRIC_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")
"""A metric name, as ``TrainingJob.spec.objective.metric`` accepts it."""
REASON = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")
EXTRA_KEY = re.compile(r"^[a-z][A-Za-z0-9]{0,62}$")
SPLITS: tuple[str, ...] = ("validation", "test", "train")
"""Metric splits ``report()`` accepts; ``train`` goes into the model card only, never the result."""
RESULT_SPLITS: tuple[str, ...] = ("validation", "test")
MAX_METRICS = 16
"""Per split (the status keeps at most 16)."""
MAX_EPOCH_METRICS = 32
MAX_HISTORY = 10_000
"""Lines ``log_epoch`` keeps in history.jsonl."""
MAX_WARNINGS = 8
MAX_ERROR = 1024
HISTORY_FILE = card_mod.HISTORY_FILE
CARD_FILE = card_mod.CARD_FILE
MODEL_FILE = "model.skops"
COPIED_FROM_DATASET: tuple[str, ...] = card_mod.DATASET_FILES
RESERVED_KEYS = frozenset(
    {"ok", "reason", "error", "metrics", "objectiveMetric", "objectiveValue", "modelUri", "modelVersion"}
    | {"datasetDigest"}
    | {"device", "worldSize", "rank", "epochs", "durationSeconds", "modelSizeBytes", "warnings", "truncated"}
    | {"resourcesUsed"}
)
"""The result's own keys, which ``report(**extra)`` may not set."""
LIBRARIES: tuple[tuple[str, str], ...] = (
    ("scikit-learn", "sklearn"),
    ("numpy", "numpy"),
    ("pandas", "pandas"),
    ("scipy", "scipy"),
    ("skops", "skops"),
    ("torch", "torch"),
    ("xgboost", "xgboost"),
    ("lightgbm", "lightgbm"),
)


_STARTED = usage.STARTED
"""When this process started, so durationSeconds counts imports too."""


class ReportError(ValueError):
    """``report()`` or ``log_epoch()`` was given something the contract does not allow."""

    reason = "InvalidReport"


# ---------------------------------------------------------------------------------------------
# In: the config
# ---------------------------------------------------------------------------------------------


def param_env_name(name: str) -> str:
    """The environment variable that carries param ``name``: ``MLOPS_PARAM_`` + ``name`` with each
    character other than ASCII letters and digits replaced by ``_``, then upper-cased
    (``learning-rate`` -> ``MLOPS_PARAM_LEARNING_RATE``). The operator builds the pod's env with
    the same rule."""
    return PARAM_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def param_env_value(value: Any) -> str:
    """A param's value as its env var holds it: a plain string as it is, anything else as compact
    JSON (``json.dumps(value, separators=(",", ":"), sort_keys=True)``: ``0.01``, ``true``, ``[64,32]``)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class Params(collections.abc.Mapping[str, Any]):
    """Your params, read-only: ``params["lr"]``, ``params.get("lr", 0.1)`` or ``params.lr``."""

    def __init__(self, values: collections.abc.Mapping[str, Any]) -> None:
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> collections.abc.Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no param {name!r} (params: {sorted(self._values)})") from None

    def __repr__(self) -> str:
        return f"Params({self._values!r})"


@dataclasses.dataclass(frozen=True)
class DataFiles:
    """Local paths of the prepared Dataset version (read-only in the pod)."""

    dir: pathlib.Path
    train: pathlib.Path
    validation: pathlib.Path
    test: pathlib.Path
    preprocessor: pathlib.Path
    schema: pathlib.Path
    baseline: pathlib.Path
    target: str


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """The run's config as your code uses it (``raw`` is the ``TrainConfig`` it came from)."""

    name: str
    namespace: str
    task: str
    params: Params
    data: DataFiles
    output_dir: pathlib.Path
    output_uri: str
    objective_metric: str
    objective_direction: str
    seed: int
    dataset_name: str
    dataset_uri: str
    dataset_digest: str
    image: str
    command: tuple[str, ...]
    gpu: int
    world_size: int
    rank: int
    local_rank: int
    raw: trainingjob.TrainConfig

    @property
    def is_chief(self) -> bool:
        """True on rank 0: the process that saves the model and reports the metrics."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, ""))
    except ValueError:
        return default


def _read_json(path: pathlib.Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _data_files(raw: trainingjob.TrainConfig) -> DataFiles:
    from mlops_workloads.train import staging

    if raw.data is not None:
        base = staging.dataset_dir(raw)  # the mount, or the s3:// version downloaded to data.dir
        paths = {
            "train": raw.data.train,
            "validation": raw.data.validation,
            "test": raw.data.test,
            "preprocessor": raw.data.preprocessor,
            "schema": raw.data.schema_file,
        }
        target = raw.data.target
    else:  # an older operator: derive the paths from the version's URI
        base = staging.dataset_dir(raw)
        paths = {
            "train": str(base / "train.parquet"),
            "validation": str(base / "validation.parquet"),
            "test": str(base / "test.parquet"),
            "preprocessor": str(base / "preprocessor.skops"),
            "schema": str(base / "schema.json"),
        }
        target = None
    schema = pathlib.Path(paths["schema"])
    return DataFiles(
        dir=base,
        train=pathlib.Path(paths["train"]),
        validation=pathlib.Path(paths["validation"]),
        test=pathlib.Path(paths["test"]),
        preprocessor=pathlib.Path(paths["preprocessor"]),
        schema=schema,
        baseline=base / "baseline.json",
        target=target or str(_read_json(schema).get("target") or "target"),
    )


def config() -> TrainerConfig:
    """Read the run's config; exit with ``MissingConfig``/``InvalidConfig`` (permanent) if there is none.

    Also makes an exception your code does not catch end as an ``ok: false`` result.
    """
    from mlops_operator.api import trainingjob
    from mlops_workloads import runtime
    from mlops_workloads.train import staging

    _install_excepthook()
    try:
        raw = runtime.load_config(trainingjob.TrainConfig)
    except runtime.WorkloadError as exc:
        fail(exc.reason, exc.message, permanent=True)
    usage.start_gpu_sampling(raw.gpu)  # GPUs given: their utilisation, for resourcesUsed
    output_dir = staging.output_dir(raw)
    try:
        data = _data_files(raw)
    except runtime.WorkloadError as exc:
        fail(exc.reason, exc.message)
    digest = raw.dataset_digest
    found = str(_read_json(data.dir / "manifest.json").get("digest") or "")
    if digest and found and digest != found:
        fail(
            "DatasetDigestMismatch",
            f"expected Dataset version {digest}, found {found} in {data.dir}",
            permanent=True,
        )
    return TrainerConfig(
        name=raw.name,
        namespace=raw.namespace,
        task=raw.task,
        params=Params(raw.params),
        data=data,
        output_dir=pathlib.Path(output_dir),
        output_uri=raw.output_uri,
        objective_metric=raw.objective_metric,
        objective_direction=raw.objective_direction,
        seed=raw.seed,
        dataset_name=raw.dataset_name,
        dataset_uri=raw.dataset_uri,
        dataset_digest=digest or found,
        image=raw.image,
        command=tuple(raw.command),
        gpu=raw.gpu,
        world_size=_env_int("WORLD_SIZE", raw.workers),
        rank=_env_int("RANK", 0),
        local_rank=_env_int("LOCAL_RANK", 0),
        raw=raw,
    )


def load_skops(path: str | os.PathLike[str]) -> Any:
    """Load a skops file (the Dataset's preprocessor.skops) trusting only the exact types this
    project's own models are made of; exit with ``UntrustedModel``/``InvalidArtifact``
    (permanent) otherwise. Never unpickle or ``skops.io.load(trusted=...)`` files yourself."""
    from mlops_workloads import runtime, skops_io

    try:
        return skops_io.load(pathlib.Path(path), invalid_reason="InvalidArtifact")
    except runtime.WorkloadError as exc:
        fail(exc.reason, exc.message, permanent=True)


def device() -> str:
    """The device torch would use here: ``cuda:<LOCAL_RANK> (<GPU name>)`` when torch is installed
    and sees a GPU, else ``cpu``. Imports torch (when installed) on first call."""
    return _torch_device()


def _used_device() -> str:
    """cuda (as ``device()`` names it) if the code made torch initialise CUDA, else cpu.

    Whether torch is imported says nothing (skops imports it when it is installed)."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_initialized():
            return _torch_device(torch.cuda.current_device())
    except Exception:
        pass
    return "cpu"


def _torch_device(index: int | None = None) -> str:
    try:
        import torch
    except ImportError:
        return "cpu"
    try:
        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            if index is None:
                index = _env_int("LOCAL_RANK", 0) % torch.cuda.device_count()
            return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    except Exception:  # a broken driver: torch runs on the CPU
        pass
    return "cpu"


# ---------------------------------------------------------------------------------------------
# Out: epochs, the result, failures
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _History:
    """What this process logged for the config it runs (``key``: the env naming that config)."""

    key: tuple[str, str] | None = None
    path: pathlib.Path | None = None  # history.jsonl once written: the first write drops older lines
    lines: int = 0
    last_epoch: int | None = None
    full_noted: bool = False

    def current(self) -> _History:
        """Start over when the config changed (a test, or a second run in one process)."""
        key = (os.environ.get(workload.CONFIG_FILE_ENV, ""), os.environ.get(workload.CONFIG_ENV, ""))
        if key != self.key:
            self.key, self.path, self.lines, self.last_epoch, self.full_noted = key, None, 0, None, False
        return self


_history = _History()


def _metric_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not METRIC_NAME.match(name):
        raise ReportError(f"{where}: metric name {name!r} must match {METRIC_NAME.pattern}")
    return name


def _float(value: object, where: str) -> float:
    """A float from a number: int, float, numpy scalars, a one-element tensor (never a bool or str)."""
    if isinstance(value, bool | str | bytes) or not isinstance(value, typing.SupportsFloat):
        raise ReportError(f"{where} must be a number, not {type(value).__name__}")
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ReportError(f"{where} must be one number: {exc}") from exc


def _number(value: object, where: str) -> float:
    number = _float(value, where)
    if not math.isfinite(number):
        raise ReportError(f"{where} is {number}: report finite numbers only")
    return number


def log_epoch(epoch: int, **metrics: typing.SupportsFloat) -> None:
    """Record one epoch's metrics (epochs count from 1), e.g. ``log_epoch(3, loss=0.4, accuracy=0.9)``.

    Rank 0 appends ``{"epoch", "metrics", "elapsedSeconds"}`` to ``<output_dir>/history.jsonl``
    (a non-finite value is written as null); every rank prints one line.
    """
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise ReportError(f"epoch must be an int >= 1, not {epoch!r}")
    if len(metrics) > MAX_EPOCH_METRICS:
        raise ReportError(f"log_epoch takes at most {MAX_EPOCH_METRICS} metrics, got {len(metrics)}")
    values: dict[str, float | None] = {}
    for name, value in metrics.items():
        number = _float(value, f"log_epoch({epoch}): {_metric_name(name, f'log_epoch({epoch})')}")
        values[name] = number if math.isfinite(number) else None
    rank = _env_int("RANK", 0)
    shown = " ".join(f"{k}={'nan' if v is None else f'{v:.6g}'}" for k, v in values.items())
    prefix = f"[rank {rank}] " if _env_int("WORLD_SIZE", 1) > 1 else ""
    print(f"{prefix}epoch {epoch}: {shown}", flush=True)
    history = _history.current()
    history.last_epoch = epoch
    if rank != 0:
        return
    line = json.dumps(
        {"epoch": epoch, "metrics": values, "elapsedSeconds": round(time.monotonic() - _STARTED, 3)},
        separators=(",", ":"),
    )
    if history.path is None:  # first write: keep a previous attempt's lines of earlier epochs only
        path = config().output_dir / HISTORY_FILE
        kept = [
            old for old in _read_lines(path) if isinstance(old.get("epoch"), int) and old["epoch"] < epoch
        ][-(MAX_HISTORY - 1) :]
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(old, separators=(",", ":")) + "\n" for old in kept) + line + "\n"
        card_mod.write_atomic(path, text.encode())
        history.path, history.lines = path, len(kept) + 1
        return
    if history.lines >= MAX_HISTORY:
        if not history.full_noted:
            print(f"history.jsonl holds {MAX_HISTORY} epochs: later epochs are not recorded", flush=True)
            history.full_noted = True
        return
    with history.path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    history.lines += 1


def _read_lines(path: pathlib.Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    out: list[dict[str, Any]] = []
    for raw in text.splitlines():
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def _splits(metrics: collections.abc.Mapping[str, Any]) -> dict[str, dict[str, float]]:
    if not isinstance(metrics, collections.abc.Mapping):
        raise ReportError(f"metrics must be a dict, not {type(metrics).__name__}")
    nested = [isinstance(v, collections.abc.Mapping) for v in metrics.values()]
    if nested and all(nested):
        given: collections.abc.Mapping[str, Any] = metrics
    elif not any(nested):
        given = {"validation": metrics}  # a flat dict: validation metrics
    else:
        raise ReportError(
            "metrics mixes splits and numbers: pass {'validation': {...}, 'test': {...}} or one flat dict"
        )
    out: dict[str, dict[str, float]] = {}
    for split, values in given.items():
        if split not in SPLITS:
            raise ReportError(f"metrics: unknown split {split!r}; use {', '.join(SPLITS)}")
        if len(values) > MAX_METRICS:
            raise ReportError(f"metrics.{split}: at most {MAX_METRICS} metrics, got {len(values)}")
        out[split] = {
            _metric_name(name, f"metrics.{split}"): _number(value, f"metrics.{split}.{name}")
            for name, value in values.items()
        }
    return out


def _objective(cfg: TrainerConfig, metrics: dict[str, dict[str, float]], notes: list[str]) -> float:
    name = cfg.objective_metric
    if name in metrics.get("validation", {}):
        return metrics["validation"][name]
    if "validation" not in metrics and name in metrics.get("test", {}):
        notes.append(f"no validation metrics: the objective {name} is the test split's")
        return metrics["test"][name]
    reported = sorted(metrics.get("validation", {}))
    raise ReportError(
        f"the objective metric {name!r} (spec.objective.metric) is not among the validation "
        f"metrics reported: {reported}"
    )


def _relative(cfg: TrainerConfig, model_dir: pathlib.Path) -> str:
    """``model_dir`` relative to ``output_dir`` ("" for output_dir itself); outside it is refused."""
    out = cfg.output_dir.resolve()
    target = model_dir.resolve()
    if not target.is_relative_to(out):
        raise ReportError(
            f"model_dir {model_dir} is outside output_dir {cfg.output_dir}: only output_dir is kept"
        )
    relative = target.relative_to(out).as_posix()
    return "" if relative == "." else relative


def _join(uri: str, relative: str) -> str:
    return f"{uri.rstrip('/')}/{relative}" if relative else uri


def _servable(model_dir: pathlib.Path) -> list[str]:
    """Why a ModelDeployment could not serve the directory (read from model.skops' schema, no loading)."""
    from mlops_workloads import skops_io

    if not (model_dir / MODEL_FILE).is_file():
        return [f"{model_dir} holds no {MODEL_FILE}: a ModelDeployment cannot serve it"]
    try:
        refused = skops_io.refused(skops_io.file_names(model_dir / MODEL_FILE))
    except ValueError as exc:
        return [f"{MODEL_FILE} cannot be served: {exc}"]
    if refused:
        return [f"{MODEL_FILE} holds types serving refuses (UntrustedModel): {', '.join(refused)}"]
    return []


def _write(result: dict[str, Any], *, failure: bool = False) -> None:
    from mlops_workloads import runtime

    if failure or _env_int("LOCAL_RANK", 0) == 0:
        runtime.write_result(result)
    else:  # the pod's first process owns its termination message
        print(runtime.compact(result), flush=True)


def _fits(result: dict[str, Any]) -> bool:
    text = json.dumps(result, separators=(",", ":"), sort_keys=True, default=str)
    return len(text.encode()) <= workload.RESULT_LIMIT


def report(
    metrics: collections.abc.Mapping[str, collections.abc.Mapping[str, typing.SupportsFloat]]
    | collections.abc.Mapping[str, typing.SupportsFloat],
    *,
    model_dir: str | os.PathLike[str] | None = None,
    epochs: int | None = None,
    device: str | None = None,
    warnings: collections.abc.Sequence[str] = (),
    **extra: Any,
) -> dict[str, Any]:
    """Report the run's metrics and model; write the result; return it.

    ``metrics`` is ``{"validation": {name: number}, "test": {...}, "train": {...}}`` or one
    flat dict of validation metrics; names match ``METRIC_NAME``, values are finite, at most
    16 per split, and the objective must be among the validation metrics. ``model_dir`` is
    where the model was saved (default ``output_dir``, or a directory inside it); ``epochs``
    defaults to the last epoch given to ``log_epoch``; ``device`` to the GPU your code made
    torch initialise (as ``device()`` names it), else ``cpu``. ``extra`` keywords (camelCase, JSON values) go
    into the result (dropped first if it would exceed 4 KiB) and the model card.
    Raises ``ReportError`` when something breaks the contract.
    """
    cfg = config()
    if epochs is None:
        epochs = _history.current().last_epoch
    elif isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ReportError(f"epochs must be an int >= 0, not {epochs!r}")
    if device is None:
        device = _used_device()
    duration = round(time.monotonic() - _STARTED, 3)
    used = usage.measure()
    base: dict[str, Any] = {
        "ok": True,
        "rank": cfg.rank,
        "worldSize": cfg.world_size,
        "device": str(device)[:128],
        "durationSeconds": duration,
        "resourcesUsed": used,
    }
    if not cfg.is_chief:  # rank 0 speaks for the run
        _write(base)
        return base

    for key, value in extra.items():
        if not EXTRA_KEY.match(key) or key in RESERVED_KEYS:
            raise ReportError(
                f"extra result key {key!r} must be camelCase and not one of the contract's keys"
            )
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ReportError(f"extra result key {key!r}: not a JSON value ({exc})") from exc
    notes = [str(w).strip()[:200] for w in warnings if str(w).strip()]
    splits = _splits(metrics)
    objective = _objective(cfg, splits, notes)
    folder = pathlib.Path(model_dir) if model_dir is not None else cfg.output_dir
    if not folder.is_dir():
        raise ReportError(f"model_dir {folder} does not exist: save the model before report()")
    relative = _relative(cfg, folder)
    size = (folder / MODEL_FILE).stat().st_size if (folder / MODEL_FILE).is_file() else None
    notes.extend(_servable(folder))
    # The Dataset's schema and baseline first (serving needs them; they are part of the version),
    # then the version of everything in output_dir, which names the card and the URIs.
    from mlops_workloads.train import staging

    card_mod.copy_dataset_files(cfg.data.dir, folder, replace=False)
    try:
        version = card_mod.version_id(cfg.output_dir)
    except ValueError as exc:
        raise ReportError(f"{exc}: save the model into output_dir before report()") from exc
    version_uri = staging.version_uri(cfg.output_uri, version)
    model_uri = _join(version_uri, relative)
    result: dict[str, Any] = {
        **base,
        "metrics": {s: splits[s] for s in RESULT_SPLITS if s in splits},
        "objectiveMetric": cfg.objective_metric,
        "objectiveValue": objective,
        "modelUri": model_uri,
        "modelVersion": version,
        "datasetDigest": cfg.dataset_digest,
        "epochs": epochs,
        "warnings": [n[:200] for n in notes][:MAX_WARNINGS],
    }
    if size is not None:
        result["modelSizeBytes"] = size
    requested = cfg.raw.resources.to_api() if cfg.raw.resources is not None else None
    card = {
        "name": cfg.name,
        "namespace": cfg.namespace,
        "trainer": "custom",
        "estimator": "custom",
        "command": list(cfg.command),
        "task": cfg.task,
        "params": dict(cfg.params),
        **card_mod.lineage(
            image=cfg.image,
            code_version=cfg.raw.code_version,
            requested=requested,
            dataset={"name": cfg.dataset_name, "uri": cfg.dataset_uri, "digest": cfg.dataset_digest},
            manifest=_read_json(cfg.data.dir / "manifest.json"),
            used=used,
        ),
        "target": cfg.data.target,
        "metrics": splits,
        "objective": {
            "metric": cfg.objective_metric,
            "direction": cfg.objective_direction,
            "value": objective,
        },
        "device": result["device"],
        "worldSize": cfg.world_size,
        "epochs": epochs,
        "history": f"{version_uri}/{HISTORY_FILE}" if (cfg.output_dir / HISTORY_FILE).is_file() else None,
        "durationSeconds": duration,
        "libraries": card_mod.versions(LIBRARIES),
        "warnings": notes,
        "version": version,
        "modelUri": model_uri,
        "modelSizeBytes": size,
        "createdAt": card_mod.created_at(),
        **extra,
    }
    result.update(extra)
    for key in [*extra, "warnings"]:  # keep within 4 KiB: extras go first, then the warnings
        if _fits(result):
            break
        result.pop(key, None)
        result["truncated"] = True
    if not _fits(result):
        raise ReportError(
            f"the result is over {workload.RESULT_LIMIT} bytes: report fewer metrics or shorter names"
        )
    if not (folder / CARD_FILE).exists():  # your code may have written its own
        card_mod.write_card(folder / CARD_FILE, card)
    if _publish(cfg, folder, version=version):
        print(f"model version {version} was published before: kept as it is", flush=True)
    _write(result)
    return result


def _publish(cfg: TrainerConfig, folder: pathlib.Path, *, version: str) -> bool:
    """Publish output_dir as ``<output_uri>/<version>``, the model's card last; True if it was there."""
    from mlops_workloads import runtime
    from mlops_workloads.train import staging

    marker = (folder.resolve() / CARD_FILE).relative_to(cfg.output_dir.resolve()).as_posix()
    try:
        return staging.publish(cfg.raw, cfg.output_dir, marker=marker, version=version).existed
    except runtime.WorkloadError as exc:
        fail(exc.reason, exc.message)


def _reason(text: str) -> str:
    if REASON.match(text):
        return text
    words = "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", text) if w)
    words = words.lstrip("0123456789")[:64]
    return words if REASON.match(words) else "TrainerFailed"


def fail(reason: str, message: str, *, permanent: bool = False) -> NoReturn:
    """Report a failure (``reason``: one CamelCase word) and exit: with ``PERMANENT_EXIT_CODE`` (3)
    when ``permanent`` (retrying cannot help: the Job fails at once), else 1 (retried)."""
    _write(
        {
            "ok": False,
            "reason": _reason(reason),
            "error": str(message)[:MAX_ERROR],
            "rank": _env_int("RANK", 0),
        },
        failure=True,
    )
    raise SystemExit(workload.PERMANENT_EXIT_CODE if permanent else 1)


@dataclasses.dataclass
class _Excepthook:
    """Writes an exception the code did not catch as ``ok: false``, then hands it to the previous hook."""

    previous: collections.abc.Callable[[type[BaseException], BaseException, types.TracebackType | None], Any]

    def __call__(self, kind: type[BaseException], exc: BaseException, tb: types.TracebackType | None) -> None:
        reason = getattr(exc, "reason", None)
        if not isinstance(reason, str) or not REASON.match(reason):
            reason = "OutOfMemory" if isinstance(exc, MemoryError) else "TrainerError"
        try:
            error = f"{kind.__name__}: {exc}"[:MAX_ERROR]
            _write({"ok": False, "reason": reason, "error": error, "rank": _env_int("RANK", 0)}, failure=True)
        finally:
            self.previous(kind, exc, tb)


def _install_excepthook() -> None:
    if not isinstance(sys.excepthook, _Excepthook):
        sys.excepthook = _Excepthook(previous=sys.excepthook)
