"""`flox-isa doctor`: one screen answering the guide's troubleshooting list."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from flox_isa.files import InputError, load_catalog
from flox_isa.isa.catalog import DEFAULT_WORKLOAD, WORKLOADS
from flox_isa.isa.doctor import CgroupError, Finding, diagnose, diagnose_pod, summary_status

EXIT_INPUT = 2
EXIT_FINDINGS = 1
MARKS = {"ok": "ok  ", "info": "info", "warn": "WARN", "fail": "FAIL"}


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "doctor",
        help="why a pod is slow: variant, CPUs, threads, torch (run inside its container)",
        description="Inside a container: this CPU's best variant vs the environment's build,"
        " the cgroup's CPU quota, cpuset and throttling (v1 and v2), the thread variables and"
        " the process's threads, and the environment's PyTorch probed with its own python3"
        " (a build too new for the CPU dies with SIGILL: that is reported). With --pod"
        " NS/NAME, from outside: the static part only (node, annotations, requests/limits,"
        " thread variables), through the kubeconfig. Exit codes: 0 nothing to fix,"
        f" {EXIT_FINDINGS} warnings or failures found, {EXIT_INPUT} bad input.",
    )
    parser.add_argument("--pod", metavar="NS/NAME", help="check a pod from outside (static)")
    parser.add_argument("--kubeconfig", metavar="FILE", help="with --pod (default: in-cluster,"
                        " then $KUBECONFIG or ~/.kube/config)")  # fmt: skip
    parser.add_argument("--environment", metavar="OWNER/NAME",
                        help="default: from FLOX_PROMPT_ENVIRONMENTS")  # fmt: skip
    parser.add_argument("--python", metavar="PATH",
                        help="the environment's python3 (default: $FLOX_ENV/bin/python3, else"
                        " python3 on PATH)")  # fmt: skip
    parser.add_argument("--root", metavar="DIR", default="/",
                        help="read /proc and /sys/fs/cgroup under DIR (a saved copy)")  # fmt: skip
    parser.add_argument("--cpuinfo", metavar="PATH", help="default: ROOT/proc/cpuinfo")
    parser.add_argument("--pid", default="1", help="the process to check (default: 1)")
    parser.add_argument("--catalog", metavar="FILE", help="variant catalog (YAML or JSON)")
    parser.add_argument("--workload", choices=WORKLOADS, default=None,
                        help=f"default: {DEFAULT_WORKLOAD} (--pod: its annotation)")  # fmt: skip
    parser.add_argument("--output", choices=("text", "json"), default="text")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    catalog = load_catalog(args.catalog)
    findings = _pod_findings(args, catalog) if args.pod else _local_findings(args, catalog)
    status = summary_status(findings)
    if args.output == "json":
        print(json.dumps({"status": status, "findings": [f.to_json() for f in findings]},
                         indent=2))  # fmt: skip
    else:
        print(render_text(findings))
    return EXIT_FINDINGS if status in ("warn", "fail") else 0


def _local_findings(args: argparse.Namespace, catalog: Any) -> list[Finding]:
    from flox_isa.doctor.gather import Sources, gather  # noqa: PLC0415 - only when run
    from flox_isa.isa.cpuinfo import CpuinfoError  # noqa: PLC0415

    root = Path(args.root)
    if not root.is_dir():
        raise InputError(f"--root {args.root!r}: not a directory")
    if not str(args.pid).isdigit() and args.pid != "self":
        raise InputError(f"--pid {args.pid!r}: expected a process id or 'self'")
    if not (root / f"proc/{args.pid}/status").exists():
        raise InputError(f"--pid {args.pid}: no process {args.pid} under {args.root!r}/proc")
    cpuinfo = Path(args.cpuinfo) if args.cpuinfo else root / "proc/cpuinfo"
    sources = Sources(root, cpuinfo, str(args.pid), live=root.resolve() == Path("/"))
    try:
        facts = gather(sources, catalog, args.workload or DEFAULT_WORKLOAD, os.environ,
                       environment=args.environment, python=args.python)  # fmt: skip
    except FileNotFoundError as exc:
        raise InputError(str(exc)) from None
    except CpuinfoError as exc:
        raise InputError(f"cpuinfo {str(cpuinfo)!r}: {exc}") from None
    except CgroupError as exc:
        raise InputError(f"cgroup of process {args.pid} under {args.root!r}: {exc}") from None
    return diagnose(facts, catalog)


def _pod_findings(args: argparse.Namespace, catalog: Any) -> list[Finding]:
    from flox_isa.kube.pods import NotFoundError, read_pod_and_node  # noqa: PLC0415

    namespace, _, name = str(args.pod).partition("/")
    if not namespace or not name or "/" in name:
        raise InputError(f"--pod {args.pod!r}: expected NAMESPACE/NAME")
    try:
        pod, node = read_pod_and_node(args.kubeconfig, namespace, name)
    except NotFoundError as exc:
        raise InputError(str(exc)) from None
    return diagnose_pod(pod, node, catalog)


def render_text(findings: list[Finding]) -> str:
    lines = []
    for finding in findings:
        lines.append(f"{MARKS[finding.status]}  {finding.check:13} {finding.message}")
        if finding.fix and finding.status in ("warn", "fail"):
            lines.append(f"{'':19} fix: {finding.fix}")
    return "\n".join(lines)
