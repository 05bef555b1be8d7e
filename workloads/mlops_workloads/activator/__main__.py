"""``python -m mlops_workloads.activator``: hold a scaled-to-zero deployment's requests.

Config: the JSON of ``ActivatorConfig`` from MLOPS_CONFIG_FILE / MLOPS_CONFIG (how the operator
runs it), overridden by flags (``--upstream host:port`` replaces the routes with one HTTP route
on ``--port``; tests and people). SIGTERM and SIGINT stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import pathlib
import signal
import sys

from mlops_operator.api import modeldeployment as md_api
from mlops_workloads import runtime
from mlops_workloads.activator import proxy


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlops_workloads.activator", description=__doc__)
    parser.add_argument("--upstream", help="host:port of the serving pods (one HTTP route)")
    parser.add_argument("--port", type=int, default=8080, help="with --upstream: the listen port")
    parser.add_argument("--admin-port", type=int)
    parser.add_argument("--timeout-seconds", type=float)
    parser.add_argument("--port-file", help="write the bound ports here as JSON once listening (tests)")
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace, environ: dict[str, str]) -> md_api.ActivatorConfig:
    routes = None
    if args.upstream:
        host, _, port = str(args.upstream).rpartition(":")
        if not host or not port.isdigit():
            raise runtime.WorkloadError("BadConfig", f"--upstream must be host:port, not {args.upstream!r}")
        routes = [{"name": "http", "port": args.port, "upstreamHost": host, "upstreamPort": int(port)}]
    flags = {"routes": routes, "admin_port": args.admin_port, "timeout_seconds": args.timeout_seconds}
    data = runtime.config_with_flags(md_api.ActivatorConfig, environ, flags)
    return runtime.validate_config(
        md_api.ActivatorConfig, data, required="routes", hint="give --upstream or a config with routes"
    )


async def serve(config: md_api.ActivatorConfig, *, port_file: str | None = None) -> None:
    activator = proxy.Activator(config)
    try:
        await activator.start()
    except OSError as exc:
        raise runtime.WorkloadError("CannotListen", f"cannot listen: {exc}") from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if port_file:
        pathlib.Path(port_file).write_text(json.dumps(activator.ports), encoding="utf-8")
    logging.getLogger("mlops_workloads.activator").info(
        "activator for %s: %s",
        config.deployment or "?",
        ", ".join(
            f"{r.name} :{activator.ports[r.name]} → {r.upstream_host}:{r.upstream_port}"
            for r in config.routes
        ),
    )
    await stop.wait()
    await activator.stop()


def run(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    args = parse_args(argv)
    config = load_config(args, dict(os.environ if environ is None else environ))
    asyncio.run(serve(config, port_file=args.port_file))
    return 0


def main() -> int:
    return runtime.server_main(run)


if __name__ == "__main__":
    sys.exit(main())
