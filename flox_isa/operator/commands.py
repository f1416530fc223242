"""`flox-isa` commands of the operator component: `operator` and `crd`.

Kept light: kopf, aiohttp and the Kubernetes client load only when a command runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from flox_isa import args as arg_types
from flox_isa.isa import names
from flox_isa.isa.placement import DEFAULT_WHEN_FULL, WHEN_FULL
from flox_isa.operator.defaults import DEFAULT_WRITE_CONCURRENCY

POSITIVE_SECONDS = arg_types.seconds(above_zero=True, maximum=86400)


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
        "--workers",
        type=arg_types.at_least_one,
        metavar="N",
        help="concurrent reconciles (default: 16)",
    )
    operator.add_argument(
        "--capacity-planning", action=argparse.BooleanOptionalAction, default=True,
        help="plan TicketWorker replicas by the room free on each variant's nodes (other"
        " pods' requests counted, per node) and move them calmly when a variant is full;"
        " --no-capacity-planning splits by allocatable CPU only (default: on)",
    )  # fmt: skip
    placement = operator.add_argument_group("capacity-aware placement (late binding)")
    placement.add_argument(
        "--placement", action=argparse.BooleanOptionalAction, default=True,
        help="run the placement controller: gated pods get the best allowed variant with"
        " room, and its Lease tells the webhook to gate (default: on)",
    )  # fmt: skip
    placement.add_argument(
        "--when-full", choices=WHEN_FULL, default=DEFAULT_WHEN_FULL,
        help="when the best variant has no room: next-best (spill) or wait (pin the best"
        " growable variant, Unschedulable, for an autoscaler); pods may override it with"
        f" the {names.WHEN_FULL_ANNOTATION} annotation (default: {DEFAULT_WHEN_FULL})",
    )  # fmt: skip
    placement.add_argument(
        "--growable-variants", metavar="A,B", type=arg_types.comma_list,
        help="variants whose node pools an autoscaler can grow (default: all)",
    )  # fmt: skip
    placement.add_argument(
        "--max-gate-age", type=POSITIVE_SECONDS, default=120.0, metavar="SECONDS",
        help="gated pods older than this are placed as admission would, room unseen"
        " (default 120)",
    )  # fmt: skip
    placement.add_argument(
        "--placement-lease-duration", type=POSITIVE_SECONDS, default=15.0, metavar="SECONDS",
        help="the webhook stops gating when the placement Lease is not renewed for this"
        " long; keep it equal to the webhook's (default 15)",
    )  # fmt: skip
    placement.add_argument(
        "--recover-unschedulable-after", type=POSITIVE_SECONDS, metavar="SECONDS",
        help="recovery (off by default): a pod the placement controller placed that stays"
        " Unschedulable this long while another allowed variant has room on other nodes is"
        " deleted for its ReplicaSet or StatefulSet to recreate; the owner's new pods skip"
        " the nodes it failed on for as long",
    )  # fmt: skip
    placement.add_argument(
        "--placement-write-concurrency", type=arg_types.at_least_one, metavar="N",
        default=DEFAULT_WRITE_CONCURRENCY,
        help=f"placement writes in flight at once (default {DEFAULT_WRITE_CONCURRENCY})",
    )  # fmt: skip
    operator.set_defaults(handler=_operator)

    ungate = commands.add_parser(
        "ungate",
        help="release every pod gated by flox-isa (uninstall, emergencies)",
        description=f"Place every pod carrying the {names.PLACEMENT_GATE} scheduling gate as"
        " the placement controller would (the best allowed variant with room; the widest"
        " fit when no eligible node offers one) and remove that gate (others stay). The"
        " chart's pre-delete hook runs it. Exit codes: 0 all released, 1 some left, 2 bad"
        " input.",
    )
    ungate.add_argument("--all", action="store_true", required=True,
                        help="every namespace (required: says what it does)")  # fmt: skip
    ungate.add_argument("--kubeconfig", metavar="FILE", help="default: in-cluster, else ~/.kube")
    ungate.add_argument("--catalog", metavar="FILE", help="variant catalog (YAML or JSON)")
    ungate.add_argument("--dry-run", action="store_true", help="say what would be done")
    ungate.add_argument("--output", choices=("text", "json"), default="text")
    ungate.set_defaults(handler=_ungate)

    crd = commands.add_parser(
        "crd",
        help="print the TicketWorker CRD (YAML)",
        description="Print the CustomResourceDefinition: `flox-isa crd | kubectl apply -f -`.",
    )
    crd.set_defaults(handler=_crd)


def _operator(args: argparse.Namespace) -> int:
    from flox_isa.files import InputError, load_catalog  # noqa: PLC0415 - keep --help fast
    from flox_isa.operator.run import Options, run  # noqa: PLC0415 - imports kopf, aiohttp

    catalog = load_catalog(args.catalog)
    unknown = sorted((args.growable_variants or frozenset()) - set(catalog.names))
    if unknown:
        raise InputError(
            f"--growable-variants: unknown variant(s) {', '.join(unknown)};"
            f" allowed: {', '.join(catalog.names)}"
        )
    if args.recover_unschedulable_after is not None and not args.placement:
        raise InputError("--recover-unschedulable-after needs the placement controller:"
                         " drop --no-placement")  # fmt: skip
    return run(
        Options(
            catalog=catalog,
            kubeconfig=args.kubeconfig,
            namespaces=args.namespaces,
            health_port=args.health_port,
            leader_election=args.leader_election,
            lease_name=args.lease_name,
            lease_namespace=args.lease_namespace,
            lease_duration=args.lease_duration,
            workers=args.workers,
            placement=args.placement,
            when_full=args.when_full,
            growable=args.growable_variants,
            max_gate_age=args.max_gate_age,
            placement_lease_duration=args.placement_lease_duration,
            recover_after=args.recover_unschedulable_after,
            write_concurrency=args.placement_write_concurrency,
            capacity_planning=args.capacity_planning,
        )
    )


def _ungate(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 - command-only
    import json  # noqa: PLC0415 - command-only

    from flox_isa.files import load_catalog  # noqa: PLC0415 - keep --help fast
    from flox_isa.operator.ungate import release  # noqa: PLC0415 - imports aiohttp

    catalog = load_catalog(args.catalog)
    result = asyncio.run(release(args.kubeconfig, catalog, dry_run=args.dry_run))
    if args.output == "json":
        print(json.dumps({"placed": result.placed, "left": result.left}, indent=2))
    else:
        verb = "would place" if args.dry_run else "placed"
        for row in result.placed:
            print(f"{verb} {row['namespace']}/{row['pod']}: {row['variant']} ({row['reason']})")
        for row in result.left:
            print(f"left gated {row['namespace']}/{row['pod']}: {row['reason']}")
        print(f"{len(result.placed)} {verb}, {len(result.left)} left gated")
    return 1 if result.left else 0


def _crd(_: argparse.Namespace) -> int:
    from flox_isa.operator.crd import crd_yaml  # noqa: PLC0415 - pydantic schema generation

    print(crd_yaml(), end="")
    return 0
