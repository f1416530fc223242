"""argparse value types shared by every command: one message per kind of bad value."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def seconds(*, above_zero: bool = False, maximum: float = 3600.0) -> Callable[[str], float]:
    """Seconds in [0, maximum] (or (0, maximum] with `above_zero`)."""
    low = "> 0" if above_zero else ">= 0"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not (value > 0 if above_zero else value >= 0) or value > maximum:
            raise argparse.ArgumentTypeError(
                f"expected seconds {low} and <= {maximum:g}, got {text!r}"
            )
        return value

    return parse


def at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0-65535, got {text!r}")
    return int(text)


def comma_list(text: str) -> frozenset[str]:
    found = frozenset(part.strip() for part in text.split(",") if part.strip())
    if not found:
        raise argparse.ArgumentTypeError("expected a comma list, e.g. avx2,avx512")
    return found


def add_cluster_options(parser: argparse.ArgumentParser, *, namespace: bool = True) -> None:
    """kubectl's --kubeconfig, --context and -n/--namespace, with kubectl's meaning.

    Added after each subcommand: kubectl refuses flags placed before a plugin's name.
    """
    group = parser.add_argument_group("cluster (as kubectl)")
    group.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster)",
    )
    group.add_argument("--context", metavar="NAME", help="kubeconfig context (default: current)")
    if namespace:
        group.add_argument(
            "-n",
            "--namespace",
            metavar="NS",
            help="namespace (default: the context's, else default)",
        )
