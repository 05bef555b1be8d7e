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

``--large``: data larger than one pod's memory. A 10,000,000-row, 20-column Parquet file (18
float features with 1% gaps, an 8-value categorical with 0.5% gaps, a binary target with
0.1% gaps, 2% duplicate rows), generated once and cached under ``--cache``. The anchor is the
same plain script reading it with ``pd.read_parquet``; ours streams it (the file holds more
rows than ``spec.scale.inMemoryRows``), so its peak memory is bounded by a batch, the
200,000-row sample and 16 bytes per row, where the plain script's grows with the table.

    .venv/bin/python benchmarks/prepare_throughput.py [--rows 1000000] [--repeat 1]
    .venv/bin/python benchmarks/prepare_throughput.py --large [--rows 10000000] [--cache DIR]
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
LARGE_ROWS = 10_000_000
LARGE_FLOATS = 18
LARGE_CHUNK = 1_000_000
DEFAULT_CACHE = pathlib.Path(tempfile.gettempdir()) / "mlops-bench-cache"


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


def generate_large(path: pathlib.Path, rows: int, seed: int = 0) -> None:
    """The --large Parquet file, written a million rows at a time (deterministic for ``seed``)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path.with_suffix(".partial")
    writer: pq.ParquetWriter | None = None
    segments = np.array([f"seg-{i}" for i in range(8)])
    for start in range(0, rows, LARGE_CHUNK):
        size = min(LARGE_CHUNK, rows - start)
        rng = np.random.default_rng([seed, start])
        columns: dict[str, Any] = {}
        signal = np.zeros(size)
        for i in range(LARGE_FLOATS):
            values = rng.normal(size=size).round(4)
            if i < 4:
                signal += values
            values[rng.random(size) < 0.01] = np.nan
            columns[f"f{i:02d}"] = values
        segment = rng.choice(segments, size=size).astype(object)
        segment[rng.random(size) < 0.005] = None
        columns["segment"] = segment
        label = (signal + rng.normal(size=size) > 1.0).astype(np.float64)
        label[rng.random(size) < 0.001] = np.nan
        columns["label"] = label
        table = pa.table(columns)
        copies = rng.choice(size, size=size // 50, replace=False)  # 2% of the rows repeat another row
        sources = rng.choice(size, size=len(copies))
        order = np.arange(size)
        order[copies] = sources
        table = table.take(pa.array(order))
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
        writer.write_table(table, row_group_size=LARGE_CHUNK)
    assert writer is not None
    writer.close()
    tmp.rename(path)


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
    return {"seconds": seconds, "cpu": cpu, "rows": result["rows"], "dropped": result["dropped"]}


def run_plain(csv: pathlib.Path, out: pathlib.Path) -> dict[str, Any]:
    import pandas as pd
    import skops.io as sio
    from sklearn import compose, impute, model_selection, pipeline, preprocessing

    started, cpu = time.perf_counter(), time.process_time()
    frame = pd.read_parquet(csv) if csv.suffix == ".parquet" else pd.read_csv(csv)
    rows_in = len(frame)
    frame = frame.dropna(subset=["label"]).drop_duplicates().reset_index(drop=True)
    train, rest = model_selection.train_test_split(
        frame, test_size=0.3, stratify=frame["label"], random_state=42
    )
    validation, test = model_selection.train_test_split(
        rest, test_size=0.5, stratify=rest["label"], random_state=42
    )
    numeric = [c for c in frame.columns if c not in ("segment", "label")]
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
        [sys.executable, __file__, "--child", variant, "--data", str(csv), "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=None, help="rows (default 1,000,000; 10,000,000 with --large)"
    )
    parser.add_argument("--large", action="store_true", help="the Parquet source larger than a pod's memory")
    parser.add_argument(
        "--cache", type=pathlib.Path, default=DEFAULT_CACHE, help="where --large data is kept"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per variant (the fastest run counts)")
    parser.add_argument("--workdir", type=pathlib.Path, default=None)
    parser.add_argument("--child", choices=["ours", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=pathlib.Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=pathlib.Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, args.out)
        return 0
    args.rows = args.rows or (LARGE_ROWS if args.large else 1_000_000)
    with tempfile.TemporaryDirectory(prefix="prepare-bench-", dir=args.workdir) as tmp:
        work = pathlib.Path(tmp)
        started = time.perf_counter()
        if args.large:
            args.cache.mkdir(parents=True, exist_ok=True)
            csv = args.cache / f"large-{args.rows}.parquet"
            fresh = not csv.exists()
            if fresh:
                generate_large(csv, args.rows)
            size = csv.stat().st_size / 2**20
            print(f"{'generated' if fresh else 'cached'} {args.rows:,} rows x {LARGE_FLOATS + 2} columns "
                  f"({size:.0f} MiB Parquet, {csv}) in {time.perf_counter() - started:.1f}s")  # fmt: skip
        else:
            csv = work / "data.csv"
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
