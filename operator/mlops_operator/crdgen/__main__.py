"""``python -m mlops_operator.crdgen``: see :mod:`mlops_operator.crdgen.cli`."""

import sys

from mlops_operator.crdgen import cli

sys.exit(cli.main())
