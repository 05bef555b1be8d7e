"""``python -m mlops_operator``: run the operator (kopf) with our settings."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

import kopf

from mlops_operator.handlers import settings as handler_settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mlops-operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (default)")
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; globs allowed)",
    )
    parser.add_argument("--metrics-port", type=int, default=None, help="port of /metrics (0 disables)")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL")
    parser.add_argument(
        "--peering",
        default=None,
        help="name of a kopf peering object for HA (replicas > 1); standalone when unset",
    )
    parser.add_argument(
        "--kubeconfig", default=None, help="kubeconfig (default: in-cluster, then ~/.kube/config)"
    )
    parser.add_argument("--log-format", choices=["json", "plain", "full"], default="json")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = handler_settings.OperatorConfig.from_env()
    if args.metrics_port is not None:
        config = dataclasses.replace(config, metrics_port=args.metrics_port)
    if args.kubeconfig:
        config = dataclasses.replace(config, kubeconfig=args.kubeconfig)
    if args.peering:
        config = dataclasses.replace(config, peering=args.peering)
    config = dataclasses.replace(config, namespaces=tuple(args.namespace))
    handler_settings.configure(config)
    kopf.configure(
        verbose=args.verbose,
        log_format={"json": kopf.LogFormat.JSON, "plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL}[
            args.log_format
        ],
    )
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    import mlops_operator.handlers.all  # noqa: F401 - registers the handlers after configuration

    if args.kubeconfig:
        import os

        os.environ["KUBECONFIG"] = args.kubeconfig
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=tuple(args.namespace),
        liveness_endpoint=args.liveness or None,
        standalone=config.peering is None,
        peering_name=config.peering,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
