"""The model server (``python -m mlops_workloads.serve``) of a ModelDeployment.

Modules: ``bundle`` (safe loading of a model directory), ``inputs`` (request decoding and
validation), ``app`` (the OIP v2 / KServe v1 protocol logic), ``drift`` (PSI window),
``telemetry`` (Prometheus metrics), ``openapi`` (the served document), ``http`` (the
asyncio + httptools front end) and ``__main__`` (config, workers, signals).
"""
