"""Loading skops files safely, for every workload that reads one (train, serve).

skops refuses to instantiate types it does not know unless they are passed as ``trusted``.
Passing ``trusted=True`` would make a model file as dangerous as a pickle, so the types a
file asks for are checked against an allowlist of module prefixes (the libraries a model of
ours is made of) and anything else is refused by name, before a single object is built.
"""

from __future__ import annotations

import pathlib
from typing import Any

from mlops_workloads import runtime

ALLOWED_MODULE_PREFIXES: tuple[str, ...] = (
    "sklearn.",
    "numpy.",
    "scipy.",
    "xgboost.",
    "lightgbm.",
    "builtins.",
    "collections.",
    "pandas.",
)


def check_untrusted(
    types: list[str],
    *,
    what: str = "model.skops",
    reason: str = "UntrustedModel",
    prefixes: tuple[str, ...] = ALLOWED_MODULE_PREFIXES,
) -> list[str]:
    """The types skops would not load by default, if all of them are allowlisted; else refuse."""
    refused = sorted(t for t in types if not t.startswith(prefixes))
    if refused:
        raise runtime.WorkloadError(
            reason,
            f"{what} contains types outside the allowlist {list(prefixes)}: {refused}; refusing to load it",
        )
    return list(types)


def load(path: pathlib.Path, *, untrusted_reason: str, invalid_reason: str) -> Any:
    """Load a skops file, trusting only allowlisted types."""
    import skops.io as sio  # heavy: imported when a file is actually read

    trusted = check_untrusted(
        sio.get_untrusted_types(file=str(path)), what=path.name, reason=untrusted_reason
    )
    try:
        return sio.load(str(path), trusted=trusted)
    except Exception as exc:
        raise runtime.WorkloadError(invalid_reason, f"{path.name} could not be loaded: {exc}") from exc
