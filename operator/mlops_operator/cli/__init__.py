"""``mlops``: what kubectl does badly for this operator's users.

- ``mlops status``: the chain Dataset → TrainingJob → HyperparameterSweep → ModelDeployment, with
  phases, row counts, metrics, best trials, readiness and drift, as one tree;
- ``mlops watch``: live progress bars of preparation, training runs, sweeps and serving;
- ``mlops plot sweep NAME``: a PNG of a sweep's objective per trial and the best so far;
- ``mlops predict DEPLOYMENT rows.csv``: score a CSV with a deployed model;
- ``mlops models [compare|alias|delete-version ...]``: the model registry's versions and aliases;
- ``mlops review DEPLOYMENT``: confirm or correct a deployment's captured rows, key by key.

The commands read the cluster with the user's kubeconfig (``--kubeconfig``, ``--context``,
``-n``/``-A`` as in kubectl); errors a user can fix are printed on one line with exit status 1.
Command modules are imported on use, so ``mlops --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="mlops", description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    common.add_argument("--context", help="kubeconfig context")
    common.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    common.add_argument("--no-color", action="store_true", help="no ANSI colours")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status = sub.add_parser(
        "status", parents=[common], help="the Dataset → TrainingJob → sweep → deployment chain"
    )
    status.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    status.add_argument("-o", "--output", choices=["tree", "json"], default="tree")

    watch = sub.add_parser("watch", parents=[common], help="live progress of jobs, sweeps and deployments")
    watch.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    watch.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    watch.add_argument("--once", action="store_true", help="print one frame and exit")
    watch.add_argument(
        "--until-done",
        action="store_true",
        help="exit when nothing is preparing, training or searching (1 if something failed)",
    )

    plot = sub.add_parser("plot", help="plots (PNG)")
    plot_sub = plot.add_subparsers(dest="what", required=True, metavar="WHAT")
    sweep = plot_sub.add_parser("sweep", parents=[common], help="objective per trial and best so far")
    sweep.add_argument("name", help="HyperparameterSweep name")
    sweep.add_argument("-o", "--output", help="PNG path (default: NAME.png)")

    predict = sub.add_parser("predict", parents=[common], help="score a CSV with a ModelDeployment")
    predict.add_argument("deployment", help="ModelDeployment name")
    predict.add_argument("csv", help="CSV file with a header row (the model's input columns)")
    predict.add_argument(
        "--url", help="model server base URL (skips the cluster lookup), e.g. http://127.0.0.1:8080"
    )
    predict.add_argument(
        "--model-name", help="model name in URLs (default: from status.url, else DEPLOYMENT)"
    )
    predict.add_argument("--batch-size", type=int, default=500, help="rows per request (default 500)")
    predict.add_argument(
        "-o",
        "--output",
        choices=["csv", "json"],
        default="csv",
        help="csv: the rows plus prediction columns; json: one object per line",
    )
    models = sub.add_parser(
        "models", parents=[common], help="registered models: versions, aliases, compare, move an alias"
    )
    models.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=["list", "compare", "alias", "delete-version"],
        help="list (default); compare MODEL V1 V2; alias MODEL ALIAS VERSION; delete-version MODEL VERSION",
    )
    models.add_argument("args", nargs="*", help="the action's arguments")
    models.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace (list)")
    models.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    review = sub.add_parser(
        "review", parents=[common], help="confirm or correct a ModelDeployment's captured rows"
    )
    review.add_argument("deployment", help="ModelDeployment name (spec.logging.review.enabled)")
    review.add_argument(
        "--reviewer", help="who the labels are saved under (default: $MLOPS_REVIEWER, else your login)"
    )
    review.add_argument(
        "--url", help="review server base URL (skips the cluster lookup), e.g. http://127.0.0.1:8080"
    )
    review.add_argument(
        "--all",
        dest="everything",
        action="store_true",
        help="every captured row waiting, not only the low-confidence ones",
    )
    return top


def main(argv: list[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from mlops_operator.cli import kube

    out = out or sys.stdout
    err = err or sys.stderr
    args = parser().parse_args(argv)
    colour = not args.no_color and out.isatty()
    session = None
    try:
        if args.command == "review" and args.url:
            from mlops_operator.cli import review

            return review.run(
                session=None,
                deployment=args.deployment,
                url=args.url,
                reviewer=args.reviewer,
                everything=args.everything,
                inp=sys.stdin,
                out=out,
            )
        if args.command == "predict" and args.url:
            from mlops_operator.cli import predict

            if args.batch_size < 1:
                raise kube.CliError("--batch-size must be at least 1")
            return predict.run(
                session=None,
                deployment=args.deployment,
                csv_path=args.csv,
                url=args.url,
                model_name=args.model_name,
                batch_size=args.batch_size,
                output_format=args.output,
                out=out,
                err=err,
            )
        session = kube.connect(
            kubeconfig=args.kubeconfig,
            context=args.context,
            namespace=args.namespace,
            all_namespaces=bool(getattr(args, "all_namespaces", False)),
        )
        if args.command == "status":
            return _status(session, output=args.output, colour=colour, out=out)
        if args.command == "watch":
            from mlops_operator.cli import watch

            return watch.run(
                session,
                interval=max(0.2, args.interval),
                once=args.once,
                until_done=args.until_done,
                colour=colour,
                out=out,
            )
        if args.command == "models":
            from mlops_operator.cli import models

            return models.run(session, args.action, args.args, output=args.output, out=out)
        if args.command == "review":
            from mlops_operator.cli import review

            return review.run(
                session=session,
                deployment=args.deployment,
                url=None,
                reviewer=args.reviewer,
                everything=args.everything,
                inp=sys.stdin,
                out=out,
            )
        if args.command == "plot":
            from mlops_operator.cli import plot

            path = plot.run(session, args.name, args.output)
            out.write(f"wrote {path}\n")
            return 0
        from mlops_operator.cli import predict

        if args.batch_size < 1:
            raise kube.CliError("--batch-size must be at least 1")
        return predict.run(
            session=session,
            deployment=args.deployment,
            csv_path=args.csv,
            url=None,
            model_name=args.model_name,
            batch_size=args.batch_size,
            output_format=args.output,
            out=out,
            err=err,
        )
    except kube.CliError as exc:
        err.write(f"mlops: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # The k8s layer turns an unreachable API server into kopf.TemporaryError; say it plainly.
        if type(exc).__name__ == "TemporaryError":
            err.write(f"mlops: the API server is not reachable: {exc}\n")
            return 1
        raise
    finally:
        if session is not None:
            session.close()


def _status(session: object, *, output: str, colour: bool, out: TextIO) -> int:
    from mlops_operator.cli import chain, kube

    assert isinstance(session, kube.Session)
    roots = chain.build(
        datasets=session.list("Dataset"),
        trainingjobs=session.list("TrainingJob"),
        sweeps=session.list("HyperparameterSweep"),
        deployments=session.list("ModelDeployment"),
    )
    if output == "json":
        out.write(json.dumps([r.to_dict() for r in roots], indent=2) + "\n")
        return 0
    if not roots:
        where = f"namespace {session.namespace}" if session.namespace else "any namespace"
        out.write(f"No Datasets, TrainingJobs, sweeps or ModelDeployments in {where}.\n")
        return 0
    for line in chain.render(roots, colour=colour, show_namespace=session.namespace is None):
        out.write(line + "\n")
    return 0
