"""``python -m mlops_operator.argocd``: print the Argo CD health checks for the mlops.dev kinds."""

from __future__ import annotations

import argparse
import sys

from mlops_operator import argocd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_operator.argocd", description=__doc__)
    parser.add_argument(
        "--format",
        choices=["configmap", "helm-values"],
        default="configmap",
        help="an argocd-cm ConfigMap patch (kubectl apply / kustomize) or values of the argo-cd Helm chart",
    )
    parser.add_argument("--namespace", default="argocd", help="Argo CD's namespace (configmap format)")
    parser.add_argument("--kind", choices=argocd.KINDS, help="print only this kind's Lua script")
    args = parser.parse_args(argv)
    if args.kind:
        sys.stdout.write(argocd.health_script(args.kind))
    else:
        sys.stdout.write(argocd.render(args.format, args.namespace))
    return 0


if __name__ == "__main__":
    sys.exit(main())
