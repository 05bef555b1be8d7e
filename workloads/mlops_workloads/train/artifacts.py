"""Reading a prepared Dataset version and writing a model directory (the shared data contracts).

skops files are loaded only after every type and function they hold is checked against
exact names (``skops_io``), and refused with ``UntrustedModel`` otherwise: a Dataset
directory on a shared volume must not be a way to run code in the training pod.

A model directory's baseline.json is the Dataset's plus ``explanations.background``: a seeded
sample of up to 100 training rows in the original columns, what serving explains predictions
against; the card's ``explanations`` holds training's mean |attribution| per feature on a
validation sample, made by the model as serving loads it (``serve.explain``), for attribution
drift. Explaining is best effort: a model that cannot be explained is still written, its card
saying why.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import tempfile
from typing import Any

from mlops_operator.api import common
from mlops_workloads import runtime, skops_io
from mlops_workloads.train import card as card_mod

SPLITS: tuple[str, ...] = ("train", "validation", "test")
log = logging.getLogger("mlops_workloads.train")


def load_skops(path: pathlib.Path) -> Any:
    """Load a skops file, trusting only allowlisted types; refuse anything else by name."""
    return skops_io.load(path, invalid_reason="InvalidArtifact")


def read_json(path: pathlib.Path, *, required: bool = True) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise runtime.WorkloadError("DatasetIncomplete", f"{path.name} is missing from {path.parent}")
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise runtime.WorkloadError("DatasetIncomplete", f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise runtime.WorkloadError("DatasetIncomplete", f"{path} must hold a JSON object")
    return value


@dataclasses.dataclass
class PreparedDataset:
    """One prepared Dataset version: raw-feature splits, the fitted preprocessor, schema and baseline."""

    path: pathlib.Path
    schema: dict[str, Any]
    manifest: dict[str, Any]
    preprocessor: Any
    splits: dict[str, Any]  # split name -> pandas.DataFrame (possibly empty)

    @property
    def target(self) -> str:
        return str(self.schema["target"])

    @property
    def task(self) -> str:
        return str(self.schema.get("task") or "")

    @property
    def features(self) -> list[str]:
        declared = [str(f["name"]) for f in self.schema.get("features") or []]
        if declared:
            return declared
        return [c for c in self.splits["train"].columns if c != self.target]

    @property
    def digest(self) -> str:
        return str(self.manifest.get("digest") or "")

    def xy(self, split: str) -> tuple[Any, Any]:
        frame = self.splits[split]
        return frame[self.features], frame[self.target]


def load_dataset(path: pathlib.Path) -> PreparedDataset:
    import pandas as pd

    if not path.is_dir():
        raise runtime.WorkloadError("DatasetNotFound", f"the Dataset directory {path} does not exist")
    schema = read_json(path / "schema.json")
    if "target" not in schema:
        raise runtime.WorkloadError("DatasetIncomplete", f"{path / 'schema.json'} names no target")
    manifest = read_json(path / "manifest.json", required=False)
    splits: dict[str, Any] = {}
    for split in SPLITS:
        file = path / f"{split}.parquet"
        if not file.is_file():
            if split == "train":
                raise runtime.WorkloadError("DatasetIncomplete", f"train.parquet is missing from {path}")
            splits[split] = pd.DataFrame()
            continue
        splits[split] = pd.read_parquet(file)
    pre_file = path / "preprocessor.skops"
    if not pre_file.is_file():
        raise runtime.WorkloadError("DatasetIncomplete", f"preprocessor.skops is missing from {path}")
    dataset = PreparedDataset(
        path=path, schema=schema, manifest=manifest, preprocessor=load_skops(pre_file), splits=splits
    )
    missing = [c for c in [*dataset.features, dataset.target] if c not in splits["train"].columns]
    if missing:
        raise runtime.WorkloadError("DatasetIncomplete", f"train.parquet lacks the columns {missing}")
    if len(splits["train"]) == 0:
        raise runtime.WorkloadError("DatasetEmpty", "the training split has no rows")
    return dataset


SKOPS_MODEL = "model.skops"
ONNX_MODEL = "model.onnx"
PREPROCESSOR = "preprocessor.skops"
SKOPS_FILES: tuple[str, ...] = (SKOPS_MODEL,)
ONNX_FILES: tuple[str, ...] = (ONNX_MODEL, PREPROCESSOR)
"""The two model formats: one skops Pipeline, or an ONNX network behind the Dataset's preprocessor."""


