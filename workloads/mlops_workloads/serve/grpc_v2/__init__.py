"""The Open Inference Protocol v2 gRPC service, ``inference.GRPCInferenceService``.

``grpc_predict_v2.proto`` is KServe's text unchanged (python/kserve/kserve/protocol/grpc/, the
one Triton and MLServer serve too: package ``inference``, its license header kept). The
``*_pb2.py``/``*_pb2_grpc.py`` modules and their ``.pyi`` are GENERATED from it and committed,
so the images need no compiler: ``make grpc-stubs`` rewrites them (``generate``, with the
grpcio-tools and mypy-protobuf pinned in the dev extra) and a unit test regenerates them into
a temporary directory and compares byte for byte. Do not edit them by hand.

The server side lives in ``mlops_workloads.serve.grpc_server``.
"""
