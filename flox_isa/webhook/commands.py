"""`flox-isa webhook` and `flox-isa explain pod`.

Kept light: the web stack and the Kubernetes client are imported when a
command runs, so `flox-isa --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from flox_isa import args
from flox_isa.files import InputError, load_catalog, read_documents
from flox_isa.isa import names

EXIT_DENIED = 1
DEFAULT_PORT = 8443


def register(commands: Any) -> None:
    """Add `flox-isa webhook` to the parser."""
    parser = commands.add_parser(
        "webhook",
        help="run the mutating admission webhook (HTTPS)",
        description="Serve POST /mutate (pods labelled isa.flox.dev/inject=true), POST"
        " /mutate/namespace-opt-in (pods in namespaces so labelled: the API server checks the"
        " namespace's label), /healthz, /readyz and /metrics over HTTPS. Watches Nodes"
        " (nothing else); certificate files are reloaded when they change on disk.",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    parser.add_argument("--tls-cert", metavar="FILE", required=True, type=Path)
    parser.add_argument("--tls-key", metavar="FILE", required=True, type=Path)
    parser.add_argument("--kubeconfig", metavar="FILE", help="default: in-cluster config")
    parser.add_argument("--catalog", metavar="FILE", help="variant catalog (YAML or JSON)")
    parser.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE", ""),
        help="the webhook's own namespace, whose pods are never touched (default: $POD_NAMESPACE)",
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"))
    parser.add_argument(
        "--late-binding",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="gate auto-mode pods for the placement controller while its Lease"
        f" {names.PLACEMENT_LEASE} is renewed; otherwise (or with --no-late-binding) pin them"
        " at admission (default: on)",
    )
    parser.add_argument(
        "--placement-lease-namespace",
        metavar="NS",
        help="namespace of the placement controller's Lease (default: --namespace)",
    )
    parser.add_argument(
        "--placement-lease-duration",
        type=args.seconds(above_zero=True),
        default=15.0,
        metavar="SECONDS",
        help="stop gating when the Lease has not changed for this long (default 15)",
    )
    parser.add_argument(
        "--tls-min-version", default="1.2", choices=("1.2", "1.3"),
        help="oldest TLS version accepted (default 1.2)",
    )  # fmt: skip
    parser.add_argument(
        "--metrics-port", type=args.port, default=0, metavar="N",
        help="also serve GET /metrics over plain HTTP on this port (default 0: off; /metrics"
        " is on the HTTPS port either way)",
    )  # fmt: skip
    parser.add_argument(
        "--shutdown-delay", type=args.seconds(), default=0.0, metavar="SECONDS",
        help="on SIGTERM, fail /readyz and keep serving this long (answering with"
        " `Connection: close`) before closing the listener (default 0)",
    )  # fmt: skip
    parser.add_argument(
        "--drain-timeout", type=args.seconds(), default=2.0, metavar="SECONDS",
        help="then wait at most this long for in-flight requests (default 2: the API"
        " server's webhook timeout)",
    )  # fmt: skip
    parser.set_defaults(handler=run_webhook)


def run_webhook(args: argparse.Namespace) -> int:
    # Lazy imports: the web stack and the Kubernetes client load only for this command.
    from flox_isa import logs  # noqa: PLC0415 - command-only
    from flox_isa.kube.config import api_client  # noqa: PLC0415 - heavy, command-only
    from flox_isa.kube.inventory import ClusterInventory  # noqa: PLC0415 - heavy, command-only
    from flox_isa.webhook import app, metrics, serve  # noqa: PLC0415 - heavy, command-only

    for path, what in ((args.tls_cert, "--tls-cert"), (args.tls_key, "--tls-key")):
        if not path.is_file():
            raise InputError(f"{what} {str(path)!r}: no such file")
    logs.setup_logging(args.log_level, quiet=serve.QUIET_LOGGERS)
    catalog = load_catalog(args.catalog)
    webhook_metrics = metrics.Metrics()
    inventory = ClusterInventory(
        api_client(args.kubeconfig),
        on_restart=lambda resource, reason: webhook_metrics.watch_restarts.labels(
            resource, reason
        ).inc(),
    )
    watcher = _placement_watcher(args)
    state = app.WebhookState(catalog, inventory.nodes, args.namespace, webhook_metrics)
    if watcher is not None:
        state.placement = watcher
    config, tls = serve.server_config(
        app.create_app(state), args.host, args.port, args.tls_cert, args.tls_key,
        tls_min_version=args.tls_min_version, drain_seconds=args.drain_timeout,
    )  # fmt: skip
    reloader = serve.CertReloader(tls, args.tls_cert, args.tls_key, webhook_metrics.tls_reloads.inc)
    if args.metrics_port:
        metrics.serve_plain(webhook_metrics, inventory.nodes.fleet, args.host, args.metrics_port)
    inventory.start()
    if watcher is not None:
        watcher.start()

    def drain() -> None:
        state.draining = True

    try:
        serve.serve(config, reloader, shutdown_delay=args.shutdown_delay, on_drain=drain)
    finally:
        inventory.stop()
        if watcher is not None:
            watcher.stop()
    return 0


def _placement_watcher(args: argparse.Namespace) -> Any:
    """The placement Lease poller (a `kube.heartbeat.LeaseWatcher`), None if late binding is off."""
    from flox_isa.kube.config import api_client  # noqa: PLC0415 - heavy, command-only
    from flox_isa.kube.heartbeat import LeaseWatcher, lease_reader  # noqa: PLC0415

    if not args.late_binding:
        return None
    namespace = args.placement_lease_namespace or args.namespace
    if not namespace:
        raise InputError(
            "--late-binding needs the placement Lease's namespace: give --namespace or"
            " --placement-lease-namespace (or --no-late-binding)"
        )
    read = lease_reader(api_client(args.kubeconfig), namespace, names.PLACEMENT_LEASE)
    return LeaseWatcher(read, args.placement_lease_duration)


def register_selftest(commands: Any) -> None:
    """Add `flox-isa selftest` to the parser."""
    parser = commands.add_parser(
        "selftest",
        help="check that the installed webhook patches an opted-in pod (dry run)",
        description="Create an opted-in pod with dryRun=All (nothing is stored or run) and"
        " check that flox-isa's webhook patched it (variant label, environment, nodeSelector)."
        " Needs `create pods` in --namespace. Exit codes: 0 patched, 1 not, 2 bad input.",
    )
    parser.add_argument("--kubeconfig", metavar="FILE", help="default: in-cluster, else ~/.kube")
    parser.add_argument(
        "--namespace", "-n", default="default",
        help="where the dry-run pod goes: not excluded from mutation (default: default)",
    )  # fmt: skip
    parser.add_argument("--name", default="flox-isa-selftest", help="the dry-run pod's name")
    parser.add_argument("--output", choices=("text", "json"), default="text")
    parser.set_defaults(handler=run_selftest_command)


def run_selftest_command(args: argparse.Namespace) -> int:
    from flox_isa.webhook.selftest import run_selftest  # noqa: PLC0415 - heavy, command-only

    if args.kubeconfig and not Path(args.kubeconfig).is_file():
        raise InputError(f"--kubeconfig {args.kubeconfig!r}: no such file")
    result = run_selftest(args.kubeconfig, args.namespace, args.name)
    if args.output == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(f"{'ok' if result.ok else 'FAILED'}: {result.message}")
    return 0 if result.ok else EXIT_DENIED


def register_explain_pod(targets: Any) -> None:
    """Add `flox-isa explain pod` to the parser."""
    parser = targets.add_parser(
        "pod",
        help="what the webhook would do to a pod",
        description="Run the webhook's decision offline. --pod: a Pod, or a workload with a"
        " pod template (Deployment, StatefulSet, Job, CronJob, ...). --nodes: what"
        " `kubectl get nodes -o yaml` writes. The pod is judged as if its namespace were"
        f" opted in. Exit codes: 0 allowed, {EXIT_DENIED} denied, 2 bad input.",
    )
    parser.add_argument("--pod", metavar="FILE", required=True)
    parser.add_argument("--nodes", metavar="FILE", required=True)
    parser.add_argument("--catalog", metavar="FILE", help="variant catalog (YAML or JSON)")
    parser.add_argument("--output", choices=("text", "json"), default="text")
    parser.set_defaults(handler=run_explain_pod)


def run_explain_pod(args: argparse.Namespace) -> int:
    from flox_isa.isa.nodes import NodeDocumentError  # noqa: PLC0415 - command-only
    from flox_isa.webhook import explain  # noqa: PLC0415 - pulls in pydantic models

    catalog = load_catalog(args.catalog)
    pod_documents = read_documents(args.pod, "pod file")
    node_documents = read_documents(args.nodes, "nodes file")
    try:
        decision = explain.explain_pod(pod_documents, node_documents, catalog)
    except explain.PodDocumentError as exc:
        raise InputError(f"pod file {str(args.pod)!r}: {exc}") from None
    except NodeDocumentError as exc:
        raise InputError(f"nodes file {str(args.nodes)!r}: {exc}") from None
    if args.output == "json":
        print(json.dumps(decision.to_json(), indent=2))
    else:
        print(explain.render_text(decision), file=sys.stdout)
    return 0 if decision.allowed else EXIT_DENIED
