"""`flox-isa`: the command line. Each command parses its arguments, calls the core, prints."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flox_isa import __version__, completion
from flox_isa.args import add_cluster_options
from flox_isa.demo import commands as demo_commands
from flox_isa.devcluster import commands as devcluster_commands
from flox_isa.doctor import commands as doctor_commands
from flox_isa.environments import commands as environments_commands
from flox_isa.files import InputError, load_catalog, read_text
from flox_isa.isa.catalog import DEFAULT_WORKLOAD, WORKLOADS, Catalog, Workload
from flox_isa.isa.cpuinfo import CpuinfoError, features_from_cpuinfo
from flox_isa.isa.fleet import feature_groups, fleet_offers
from flox_isa.isa.manifest import NothingToRenderError
from flox_isa.isa.nodes import NodeDocumentError, node_info, nodes_in
from flox_isa.isa.selection import choose
from flox_isa.kube.errors import ClusterError
from flox_isa.operator import commands as operator_commands
from flox_isa.webhook import commands as webhook_commands

EXIT_INPUT = 2
EXIT_NO_VARIANT = 3

Handler = Callable[[argparse.Namespace], int]


PLUGIN_PROG = "kubectl flox-isa"


def main(argv: Sequence[str] | None = None, prog: str = "flox-isa") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_INPUT
    try:
        return handler(args)
    except (InputError, CpuinfoError, NodeDocumentError, NothingToRenderError, ClusterError) as exc:
        print(f"flox-isa: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `... | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def kubectl_main() -> int:
    """`kubectl-flox_isa`: kubectl runs it for `kubectl flox-isa ...`."""
    return main(prog=PLUGIN_PROG)


def kubectl_complete() -> int:
    """`kubectl_complete-flox_isa`: kubectl runs it for `kubectl flox-isa <TAB>`."""
    return completion.kubectl_complete(sys.argv[1:], build_parser)


def build_parser(prog: str = "flox-isa") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Pick the CPU-ISA-specific Flox environment for every workload.",
    )
    parser.add_argument("--version", action="version", version=f"flox-isa {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_detect(commands)
    _add_explain(commands)
    for register in _component_registrars():
        register(commands)
    completion.register(commands, build_parser)
    return parser


def _component_registrars() -> list[Callable[[Any], None]]:
    """Commands of the webhook, operator and devcluster components.

    Each `commands` module is light: it imports its component only when run.
    """
    return [
        webhook_commands.register,
        webhook_commands.register_selftest,
        webhook_commands.register_report,
        operator_commands.register,
        devcluster_commands.register,
        demo_commands.register,
        environments_commands.register,
        doctor_commands.register,
    ]


def add_catalog_options(parser: argparse.ArgumentParser, *, workload: bool = True) -> None:
    parser.add_argument("--catalog", metavar="FILE", help="variant catalog (YAML or JSON)")
    if workload:
        parser.add_argument(
            "--workload",
            choices=WORKLOADS,
            default=DEFAULT_WORKLOAD,
            help=f"workload to optimise for (default: {DEFAULT_WORKLOAD})",
        )
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")


def _add_detect(commands: Any) -> None:
    parser = commands.add_parser(
        "detect",
        help="this machine's best variant",
        description="Read /proc/cpuinfo (or a saved copy) and name the best variant."
        f" Exit codes: 0 found, {EXIT_INPUT} bad input, {EXIT_NO_VARIANT} no variant fits.",
    )
    parser.add_argument("--cpuinfo", metavar="PATH", default="/proc/cpuinfo")
    add_catalog_options(parser)
    parser.set_defaults(handler=_detect)


def _detect(args: argparse.Namespace) -> int:
    catalog = load_catalog(args.catalog)
    try:
        features = features_from_cpuinfo(read_text(args.cpuinfo, "cpuinfo"))
    except CpuinfoError as exc:
        raise InputError(f"cpuinfo {str(args.cpuinfo)!r}: {exc}") from None
    workload: Workload = args.workload
    choice = choose(catalog, features, workload)
    if args.output == "json":
        print(
            json.dumps(
                {
                    "variant": choice.variant.name if choice.variant else None,
                    "arch": features.arch,
                    "workload": workload,
                    "compatible": [v.name for v in choice.compatible],
                    "reason": choice.reason,
                },
                indent=2,
            )
        )
    elif choice.variant:
        print(f"{choice.variant.name}\t({choice.reason})")
    else:
        print(choice.reason, file=sys.stderr)
    return 0 if choice.variant else EXIT_NO_VARIANT


def _add_explain(commands: Any) -> None:
    explain = commands.add_parser(
        "explain",
        help="explain decisions for nodes, a pod or a workload (from the cluster or files)",
        description="Run flox-isa's decisions on a cluster's nodes and workloads (read with"
        " kubectl's --kubeconfig, --context, -n), or on files.",
    )
    targets = explain.add_subparsers(title="targets", metavar="TARGET")
    nodes = targets.add_parser(
        "nodes",
        help="best variant per node",
        description="One row per node: name, arch, instance type, key flags, best variant"
        " per workload. FILE is what `kubectl get nodes -o yaml` (or -o json) writes,"
        " or a single Node; '-' reads it from standard input; without --nodes, the"
        " cluster's nodes are read.",
    )
    nodes.add_argument("--nodes", metavar="FILE", help="nodes file (default: the cluster's)")
    add_catalog_options(nodes)
    add_cluster_options(nodes, namespace=False)
    nodes.set_defaults(handler=_explain_nodes)
    explain.set_defaults(handler=lambda _args: _print_help(explain))
    webhook_commands.register_explain_pod(targets, _explain_gated)


def _explain_gated(
    catalog: Catalog, nodes: Sequence[Any], pods: Sequence[Any], pod: Mapping[str, Any]
) -> tuple[dict[str, Any], str] | None:
    """The placement controller's view of a gated pod (the operator's code, for explain)."""
    from flox_isa.operator.placement import explain_gated, explain_gated_text  # noqa: PLC0415

    answer = explain_gated(catalog, nodes, pods, pod)
    return None if answer is None else (answer, explain_gated_text(answer))


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_INPUT


def _explain_nodes(args: argparse.Namespace) -> int:
    catalog = load_catalog(args.catalog)
    try:
        nodes = [node_info(n) for n in nodes_in(webhook_commands.node_documents(args))]
    except NodeDocumentError as exc:
        source = f"nodes file {str(args.nodes)!r}" if args.nodes else "the cluster's nodes"
        raise InputError(f"{source}: {exc}") from None
    key_flags = sorted({flag for v in catalog.variants for flag in v.flags})
    rows = []
    for node in nodes:
        best = {w: choose(catalog, node.features, w).variant for w in WORKLOADS}
        rows.append(
            {
                "name": node.name,
                "arch": node.features.arch,
                "instanceType": node.instance_type,
                "keyFlags": [f for f in key_flags if f in node.features.flags],
                "best": {w: (v.name if v else None) for w, v in best.items()},
            }
        )
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows)
        offers = fleet_offers(catalog, feature_groups(nodes), args.workload)
        summary = ", ".join(
            f"{o.variant.name} {o.node_count} node{'' if o.node_count == 1 else 's'}"
            f" ({o.allocatable_cpu:g} CPU)"
            for o in offers
        )
        print(f"\nfleet offers for {args.workload}: {summary or 'no variant'}")
    return 0


def _print_table(rows: list[dict[str, Any]]) -> None:
    header = ["NAME", "ARCH", "INSTANCE-TYPE", *(w.upper() for w in WORKLOADS), "KEY-FLAGS"]
    table = [header] + [
        [
            r["name"],
            r["arch"] or "-",
            r["instanceType"] or "-",
            *((r["best"][w] or "none") for w in WORKLOADS),
            ",".join(r["keyFlags"]) or "-",
        ]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1])


if __name__ == "__main__":
    sys.exit(main())
