"""`flox-isa webhook` and `flox-isa explain pod`.

Kept light: the web stack and the Kubernetes client are imported when a
command runs, so `flox-isa --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from flox_isa import args
from flox_isa.files import InputError, load_catalog, read_documents
from flox_isa.isa import names

if TYPE_CHECKING:
    from flox_isa.isa.catalog import Catalog
    from flox_isa.webhook.report import Report

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
    parser.add_argument(
        "--kubeconfig", metavar="FILE",
        help="default: $KUBECONFIG, then ~/.kube/config, then in-cluster (kubectl's order)",
    )  # fmt: skip
    parser.add_argument("--context", metavar="NAME", help="kubeconfig context (default: current)")
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
    result = run_selftest(args.kubeconfig, args.namespace, args.name, args.context)
    if args.output == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(f"{'ok' if result.ok else 'FAILED'}: {result.message}")
    return 0 if result.ok else EXIT_DENIED


# `explain KIND NAME`: kind, its words (kubectl's singular, short name, plural).
EXPLAIN_KINDS: Final = (
    ("Deployment", "deployment", ("deploy", "deployments")),
    ("StatefulSet", "statefulset", ("sts", "statefulsets")),
    ("DaemonSet", "daemonset", ("ds", "daemonsets")),
    ("ReplicaSet", "replicaset", ("rs", "replicasets")),
    ("ReplicationController", "replicationcontroller", ("rc", "replicationcontrollers")),
    ("Job", "job", ("jobs",)),
    ("CronJob", "cronjob", ("cj", "cronjobs")),
)


# For a live pod gated by flox-isa: (catalog, nodes, the cluster's pods, the pod) -> what
# the placement controller would do now, as data and as text (cli.py wires the operator's).
GatedExplainer = Callable[
    ["Catalog", Sequence[Any], Sequence[Any], Mapping[str, Any]],
    "tuple[dict[str, Any], str] | None",
]


def register_explain_pod(targets: Any, gated: GatedExplainer | None = None) -> None:
    """Add `flox-isa explain pod` and `explain deployment` (and the other workloads)."""
    parser = targets.add_parser(
        "pod",
        aliases=["po", "pods"],
        help="what the webhook would do to a pod",
        description="Run the webhook's decision offline. NAME: the pod, read from the cluster"
        " (-n); or --pod FILE: a Pod, or a workload with a pod template (Deployment,"
        " StatefulSet, Job, CronJob, ...), '-' for standard input. --nodes: what"
        " `kubectl get nodes -o yaml` writes, else the cluster's nodes. A pod flox-isa"
        " already patched is re-decided from its isa.flox.dev/base-environment. The pod is"
        " judged as if its namespace were opted in. Exit codes: 0 allowed,"
        f" {EXIT_DENIED} denied, 2 bad input or cluster error.",
    )
    parser.add_argument("name", metavar="NAME", nargs="?", help="the pod, read from the cluster")
    parser.add_argument("--pod", metavar="FILE", help="read the pod from a file ('-': stdin)")
    _add_explain_options(parser)
    parser.set_defaults(handler=run_explain_pod, kind="Pod", gated=gated)
    for kind, word, aliases in EXPLAIN_KINDS:
        workload = targets.add_parser(
            word,
            aliases=list(aliases),
            help=f"what the webhook would do to a {kind}'s pods",
            description=f"Read the {kind} NAME from the cluster (-n) and run the webhook's"
            " decision on its pod template; the nodes come from the same cluster unless"
            f" --nodes FILE. Exit codes: 0 allowed, {EXIT_DENIED} denied, 2 bad input or"
            " cluster error.",
        )
        workload.add_argument("name", metavar="NAME")
        _add_explain_options(workload)
        workload.set_defaults(handler=run_explain_pod, kind=kind, pod=None, gated=None)


def _add_explain_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nodes", metavar="FILE", help="nodes file ('-': stdin; default: the cluster's nodes)"
    )
    parser.add_argument("--catalog", metavar="FILE", help="variant catalog (YAML or JSON)")
    parser.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    args.add_cluster_options(parser)


def _print_data(data: Any, output: str) -> None:
    """`-o json` or `-o yaml`."""
    if output == "yaml":
        import yaml  # noqa: PLC0415 - only for this output

        print(yaml.safe_dump(data, sort_keys=False), end="")
    else:
        print(json.dumps(data, indent=2))


def node_documents(options: argparse.Namespace) -> list[Any]:
    """--nodes FILE (or '-', stdin), else every Node of the cluster."""
    if options.nodes:
        return read_documents(options.nodes, "nodes file")
    from flox_isa.kube import reads  # noqa: PLC0415 - heavy, command-only

    return reads.fetch(options.kubeconfig, options.context, reads.nodes)


def run_explain_pod(options: argparse.Namespace) -> int:
    from flox_isa.isa.nodes import NodeDocumentError  # noqa: PLC0415 - command-only
    from flox_isa.webhook import explain  # noqa: PLC0415 - pulls in pydantic models

    catalog = load_catalog(options.catalog)
    if options.pod and options.name:
        raise InputError("explain pod: give the pod's NAME or --pod FILE, not both")
    if not options.pod and not options.name:
        raise InputError("explain pod: give the pod's NAME (read from the cluster) or --pod FILE")
    if options.pod == "-" and options.nodes == "-":
        raise InputError("--pod - and --nodes -: only one of them can be standard input")
    previous = placement = None
    where = f"pod file {str(options.pod)!r}"
    try:
        if options.pod:
            pod_documents = read_documents(options.pod, "pod file")
            nodes = node_documents(options)
            decision = explain.explain_pod(pod_documents, nodes, catalog)
        else:
            document, nodes, workload = _live_workload(options)
            where = f"{options.kind} {document['metadata'].get('namespace')}/{options.name}"
            decision, previous = explain.explain_live(document, nodes, catalog, workload)
            if options.gated is not None:
                placement = _gated_placement(options, catalog, nodes, document)
    except explain.PodDocumentError as exc:
        raise InputError(f"{where}: {exc}") from None
    except NodeDocumentError as exc:
        source = f"nodes file {str(options.nodes)!r}" if options.nodes else "the cluster's nodes"
        raise InputError(f"{source}: {exc}") from None
    if options.output != "text":
        answer = decision.to_json()
        if previous is not None:
            answer["previous"] = previous.to_json()
        if placement is not None:
            answer["placement"] = placement[0]
        _print_data(answer, options.output)
    else:
        print(explain.render_text(decision), file=sys.stdout)
        if previous is not None:
            print(previous.text())
        if placement is not None:
            print(placement[1])
    return 0 if decision.allowed else EXIT_DENIED


def _gated_placement(
    options: argparse.Namespace, catalog: Catalog, nodes: list[Any], pod: Mapping[str, Any]
) -> tuple[dict[str, Any], str] | None:
    """What the placement controller would do with a live pod it gates (None: not gated).
    The room comes from every pod of the cluster; without `list pods` it is unknown."""
    from flox_isa.isa.placement import placement_gates  # noqa: PLC0415 - command-only

    if names.PLACEMENT_GATE not in placement_gates(pod):
        return None  # not ours to place: no need to list the cluster's pods
    from flox_isa.kube import reads  # noqa: PLC0415 - heavy, command-only

    async def every_pod(api: Any) -> list[dict[str, Any]] | None:
        return await reads.optional(reads.pods(api, None))

    pods = reads.fetch(options.kubeconfig, options.context, every_pod)
    if pods is None:
        why = "room unknown: listing pods in all namespaces is forbidden"
        return {"gate": names.PLACEMENT_GATE, "decision": None, "why": why}, f"gated: {why}"
    explainer: GatedExplainer = options.gated
    return explainer(catalog, nodes, pods, pod)


def _live_workload(options: argparse.Namespace) -> tuple[dict[str, Any], list[Any], str | None]:
    """The workload NAME of kind `options.kind`, the nodes (from --nodes or the cluster),
    and, for a TicketWorker's pods, its workload."""
    from flox_isa.kube import reads  # noqa: PLC0415 - heavy, command-only
    from flox_isa.webhook.explain import ticketworker_of  # noqa: PLC0415 - pydantic models

    namespace = reads.namespace_of(options.kubeconfig, options.context, options.namespace)

    async def read(api: Any) -> tuple[dict[str, Any], list[Any], str | None]:
        document = await reads.workload(api, options.kind, options.name, namespace)
        document.setdefault("kind", options.kind)
        nodes = await reads.nodes(api) if not options.nodes else []
        owner, workload = ticketworker_of(document), None
        if owner is not None:
            worker = await reads.optional(reads.ticketworker(api, namespace, owner))
            workload = ((worker or {}).get("spec") or {}).get("workload")
        return document, nodes, workload

    document, nodes, workload = reads.fetch(options.kubeconfig, options.context, read)
    if options.nodes:
        nodes = read_documents(options.nodes, "nodes file")
    return document, nodes, workload


