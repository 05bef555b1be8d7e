"""``python -m mlops_workloads.train``: fit one estimator on a prepared Dataset version and evaluate it.

Reads a ``TrainConfig`` (``MLOPS_CONFIG_FILE``), loads the splits and the fitted preprocessor
from the Dataset directory, builds the allowlisted estimator, optionally cross-validates on
the training split, fits, evaluates on validation and test, saves ONE Pipeline (preprocessor
+ model) with skops next to a model card and the Dataset's schema and baseline, and reports a
compact JSON result on the termination-message path.
"""
