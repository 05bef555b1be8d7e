"""The model card and the files beside it in a model directory, as every training run writes them.

The card is the model version's lineage: what made it (``image``, ``codeVersion``: the
TrainingJob's ``mlops.dev/code-version`` annotation, else the image), from what (``dataset``:
name, URI, digest and the Dataset version's ``preparation``, the spec its manifest recorded),
with which ``params``, scoring what (``metrics`` per split), where (``device``), how long
(``durationSeconds``) and with what (``resources``: requested as the spec gave them, used as
``mlops_workloads.usage`` measured them, the container's cgroup when there is one, and the
request suggested from that, ``mlops_operator.api.rightsizing``, as the TrainingJob's status
shows it). The image's digest is not here: only the kubelet knows it, after
the pod started; the operator records it (``status.imageId``) and the model registry keeps it
with the version. ``version`` is the id of the model's bytes (``version_id``).

Shared by the built-in runs (``train.run``, ``train.artifacts``, ``nn.run``) and the trainer
contract for your own code (``mlops_workloads.trainer``). It imports only the standard library
(and ``usage``, ``api.rightsizing``, which do too), so the trainer contract can import it and
still cost milliseconds: keep it that way.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import os
import pathlib
import platform
import sys
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

from mlops_operator.api import rightsizing
from mlops_workloads import usage

CARD_FILE = "model_card.json"
DATASET_FILES: tuple[str, ...] = ("schema.json", "baseline.json")
"""The Dataset version's files a model directory carries (serving checks inputs and drift with them)."""
EXPLANATIONS_KEY = "explanations"
"""The built-in runs add, under this key, the explanation background sample (up to 100 training
rows in the original columns) to the model directory's baseline.json, and training's mean
|attribution| per feature to the card; serving explains with them (``serve.explain``)."""
HISTORY_FILE = "history.jsonl"
VERSION_LENGTH = 16
"""Hex characters of the SHA-256 that name a model version."""
UNVERSIONED: frozenset[str] = frozenset({CARD_FILE, HISTORY_FILE})
"""Files (by name, at any depth) the version id leaves out: they hold timestamps, not the model."""


def versions(libraries: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Python's version and those of the ``(distribution, module)`` libraries this process imported."""
    out = {"python": platform.python_version()}
    for dist, module in libraries:
        if module in sys.modules:
            try:
                out[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                out[dist] = str(getattr(sys.modules[module], "__version__", "unknown"))
    return out


def write_atomic(path: pathlib.Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` at once: a reader sees the old file or the new one, never a part."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def copy_dataset_files(source: pathlib.Path, out: pathlib.Path, *, replace: bool = True) -> None:
    """Copy the ``DATASET_FILES`` that ``source`` holds into ``out``.

    With ``replace=False`` the files ``out`` has already are kept (your code may have written them).
    """
    for name in DATASET_FILES:
        if not replace and (out / name).exists():
            continue
        if (source / name).is_file():
            write_atomic(out / name, (source / name).read_bytes())


def write_card(path: pathlib.Path, card: Mapping[str, Any]) -> None:
    """Write a model card as indented JSON with sorted keys (atomically)."""
    write_atomic(path, json.dumps(card, indent=2, sort_keys=True, default=str).encode())


def created_at() -> str:
    """Now, in UTC, as the cards record it (``2024-05-01T12:00:00Z``)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def version_id(folder: pathlib.Path) -> str:
    """The model version of a model directory: a SHA-256 over its files' names and bytes.

    Every file counts (model.skops, or model.onnx and preprocessor.skops, the Dataset's
    schema.json and baseline.json that serving uses, a team's own files) except the model card,
    the epoch history (``UNVERSIONED``) and hidden files, so the same model gets the same id
    whenever and wherever it was written. The first ``VERSION_LENGTH`` hex characters.
    """
    digest = hashlib.sha256()
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.name not in UNVERSIONED
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise ValueError(f"{folder} holds no model files")
    for path in files:
        name = path.relative_to(folder).as_posix().encode()
        digest.update(len(name).to_bytes(8, "big") + name + path.stat().st_size.to_bytes(8, "big"))
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:VERSION_LENGTH]


def resources(requested: Mapping[str, Any] | None, used: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The card's ``resources``: ``requested`` (spec.resources as given), ``used`` (``usage.measure``,
    measured now unless given) and ``suggested`` (what to request next time)."""
    measured = dict(usage.measure() if used is None else used)
    wanted = dict(requested or {})
    gpu = wanted.get("gpu")
    suggested = rightsizing.suggest(measured, gpu=gpu if isinstance(gpu, int) else 0)
    return {"requested": wanted, "used": measured, "suggested": suggested or None}


def lineage(
    *,
    image: str,
    code_version: str,
    requested: Mapping[str, Any] | None,
    dataset: Mapping[str, Any],
    manifest: Mapping[str, Any],
    used: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The card keys every run writes to say what made the model (merged over a card's own keys).

    ``dataset`` is the card's ``{name, uri, digest}``; ``manifest`` the Dataset version's
    manifest.json, whose ``spec`` becomes ``dataset.preparation``; ``used`` the run's
    ``resourcesUsed`` (measured now when not given).
    """
    return {
        "image": image or None,
        "codeVersion": code_version or image or None,
        "dataset": {**dataset, "preparation": manifest.get("spec")},
        "resources": resources(requested, used),
    }
