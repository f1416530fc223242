"""`flox-isa demo` and `flox-isa demo down`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path(".demo")


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "demo",
        help="run the operator and webhook on a local simulated fleet",
        description="Start a local control plane with a mixed x86 + Graviton fleet, run the"
        " operator and the webhook against it, apply int8 embedding workers (a TicketWorker)"
        " and fp32 summarization workers (an opted-in Deployment), wait until their pods run"
        " and report the variant chosen per node type with the expected throughput.",
    )
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state and logs")
    parser.add_argument("--fleet", default="mixed", help="fleet name or file (default: mixed)")
    parser.add_argument("--catalog", metavar="FILE", help="variant catalog (YAML or JSON)")
    parser.add_argument("--once", action="store_true", help="stop everything after the report")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for pods")
    parser.set_defaults(handler=_demo)
    actions = parser.add_subparsers(title="actions", metavar="ACTION")
    down = actions.add_parser(
        "down", help="stop a running demo", description="Stop the demo's processes and cluster."
    )
    down.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    down.set_defaults(handler=_down)


def _demo(args: argparse.Namespace) -> int:
    from flox_isa.demo.run import DemoError, Options, run  # noqa: PLC0415 - heavy imports
    from flox_isa.devcluster.cluster import DevclusterError  # noqa: PLC0415
    from flox_isa.files import load_catalog  # noqa: PLC0415

    catalog = load_catalog(args.catalog)
    try:
        run(Options(args.dir, args.fleet, args.once, args.timeout), catalog)
    except (DemoError, DevclusterError) as exc:
        print(f"flox-isa demo: error: {exc}")
        return 1
    return 0


def _down(args: argparse.Namespace) -> int:
    from flox_isa.demo.run import down  # noqa: PLC0415 - heavy imports

    down(args.dir)
    return 0
