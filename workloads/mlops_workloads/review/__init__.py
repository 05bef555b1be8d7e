"""The review page of a ModelDeployment's captured rows (``python -m mlops_workloads.review``).

People confirm or correct the label of each row the model server captured (``capture``), and
their decisions are saved beside those rows (``labels``), with who made them and when, for the
feedback Dataset source to read. ``backlog`` holds the logic (what is waiting, checking and
saving a batch), ``server`` the HTTP side, ``page.html`` the page, ``demo`` a seeded store to try
it on. The operator runs it as ``<deployment>-review`` when ``spec.logging.review.enabled``.
"""
