"""``python -m mlops_workloads.evaluate``: score a champion and a challenger on the same held-out rows.

The retraining loop (``ModelDeployment.spec.retrain``, ``mlops_operator.api.retrain``) runs this
Job after a challenger was trained; the operator reads only the numbers it writes to its
termination message and decides. Both models are scored on:

- ``test``: the test split of the Dataset version the challenger was trained on;
- ``reviewed``: with ``reviewedUri`` (the deployment's capture root), the captured rows whose
  latest label is confirmed or corrected, less every row whose features and target equal a row
  of that version's train or validation split (``excluded``: a row the challenger learnt from
  would flatter it);
- ``overall``: both together (what the decision compares).

Modules: ``run`` (inputs, the result; ``run.evaluate`` is the entry function), ``reviewed``
(the held-out reviewed rows, row keys), ``score`` (predictions and the metric, computed by
``mlops_workloads.train.evaluate`` exactly as training computes it). Models are loaded with
``mlops_workloads.serve.bundle`` (skops behind the allowlist, or ONNX): nothing is unpickled.
"""
