"""mlops-operator: Kubernetes-native ML workflow operator.

Imports nothing heavy (no kopf): the workloads import the API models from here.
"""

__version__ = "0.1.0"
