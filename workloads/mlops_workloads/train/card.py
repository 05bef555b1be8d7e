"""The model card and the files beside it in a model directory, as every training run writes them.

Shared by the built-in runs (``train.run``, ``train.artifacts``, ``nn.run``) and the trainer
contract for your own code (``mlops_workloads.trainer``). It imports only the standard library,
so the trainer contract can import it and still cost milliseconds: keep it that way.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import pathlib
import platform
import sys
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

CARD_FILE = "model_card.json"
DATASET_FILES: tuple[str, ...] = ("schema.json", "baseline.json")
"""The Dataset version's files a model directory carries (serving checks inputs and drift with them)."""


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
