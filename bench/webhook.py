"""Benchmark of the admission webhook (issues 4, 12). Not a test: prints figures side by side.

    python bench/webhook.py [--seconds 3] [--rounds 3] [--connections 8] [--nodes 5000]
                            [--streams replicas,distinct,fresh,cold] [--baseline DIR]
                            [--rate R|half|own-half] [--floor]
                            [--in-process [--calls 8192] [--instructions]]
                            [--devcluster | --kubeconfig FILE] [--pods 300]

1. Decision time at 10 vs 5,000 nodes, in process (steady state, and cold: no memo).
   Target ratio <= 1.2.
2. POST /mutate over TLS, one server process each, a ~7 KB pod, 5,000 nodes:
   a bare ASGI app on the same uvicorn returning a fixed patch (the stack's ceiling),
   ours (flox-isa's app, logging as it does by default: a JSON line per decision), quiet
   (ours with `--log-level WARNING`: no line per admission), kopf's webhook server with
   the same decision in an `@kopf.on.mutate` handler (fresh and cold only), and with
   `--baseline DIR` before: ours from another checkout (e.g. `git archive main | tar -x
   -C DIR`), loaded in the same rounds. Four streams: replicas (one template), distinct
   (a label per pod), fresh (an environment per pod: decided once, then renamed), cold
   (a CPU request per pod: decided anew each time). Throughput and p50/p99 from one
   asyncio client process, then each server's RSS (`--nodes 15000` for a larger
   inventory). Targets: ours >= 0.8x / 0.6x / 0.4x bare (replicas, distinct, fresh),
   ahead of kopf.
   With --rate R: open loop instead, R requests/s offered, latency counted from when each
   request was due; --rate half: closed loop first, then open loop at half of bare's
   req/s on each stream. Target: p99 <= 2x bare's at the same rate. --rate own-half:
   each server offered half of its own maximum (no target: each tail at the same load).
   With --floor: floor too, the bare app decoding each review with flox-isa's decoder and
   answering ours' patch: what any webhook that reads the review costs on this stack.
   With --in-process: instead of 2, each app called in process (no sockets, no TLS, no
   client), --calls per server and stream and round: microseconds per call, side by side.
   With --in-process --instructions: instructions per call instead, counted by valgrind's
   callgrind (within 1% run after run on a noisy machine; --floor adds the floor).
3. With --devcluster (starts one) or --kubeconfig FILE: pod-create latency through
   the real kube-apiserver, interleaved: no webhook, ours, and bare webhooks answering
   ours' patch for the same pod, so the API server applies the same patch on every side
   (the bare ASGI app on uvicorn, and with `go` on PATH a Go net/http one,
   bench/floorhook): what any patching webhook costs here.

The parts live in bench/webhookbench/ (streams, servers, client, throughput, report,
inprocess, instructions, decisions, apiserver); this file is the entry point, and
`--serve KIND` runs one server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from webhookbench.apiserver import apiserver_benchmark  # noqa: E402
from webhookbench.decisions import decision_benchmarks  # noqa: E402
from webhookbench.inprocess import in_process_benchmarks  # noqa: E402
from webhookbench.instructions import instruction_benchmarks  # noqa: E402
from webhookbench.servers import SERVER_KINDS, serve  # noqa: E402
from webhookbench.streams import STREAMS  # noqa: E402
from webhookbench.throughput import RATE_CHOICES, http_benchmarks  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per server and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument(
        "--streams",
        type=_streams,
        default=list(STREAMS),
        help=f"comma-separated, of {','.join(STREAMS)} (default: all)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of another revision: its webhook is loaded too, as `before`",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="load `floor` too: the bare app decoding each review with flox-isa's decoder and"
        " answering ours' patch (what any webhook that reads the review costs here)",
    )
    parser.add_argument(
        "--rate",
        type=_rate,
        help="open loop: requests/s offered (instead of saturation), or 'half' (after"
        " saturation, half of bare's req/s on each stream), or 'own-half' (half of each"
        " server's own)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="call each ASGI app in process (no sockets) instead of loading it over TLS",
    )
    parser.add_argument(
        "--calls", type=int, default=8192, help="with --in-process: per server, stream, round"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="with --in-process: count instructions per call under valgrind's callgrind"
        " (repeatable on a noisy machine) instead of timing calls",
    )
    parser.add_argument(
        "--kubeconfig", type=Path, default=os.environ.get("FLOX_ISA_BENCH_KUBECONFIG")
    )
    parser.add_argument(
        "--devcluster", action="store_true", help="start a local devcluster for part 3"
    )
    parser.add_argument("--pods", type=int, default=300, help="pods per side through the apiserver")
    parser.add_argument("--serve", choices=SERVER_KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cert", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--key", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--patch-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.cert, args.key, args.nodes, args.patch_file)
        return 0
    if args.baseline is not None and not (args.baseline / "bench" / "webhook.py").is_file():
        parser.error(f"--baseline {args.baseline}: no bench/webhook.py there (a checkout?)")
    if args.instructions and not args.in_process:
        parser.error("--instructions counts in-process calls: add --in-process")
    print(f"flox-isa webhook benchmark: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    decision_benchmarks()
    if args.instructions:
        instruction_benchmarks(
            args.nodes, args.calls, baseline=args.baseline, floor=args.floor, streams=args.streams
        )
    elif args.in_process:
        in_process_benchmarks(
            args.nodes, args.rounds, args.calls, baseline=args.baseline, streams=args.streams
        )
    else:
        http_benchmarks(
            args.seconds,
            args.connections,
            args.nodes,
            args.rounds,
            baseline=args.baseline,
            streams=args.streams,
            rate=args.rate,
            floor=args.floor,
        )
    if args.kubeconfig:
        apiserver_benchmark(args.kubeconfig, args.pods)
    elif args.devcluster:
        with own_devcluster() as kubeconfig:
            apiserver_benchmark(kubeconfig, args.pods)
    else:
        print("pod create through kube-apiserver: skipped (--devcluster, or --kubeconfig FILE)")
    return 0


def _streams(text: str) -> list[str]:
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in STREAMS]
    if unknown or not chosen:
        given = ", ".join(unknown) or "(none given)"
        raise argparse.ArgumentTypeError(f"unknown stream(s) {given}; allowed: {','.join(STREAMS)}")
    return chosen


def _rate(text: str) -> float | str:
    if text in RATE_CHOICES:
        return text
    try:
        rate = float(text)
    except ValueError:
        rate = 0.0
    if not rate > 0:
        raise argparse.ArgumentTypeError(
            f"--rate {text!r}: requests per second above 0, or one of {', '.join(RATE_CHOICES)}"
        )
    return rate


@contextlib.contextmanager
def own_devcluster() -> Iterator[Path]:
    """A `flox-isa devcluster` in a temporary directory, stopped afterwards."""
    from flox_isa.devcluster.cluster import temporary  # noqa: PLC0415 - only with --devcluster

    with temporary() as kubeconfig:
        yield kubeconfig


if __name__ == "__main__":
    sys.exit(main())
