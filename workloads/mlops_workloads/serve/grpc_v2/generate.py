"""Generate the gRPC modules of ``grpc_predict_v2.proto`` (a dev-time tool: ``make grpc-stubs``).

``python -m mlops_workloads.serve.grpc_v2.generate`` rewrites the committed modules next to
the proto; ``--out DIR`` writes the tree ``DIR/mlops_workloads/serve/grpc_v2/`` instead (the
unit test compares that with the committed files). The proto is compiled with ``workloads/``
as its include root, so the generated code imports its sibling as
``mlops_workloads.serve.grpc_v2.grpc_predict_v2_pb2``. protoc comes from grpcio-tools; the
``.pyi`` stubs (typed messages, the servicer and the stubs for sync and ``grpc.aio`` channels)
from mypy-protobuf's protoc plugins, found next to this interpreter or on ``$PATH``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
INCLUDE_ROOT = HERE.parents[2]  # workloads/: the directory that holds the mlops_workloads package
PROTO = HERE / "grpc_predict_v2.proto"
GENERATED = (
    "grpc_predict_v2_pb2.py",
    "grpc_predict_v2_pb2.pyi",
    "grpc_predict_v2_pb2_grpc.py",
    "grpc_predict_v2_pb2_grpc.pyi",
)


def _plugin(name: str) -> str:
    search = os.pathsep.join([str(pathlib.Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        raise SystemExit(f"{name} not found: install the dev extra (mypy-protobuf)")
    return found


def generate(out: pathlib.Path) -> list[pathlib.Path]:
    """Compile the proto into ``out`` (as the package tree); return the generated files."""
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"--proto_path={INCLUDE_ROOT}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--mypy_out={out}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--mypy_grpc_out={out}",
        str(PROTO),
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    target = out / HERE.relative_to(INCLUDE_ROOT)
    return [target / name for name in GENERATED]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlops_workloads.serve.grpc_v2.generate", description=__doc__
    )
    parser.add_argument("--out", type=pathlib.Path, help="write the package tree here, not in place")
    args = parser.parse_args(argv)
    if args.out is not None:
        for path in generate(args.out):
            print(path)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(pathlib.Path(tmp)):
            shutil.copyfile(path, HERE / path.name)
            print(HERE / path.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
