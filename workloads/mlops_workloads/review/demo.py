"""A deployment root with captured rows to review, written by the model server's own capture writer.

So the page can be tried (and is tested) without a cluster or a model server: the rows are those
of an iris classifier (string classes) or a regressor, with made-up but seeded inputs and
answers, kept by ``serve.capture.Capture`` exactly as a server keeps them (its schema, its file
names, ``reason`` and ``low_confidence``).

``python -m mlops_workloads.review.demo file:///tmp/review-demo [--requests 20] [--regression]``
then ``python -m mlops_workloads.review --uri file:///tmp/review-demo``.
"""

from __future__ import annotations

import argparse
import random

import numpy as np
import prometheus_client

from mlops_workloads import storage
from mlops_workloads.serve import capture as serve_capture
from mlops_workloads.serve import telemetry

FEATURES = (
    ("sepal_length", "float"),
    ("sepal_width", "float"),
    ("petal_length", "float"),
    ("petal_width", "float"),
    ("site", "category"),
)
CLASSES = ("setosa", "versicolor", "virginica")
SITES = ("north", "south", "east")
THRESHOLD = 0.6


def model(task: str = "classification") -> serve_capture.ModelInfo:
    classifier = task == "classification"
    return serve_capture.ModelInfo(
        name="iris",
        version="3",
        digest="sha256:demo",
        task=task,
        features=FEATURES,
        classes=CLASSES if classifier else None,
        pod="iris-predictor-demo",
    )


def seed(
    uri: str,
    *,
    requests: int = 12,
    rows_per_request: int = 2,
    task: str = "classification",
    sample_rate: float = 1.0,
    seed_value: int = 0,
) -> list[str]:
    """Capture ``requests`` answered requests under the root at ``uri``; their request ids, in the
    order they were answered (the page shows the last first)."""
    info = model(task)
    registry = prometheus_client.CollectorRegistry()
    cap = serve_capture.Capture(
        model=info,
        open_sink=lambda: storage.open_store(uri),
        metrics=telemetry.CaptureMetrics(registry),
        sample_rate=sample_rate,
        rng=random.Random(seed_value),
        poll_seconds=0.01,
    )
    rng = np.random.default_rng(seed_value)
    ids = []
    for i in range(requests):
        n = rows_per_request
        columns: dict[str, np.ndarray] = {
            "sepal_length": np.round(rng.uniform(4.3, 7.9, n), 1),
            "sepal_width": np.round(rng.uniform(2.0, 4.4, n), 1),
            "petal_length": np.round(rng.uniform(1.0, 6.9, n), 1),
            "petal_width": np.round(rng.uniform(0.1, 2.5, n), 1),
            "site": np.array(rng.choice(SITES, size=n), dtype=object),
        }
        if info.classes is not None:
            proba = rng.dirichlet(np.ones(len(CLASSES)), size=n)
            result = proba.argmax(axis=1)
            low = proba.max(axis=1) < THRESHOLD
            low_count = int(low.sum())
            probabilities: np.ndarray | None = proba
            flags: np.ndarray | None = low
        else:
            result = np.round(columns["petal_length"] * 0.4 + rng.normal(0, 0.1, n), 3)
            probabilities, flags, low_count = None, None, 0
        request_id = f"demo-{seed_value}-{i:04d}"
        ids.append(request_id)
        cap.offer(
            request_id,
            columns=columns,
            result=result,
            proba=probabilities,
            low=flags,
            low_count=low_count,
            rows=n,
        )
    cap.close(timeout=30.0)
    dropped = sum(
        registry.get_sample_value("mlops_serve_capture_dropped_total", {"reason": reason}) or 0.0
        for reason in telemetry.CAPTURE_DROP_REASONS
    )
    if dropped:
        raise RuntimeError(f"the capture writer could not write {dropped:.0f} rows under {uri}")
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_workloads.review.demo", description=__doc__)
    parser.add_argument("uri", help="the deployment root to write under (file://, pvc:// or s3://)")
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--rows-per-request", type=int, default=2)
    parser.add_argument("--regression", action="store_true", help="a regressor's rows (no classes)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    ids = seed(
        args.uri,
        requests=args.requests,
        rows_per_request=args.rows_per_request,
        task="regression" if args.regression else "classification",
        seed_value=args.seed,
    )
    print(f"captured {len(ids) * args.rows_per_request} rows of {len(ids)} requests under {args.uri}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
