"""Prepare throughput: our Dataset workload against a plain pandas/scikit-learn script, side by side.

Anchor: the script a data scientist would write for the same steps on the same file
(``pd.read_csv``, ``drop_duplicates``, drop rows without a target, a stratified 70/15/15
split with two ``train_test_split`` calls, a ColumnTransformer of SimpleImputer +
StandardScaler / OneHotEncoder fitted on the train split, three Parquet files and the
preprocessor saved with skops). Ours does those steps and more: typed validation of every
column, missing-value and class-balance reports, leakage/constant/imbalance checks, the
canonical content digest, the drift baseline and the JSON documents of a version.

Both run on one generated CSV (default 1,000,000 rows: 20 numeric features with 1% gaps, a
5-value categorical, a binary target with 0.1% duplicates), each in a fresh subprocess so
that the peak resident memory (``ru_maxrss``) belongs to that variant alone; the time is the
work itself, interpreter start and imports excluded. One run prints both times, the ratio
and both memory peaks.

    .venv/bin/python benchmarks/prepare_throughput.py [--rows 1000000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

FEATURES = 20


def generate(path: pathlib.Path, rows: int, seed: int = 0) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    signal = np.zeros(rows)
    for i in range(FEATURES):
        values = rng.normal(size=rows).round(5)
        if i < 5:
            signal += values
        values[rng.random(rows) < 0.01] = np.nan
        columns[f"x{i:02d}"] = values
    columns["segment"] = rng.choice(np.array(["a", "b", "c", "d", "e"]), size=rows)
    columns["label"] = (signal + rng.normal(scale=1.0, size=rows) > 1.0).astype(np.int64)
    table = pa.table(columns)
    dupes = rng.choice(rows, size=rows // 1000, replace=False)
    table = pa.concat_tables([table.slice(0, rows - len(dupes)), table.take(pa.array(dupes))])
    pacsv.write_csv(table, path)


def run_ours(csv: pathlib.Path, out: pathlib.Path) -> dict[str, Any]:
    from mlops_operator.api import dataset as api
    from mlops_workloads.prepare import pipeline

    spec = api.DatasetSpec.model_validate(
        {
            "sources": [{"file": {"uri": f"file://{csv}"}}],
            "schema": {"target": "label", "task": "classification"},
            "storage": f"file://{out}",
        }
    )
    started, cpu = time.perf_counter(), time.process_time()
    result = pipeline.prepare(api.PrepareConfig(dataset="bench", spec=spec), scratch_dir=str(out.parent))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "rows": result["rows"]}


def run_plain(csv: pathlib.Path, out: pathlib.Path) -> dict[str, Any]:
    import pandas as pd
    import skops.io as sio
    from sklearn import compose, impute, model_selection, pipeline, preprocessing

    started, cpu = time.perf_counter(), time.process_time()
    frame = pd.read_csv(csv)
    rows_in = len(frame)
    frame = frame.dropna(subset=["label"]).drop_duplicates().reset_index(drop=True)
    train, rest = model_selection.train_test_split(
        frame, test_size=0.3, stratify=frame["label"], random_state=42
    )
    validation, test = model_selection.train_test_split(
        rest, test_size=0.5, stratify=rest["label"], random_state=42
    )
    numeric = [c for c in frame.columns if c.startswith("x")]
    preprocessor = compose.ColumnTransformer(
        [
            (
                "num",
                pipeline.Pipeline(
                    [
                        ("impute", impute.SimpleImputer(strategy="median")),
                        ("scale", preprocessing.StandardScaler()),
                    ]
                ),
                numeric,
            ),
            (
                "cat",
                pipeline.Pipeline(
                    [
                        ("impute", impute.SimpleImputer(strategy="most_frequent")),
                        ("encode", preprocessing.OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                    ]
                ),
                ["segment"],
            ),
        ]
    )
    preprocessor.fit(train.drop(columns=["label"]), train["label"])
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("validation", validation), ("test", test)):
        part.to_parquet(out / f"{name}.parquet", index=False)
    sio.dump(preprocessor, out / "preprocessor.skops")
    rows = {"input": rows_in, "train": len(train), "validation": len(validation), "test": len(test)}
    return {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu, "rows": rows}


def child(variant: str, csv: pathlib.Path, out: pathlib.Path) -> None:
    outcome = run_ours(csv, out) if variant == "ours" else run_plain(csv, out)
    outcome["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(outcome))


def measure(variant: str, csv: pathlib.Path, work: pathlib.Path, index: int) -> dict[str, Any]:
    out = work / f"{variant}-{index}"
    proc = subprocess.run(
        [sys.executable, __file__, "--child", variant, "--csv", str(csv), "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant (the fastest run counts)")
    parser.add_argument("--workdir", type=pathlib.Path, default=None)
    parser.add_argument("--child", choices=["ours", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=pathlib.Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=pathlib.Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.csv, args.out)
        return 0
    with tempfile.TemporaryDirectory(prefix="prepare-bench-", dir=args.workdir) as tmp:
        work = pathlib.Path(tmp)
        csv = work / "data.csv"
        started = time.perf_counter()
        generate(csv, args.rows)
        size = csv.stat().st_size / 2**20
        print(f"generated {args.rows:,} rows x {FEATURES + 2} columns ({size:.0f} MiB CSV) in "
              f"{time.perf_counter() - started:.1f}s")  # fmt: skip
        results: dict[str, list[dict[str, Any]]] = {"plain": [], "ours": []}
        for index in range(args.repeat):
            for variant in ("plain", "ours"):  # interleaved, so drift in machine load hits both
                results[variant].append(measure(variant, csv, work, index))
        best = {v: min(r, key=lambda x: x["seconds"]) for v, r in results.items()}
        for variant, label in (("plain", "plain pandas/scikit-learn"), ("ours", "mlops prepare workload")):
            b = best[variant]
            rate = args.rows / b["seconds"]
            splits = f"{b['rows']['train']}/{b['rows']['validation']}/{b['rows']['test']}"
            print(f"{label:28s} {b['seconds']:7.2f}s wall  {b['cpu']:7.2f}s CPU  {rate:10,.0f} rows/s  "
                  f"peak RSS {b['peak_rss_mib']:6.0f} MiB  splits {splits}")  # fmt: skip
        ratio = best["ours"]["seconds"] / best["plain"]["seconds"]
        cpu_ratio = best["ours"]["cpu"] / best["plain"]["cpu"]
        memory = best["ours"]["peak_rss_mib"] / best["plain"]["peak_rss_mib"]
        print(f"ratio ours/plain: wall time {ratio:.2f}x ({1 / ratio:.2f}x the plain script's throughput), "
              f"CPU time {cpu_ratio:.2f}x, peak memory {memory:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
