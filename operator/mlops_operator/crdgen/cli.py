"""The command line: write the CRDs, or ``--check`` that the committed ones are current.

``make crds`` writes; ``make verify`` (CI) checks and prints a unified diff, so a
model change without regenerated CRDs cannot be merged.
"""

from __future__ import annotations

import argparse
import difflib
import pathlib
import sys
from collections.abc import Mapping, Sequence

from mlops_operator.crdgen import crd
from mlops_operator.crdgen import schema as schema_mod


def differences(out_dir: pathlib.Path, files: Mapping[str, str]) -> list[str]:
    """Unified diffs (committed → rendered) for every file of ``out_dir`` that is not as rendered.

    Stale generated files (a kind that no longer exists) count as differences too.
    """
    diffs: list[str] = []
    present = {p.name for p in out_dir.glob(f"{crd.FILE_PREFIX}*.yaml")} if out_dir.is_dir() else set()
    for name in sorted(set(files) | present):
        path = out_dir / name
        old = path.read_text(encoding="utf-8") if name in present else ""
        new = files.get(name, "")
        if old != new:
            diff = difflib.unified_diff(
                old.splitlines(keepends=True),
                new.splitlines(keepends=True),
                fromfile=f"{path} (committed)" if name in present else "/dev/null",
                tofile=f"{path} (generated)" if name in files else "/dev/null",
            )
            diffs.append("".join(diff))
    return diffs


def write(out_dir: pathlib.Path, files: Mapping[str, str]) -> list[pathlib.Path]:
    """Write the rendered files (only those that changed) and delete stale ones; return what changed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    changed: list[pathlib.Path] = []
    for name, text in sorted(files.items()):
        path = out_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    for path in sorted(out_dir.glob(f"{crd.FILE_PREFIX}*.yaml")):
        if path.name not in files:
            path.unlink()
            changed.append(path)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_operator.crdgen", description=__doc__)
    parser.add_argument(
        "--out", default="crds", type=pathlib.Path, help="directory of the CRDs (default: crds)"
    )
    parser.add_argument(
        "--chart-out",
        type=pathlib.Path,
        default=None,
        help="also keep an identical copy here (the Helm chart's crds/)",
    )
    parser.add_argument(
        "--check", action="store_true", help="compare instead of writing; exit 1 on a difference"
    )
    parser.add_argument(
        "--module",
        action="append",
        dest="modules",
        help=f"a module to search for kinds (repeatable; default: {', '.join(crd.KIND_MODULES)})",
    )
    args = parser.parse_args(argv)
    try:
        resources = crd.discover(args.modules or crd.KIND_MODULES)
        files = crd.render_all(resources)
    except schema_mod.CRDGenError as exc:
        print(f"crdgen: {exc}", file=sys.stderr)
        return 2
    for resource in resources:
        for field in crd.undescribed_fields(resource):
            print(
                f"crdgen: warning: {field} has no description (kubectl explain shows none)", file=sys.stderr
            )
    out_dirs: list[pathlib.Path] = [args.out] + ([args.chart_out] if args.chart_out else [])
    if args.check:
        diffs = [d for out_dir in out_dirs for d in differences(out_dir, files)]
        for diff in diffs:
            sys.stdout.write(diff)
        if diffs:
            print(
                f"crdgen: {len(diffs)} generated file(s) out of date; run `make crds` and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"crdgen: {len(files)} CRD(s) up to date in {', '.join(map(str, out_dirs))}", file=sys.stderr)
        return 0
    for out_dir in out_dirs:
        for path in write(out_dir, files):
            print(f"crdgen: wrote {path}" if path.exists() else f"crdgen: removed {path}", file=sys.stderr)
    print(f"crdgen: {len(files)} CRD(s): {', '.join(sorted(files)) or 'none'}", file=sys.stderr)
    return 0