def register_report(commands: Any) -> None:
    """Add `flox-isa report` to the parser."""
    parser = commands.add_parser(
        "report",
        help="what flox-isa did on a cluster: pods per instance type and variant, throughput",
        description="For the cluster's pods (-n NS, default the context's namespace, or -A):"
        " per instance type (else NFD CPU model) x workload x variant, the pods flox-isa"
        " placed (label isa.flox.dev/variant), their expected tickets/s from the catalog and"
        " the same pods on the baseline build of their own architecture; Pending pods and"
        " why; opted-in pods left unpatched and why; and, as hints, Flox pods not opted in"
        " that would gain. Needs list on pods and nodes (namespaces and ticketworkers"
        " optional). Exit codes: 0, 2 bad input or cluster error.",
    )
    parser.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace's pods"
    )
    parser.add_argument(
        "--baseline",
        metavar="VARIANTS",
        type=args.comma_list,
        default=frozenset(),
        help="baseline build per architecture, at most one each (default: avx2 on amd64,"
        " armv8.2 on arm64)",
    )
    parser.add_argument("--catalog", metavar="FILE", help="variant catalog (YAML or JSON)")
    parser.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    args.add_cluster_options(parser)
    parser.set_defaults(handler=run_report)


def run_report(options: argparse.Namespace) -> int:
    from flox_isa.isa.report import BaselineError, baselines  # noqa: PLC0415 - command-only
    from flox_isa.webhook import report  # noqa: PLC0415 - pulls in pydantic models

    if options.all_namespaces and options.namespace:
        raise InputError("report: give -n NAMESPACE or -A, not both")
    catalog = load_catalog(options.catalog)
    try:
        chosen = baselines(catalog, sorted(options.baseline))
    except BaselineError as exc:
        raise InputError(f"--baseline: {exc}") from None
    namespace = None
    if not options.all_namespaces:
        from flox_isa.kube import reads  # noqa: PLC0415 - heavy, command-only

        namespace = reads.namespace_of(options.kubeconfig, options.context, options.namespace)
    result = cluster_report(options.kubeconfig, options.context, namespace, catalog, chosen)
    if options.output != "text":
        _print_data({"namespace": namespace, **result.to_json()}, options.output)
    else:
        print(f"flox-isa report: {f'namespace {namespace}' if namespace else 'all namespaces'}")
        print("\n".join(report.render_text(result)))
    return 0


def cluster_report(
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    catalog: Catalog,
    chosen: Mapping[str, str],
) -> Report:
    """The `report.Report` for a cluster's pods in `namespace` (None: all namespaces)."""
    from flox_isa.kube import reads  # noqa: PLC0415 - heavy, command-only
    from flox_isa.webhook import report  # noqa: PLC0415 - pulls in pydantic models

    seen = reads.fetch(kubeconfig, context, lambda api: reads.snapshot(api, namespace))
    return report.build_report(
        seen.pods,
        seen.nodes,
        catalog,
        chosen,
        opted_in_namespaces=seen.opted_in_namespaces,
        ticketworkers=seen.ticketworkers,
        notes=seen.notes,
    )
