"""The activator of a ModelDeployment scaled to zero (``autoscaling.minReplicas: 0``).

While the deployment has no ready serving pod, its Service selects the activator's pod. The
activator accepts each connection, holds it until the serving pods' private Service takes a TCP
connection (kube-proxy rejects connections to a Service without ready endpoints, so the first
accepted connection means a pod is ready), then pipes bytes both ways. Holding at the TCP level
serves HTTP/1.1 and gRPC (h2c) alike and needs no request parsing; nothing the client sent is
read before the upstream is there, so no request is lost or replayed. The operator scrapes
``/metrics`` on the admin port: connections waiting is the demand that scales the pods up from
zero, and each cold start (first held connection → upstream accepted) is measured and reported
in the ModelDeployment's status. A connection held past the timeout is answered ``503`` (HTTP
ports) or closed.
"""