def _make_dir(out: pathlib.Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise runtime.WorkloadError("OutputNotWritable", f"cannot create {out}: {exc}") from exc


def _finish(
    out: pathlib.Path,
    *,
    card: dict[str, Any],
    dataset: PreparedDataset,
    stale: tuple[str, ...],
    size: int,
    output_uri: str,
) -> None:
    """Copy schema and baseline, drop the other format's files, then write the card (last).

    The card names the model's version (``card.version_id`` of the files written so far) and,
    with ``output_uri``, the URI the version is published at (``<output_uri>/<version>``).
    """
    card_mod.copy_dataset_files(dataset.path, out)
    for name in stale:  # a rerun into the same directory with the other kind of model
        (out / name).unlink(missing_ok=True)
    explanations = write_explanations(out, dataset)
    version = card_mod.version_id(out)
    stamped: dict[str, Any] = {
        **card,
        "modelSizeBytes": size,
        "version": version,
        card_mod.EXPLANATIONS_KEY: explanations,
    }
    if output_uri:
        stamped["modelUri"] = common.StorageLocation.parse(output_uri).join(version).uri()
    card_mod.write_card(out / card_mod.CARD_FILE, stamped)


def write_explanations(out: pathlib.Path, dataset: PreparedDataset) -> dict[str, Any]:
    """Add the background sample to ``out``'s baseline.json; return the card's ``explanations``
    (training's attributions on a validation sample, or ``{"error": why}``). Never raises."""
    from mlops_workloads.serve import bundle as bundle_mod
    from mlops_workloads.serve import explain

    baseline_file = out / "baseline.json"
    try:
        schema = bundle_mod.Schema.from_json(dataset.schema)
        sample = explain.background_sample(dataset.splits["train"], schema=schema)
        if sample is None:
            return {"error": "no training row without a missing categorical value for the background"}
        baseline = read_json(baseline_file, required=False)
        baseline[card_mod.EXPLANATIONS_KEY] = {"background": sample}
        card_mod.write_atomic(baseline_file, json.dumps(baseline, allow_nan=False).encode())
    except Exception as exc:  # explanations are best effort: the model is written without them
        log.warning("no explanation background sample: %s: %s", type(exc).__name__, exc)
        return {"error": f"no background sample: {type(exc).__name__}: {exc}"[:500]}
    try:
        explainer = explain.from_bundle(bundle_mod.load(out))
        for split in ("validation", "test", "train"):
            frame = dataset.splits[split]
            if len(frame) == 0:
                continue
            rows = explain.background_sample(frame, schema=schema, rows=explainer.max_rows, seed=1)
            if rows is not None:
                return explain.training_summary(explainer, explain.served_frame(rows, schema), split=split)
        return {"error": "no row to explain"}
    except explain.Unavailable as exc:
        return {"error": str(exc)}
    except Exception as exc:
        log.warning("training's attributions could not be computed: %s: %s", type(exc).__name__, exc)
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}


def write_model_dir(
    out: pathlib.Path,
    *,
    pipeline: Any,
    card: dict[str, Any],
    dataset: PreparedDataset,
    output_uri: str = "",
) -> int:
    """Write model.skops, schema.json, baseline.json and model_card.json; return model.skops's size.

    ``out`` is the run's staging directory (``staging.output_dir``), published afterwards as
    a version of ``output_uri``. Each file is replaced atomically and the model card goes last,
    so a reader never sees a card that describes a model that is not there.
    """
    import skops.io as sio

    _make_dir(out)
    fd, tmp = tempfile.mkstemp(prefix=".model.skops.", dir=out)
    os.close(fd)
    try:
        sio.dump(pipeline, tmp)
        os.replace(tmp, out / SKOPS_MODEL)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    size = (out / SKOPS_MODEL).stat().st_size
    _finish(out, card=card, dataset=dataset, stale=ONNX_FILES, size=size, output_uri=output_uri)
    return size


def write_onnx_model_dir(
    out: pathlib.Path,
    *,
    model: bytes,
    card: dict[str, Any],
    dataset: PreparedDataset,
    output_uri: str = "",
) -> int:
    """Write model.onnx, preprocessor.skops, schema.json, baseline.json and model_card.json.

    ``preprocessor.skops`` is the Dataset version's own file, byte for byte (it was checked
    against the skops allowlist when the Dataset was loaded, and the server checks it again).
    Returns the size of the two model files together; the card lists each.
    """
    _make_dir(out)
    card_mod.write_atomic(out / PREPROCESSOR, (dataset.path / PREPROCESSOR).read_bytes())
    card_mod.write_atomic(out / ONNX_MODEL, model)
    files = {name: (out / name).stat().st_size for name in ONNX_FILES}
    size = sum(files.values())
    _finish(
        out,
        card={**card, "files": files},
        dataset=dataset,
        stale=SKOPS_FILES,
        size=size,
        output_uri=output_uri,
    )
    return size
