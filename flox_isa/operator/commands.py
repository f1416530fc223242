"""`flox-isa` commands of the operator component: `operator` and `crd`.

Kept light: kopf, aiohttp and the Kubernetes client load only when a command runs.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: Any) -> None:
    """Add `flox-isa operator` and `flox-isa crd` to the parser."""
    operator = commands.add_parser(
        "operator",
        help="run the TicketWorker operator",
        description="Reconcile TicketWorkers into one Deployment per ISA variant the fleet"
        " offers. Several replicas may run: one holds a Lease and acts, the others wait.",
    )
    operator.add_argument("--kubeconfig", metavar="FILE", help="default: in-cluster, else ~/.kube")
    operator.add_argument("--catalog", metavar="FILE", help="variant catalog (YAML or JSON)")
    scope = operator.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        dest="namespaces",
        action="append",
        default=[],
        metavar="NS",
        help="watch TicketWorkers in NS (repeatable)",
    )
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true", help="watch every namespace (the default)"
    )
    operator.add_argument(
        "--health-port", type=int, default=8080, metavar="N", help="GET /healthz; 0 disables"
    )
    operator.add_argument("--lease-name", default="flox-isa-operator")
    operator.add_argument(
        "--lease-namespace", default="", help="default: the pod's namespace, else 'default'"
    )
    operator.add_argument(
        "--lease-duration", type=float, default=15.0, metavar="SECONDS",
        help="a crashed leader is replaced within this time (default 15)",
    )  # fmt: skip
    operator.add_argument(
        "--no-leader-election", dest="leader_election", action="store_false",
        help="act at once, without a Lease (a single replica only)",
    )  # fmt: skip
    operator.add_argument(
        "--workers", type=_at_least_one, metavar="N", help="concurrent reconciles (default: 16)"
    )
    operator.set_defaults(handler=_operator)

    crd = commands.add_parser(
        "crd",
        help="print the TicketWorker CRD (YAML)",
        description="Print the CustomResourceDefinition: `flox-isa crd | kubectl apply -f -`.",
    )
    crd.set_defaults(handler=_crd)


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _operator(args: argparse.Namespace) -> int:
    from flox_isa.files import load_catalog  # noqa: PLC0415 - keep `flox-isa --help` fast
    from flox_isa.operator.run import Options, run  # noqa: PLC0415 - imports kopf, aiohttp

    return run(
        Options(
            catalog=load_catalog(args.catalog),
            kubeconfig=args.kubeconfig,
            namespaces=args.namespaces,
            health_port=args.health_port,
            leader_election=args.leader_election,
            lease_name=args.lease_name,
            lease_namespace=args.lease_namespace,
            lease_duration=args.lease_duration,
            workers=args.workers,
        )
    )


def _crd(_: argparse.Namespace) -> int:
    from flox_isa.operator.crd import crd_yaml  # noqa: PLC0415 - pydantic schema generation

    print(crd_yaml(), end="")
    return 0
