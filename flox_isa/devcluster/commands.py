"""`flox-isa devcluster build|up|down|status`: a local control plane for tests and the demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from flox_isa.devcluster.build import BuildError, main_build
from flox_isa.devcluster.cluster import (
    DEFAULT_DIR,
    AlreadyRunningError,
    DevclusterError,
    FleetInputError,
    down,
    status,
    up,
)
from flox_isa.devcluster.versions import VersionsError

EXIT_FAILED = 1
EXIT_INPUT = 2


def register(commands: Any) -> None:
    """Add `devcluster` and its subcommands to the `flox-isa` parser."""
    devcluster = commands.add_parser(
        "devcluster",
        help="a local Kubernetes control plane with a simulated fleet",
        description="Run etcd, kube-apiserver, kube-controller-manager, kube-scheduler and"
        " kwok as local processes (built from pinned Go modules), with simulated nodes"
        " carrying NFD CPU labels.",
    )
    devcluster.set_defaults(handler=lambda _args: _help(devcluster))
    actions = devcluster.add_subparsers(title="actions", metavar="ACTION")

    build = actions.add_parser(
        "build",
        help="build (or reuse) the pinned binaries",
        description="Build the binaries pinned in flox_isa/devcluster/k8s/versions.env into"
        " ~/.cache/flox-isa/bin/<versions>/ (FLOX_ISA_CACHE overrides); only missing ones"
        " are built. Needs `go` and `npm`.",
    )
    build.set_defaults(handler=lambda _args: main_build())

    start = actions.add_parser(
        "up",
        help="start the cluster and its fleet",
        description="Start the control plane on free loopback ports, create the simulated"
        " fleet, wait until every node is Ready, print KUBECONFIG=<path> last, and return"
        " with the cluster running in the background.",
    )
    _dir_option(start)
    start.add_argument(
        "--fleet", metavar="NAME|FILE", help="fleet name or fleet file (default: the default fleet)"
    )
    start.set_defaults(handler=_up)

    stop = actions.add_parser(
        "down",
        help="stop the cluster and remove its state",
        description="Stop the processes `up` recorded in DIR (by pid, never by name) and"
        " remove DIR's state and logs.",
    )
    _dir_option(stop)
    stop.set_defaults(handler=_down)

    report = actions.add_parser(
        "status",
        help="report each component",
        description="One line per component: pid, running, healthy. Exit 0 if all healthy.",
    )
    _dir_option(report)
    report.set_defaults(handler=_status)


def _dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help=f"state directory: pids, kubeconfig, certificates, logs (default: {DEFAULT_DIR}/)",
    )


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _error(message: str) -> int:
    print(f"flox-isa devcluster: error: {message}", file=sys.stderr)
    return EXIT_FAILED


def _up(args: argparse.Namespace) -> int:
    try:
        state = up(args.dir, args.fleet)
    except AlreadyRunningError as exc:
        print(f"{exc}; `flox-isa devcluster down --dir {args.dir}` stops it")
        print(f"KUBECONFIG={exc.state.kubeconfig}")
        return 0
    except FleetInputError as exc:
        _error(str(exc))
        return EXIT_INPUT
    except (DevclusterError, BuildError, VersionsError) as exc:
        return _error(str(exc))
    print(f"KUBECONFIG={state.kubeconfig}")
    return 0


def _down(args: argparse.Namespace) -> int:
    try:
        stopped = down(args.dir)
    except DevclusterError as exc:
        return _error(str(exc))
    print("devcluster stopped" if stopped else f"no devcluster in {args.dir}")
    return 0


def _status(args: argparse.Namespace) -> int:
    try:
        state, report = status(args.dir)
    except DevclusterError as exc:
        return _error(str(exc))
    if state is None:
        print(f"no devcluster in {args.dir}")
        return EXIT_FAILED
    print(f"{state.apiserver_url}  kubernetes {state.kubernetes_version}")
    print(f"KUBECONFIG={state.kubeconfig}")
    for item in report:
        health = "healthy" if item.healthy else ("running, unhealthy" if item.running else "dead")
        print(f"  {item.name:<24} pid {item.pid:<8} {health:<18} log {item.log}")
    return 0 if report and all(item.healthy for item in report) else EXIT_FAILED
