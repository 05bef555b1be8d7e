"""Export a Model's versions to an MLflow tracking server, so teams keep MLflow's UI.

Optional: only an operator given ``MLOPS_MLFLOW_TRACKING_URI`` exports. Each version becomes an
MLflow run (parameters, metrics, lineage tags, the model card) in one experiment per Model and a
version of one registered model per Model, whose aliases mirror the Model's. The cluster stays
the source of truth: the Model's ``status.mlflow`` remembers what was exported, and every create
is preceded by a search for what a crashed pass may have made, so nothing is made twice.

- ``client``: a small typed client of MLflow's REST API 2.0 (the standard library's urllib; the
  mlflow package is far too big for the operator's image).
- ``mapping``: pure: a version record (the ``version.json`` of ``<model>-v<n>``) as MLflow
  payloads, the names, what is left to export, and the status and condition of a pass.
- ``export``: one pass for one Model: calls the client in a restart-safe order, with backoff
  after failures.

The reconcile layer never imports this package; the Model handler does.
"""
