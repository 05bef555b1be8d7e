"""``python -m mlops_workloads.review``: the review page of one deployment's captured rows.

Config: the JSON of ``ReviewConfig`` from MLOPS_CONFIG_FILE / MLOPS_CONFIG (how the operator
runs it, from ``spec.logging.review``), overridden by command-line flags (how a person runs it:
``python -m mlops_workloads.review --uri file:///data/feedback/ns/iris --port 8090``). SIGTERM
and SIGINT stop it; a decision is saved by the request that makes it, so nothing is pending then.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import signal
import sys
import threading

from mlops_operator.api import modeldeployment as md_api
from mlops_workloads import runtime
from mlops_workloads.review import backlog, server


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlops_workloads.review", description=__doc__)
    parser.add_argument("--uri", help="the deployment's capture root (pvc://, file:// or s3://)")
    parser.add_argument("--deployment", help="the ModelDeployment's name (shown on the page)")
    parser.add_argument("--namespace", help="its namespace (shown)")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--refresh-seconds", type=float, help="list the store again at most this often")
    parser.add_argument(
        "--no-user-headers",
        action="store_true",
        help="ignore X-Forwarded-User / X-Remote-User (no auth proxy in front)",
    )
    parser.add_argument("--port-file", help="write the bound port here once listening (tests)")
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace, environ: dict[str, str]) -> md_api.ReviewConfig:
    flags = {
        "uri": args.uri,
        "deployment": args.deployment,
        "namespace": args.namespace,
        "host": args.host,
        "port": args.port,
        "refresh_seconds": args.refresh_seconds,
        "user_headers": [] if args.no_user_headers else None,
    }
    data = runtime.config_with_flags(md_api.ReviewConfig, environ, flags)
    return runtime.validate_config(
        md_api.ReviewConfig, data, required="uri", hint="give --uri or a config with uri"
    )


def build(config: md_api.ReviewConfig) -> server.Server:
    """The server for ``config``, bound to its port (not serving yet)."""
    queue = backlog.open_backlog(
        config.uri,
        connection=config.s3,
        pvc_root=config.pvc_root,
        secrets_root=config.secrets_root,
        refresh_seconds=config.refresh_seconds,
    )
    try:
        return server.Server(
            (config.host, config.port),
            backlog=queue,
            deployment=config.deployment,
            namespace=config.namespace,
            user_headers=tuple(config.user_headers),
        )
    except OSError as exc:
        raise runtime.WorkloadError(
            "CannotListen", f"cannot listen on {config.host}:{config.port}: {exc}"
        ) from exc


def run(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    args = parse_args(argv)
    config = load_config(args, dict(os.environ if environ is None else environ))
    httpd = build(config)

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("mlops_workloads.review").info("signal %d: stopping", signum)
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.port_file:
        pathlib.Path(args.port_file).write_text(str(httpd.port), encoding="utf-8")
    logging.getLogger("mlops_workloads.review").info(
        "review server for %s on %s:%d, rows from %s", config.deployment, config.host, httpd.port, config.uri
    )
    try:
        httpd.serve_forever(poll_interval=0.5)
    finally:
        httpd.server_close()
    return 0


def main() -> int:
    return runtime.server_main(run)


if __name__ == "__main__":
    sys.exit(main())
