"""`flox-isa doctor`: the guide's "Performance Lower Than Expected" list, as findings. Pure.

Text in (cgroup files, /proc/<pid>/cgroup, the probe's JSON), facts and findings out;
`flox_isa.doctor` reads the files, runs the probe and prints. Each finding has its fix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal

from flox_isa.isa import names
from flox_isa.isa.catalog import Catalog, Workload
from flox_isa.isa.features import Features, features_from_labels
from flox_isa.isa.inputs import InvalidInputError, parse_workload
from flox_isa.isa.selection import Choice, choose, fits, rank_key
from flox_isa.isa.threads import (
    THREAD_VARIABLES,
    ContainerCpu,
    Setting,
    container_cpu,
    parse_override,
)
from flox_isa.isa.threads import plan as plan_threads

Status = Literal["ok", "info", "warn", "fail"]
ProbeStatus = Literal["ok", "sigill", "no-torch", "no-python", "failed"]
# Variables that cap the kernels PyTorch and oneDNN pick (lower than the CPU can do).
KERNEL_CAPS: Final = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
THROTTLED_SHARE: Final = 0.01  # of periods: more than this is a finding
THREADS_PER_CPU: Final = 4  # a process with more threads than this per usable CPU is a finding
SIGILL: Final = 4


class CgroupError(ValueError):
    """A cgroup file that does not read as the kernel writes it."""


@dataclass(frozen=True, slots=True)
class CgroupCpu:
    """The CPU limits of a cgroup: quota (CPUs, None: unlimited), cpuset, throttling."""

    version: int
    quota: Decimal | None
    period_us: int | None
    cpuset: int | None  # CPUs in the cpuset (None: not readable)
    periods: int | None = None
    throttled: int | None = None
    throttled_us: int | None = None


def cpu_list_size(text: str) -> int:
    """The CPUs in a kernel cpu list (`0-3,8,10-11` is 7)."""
    count = 0
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise CgroupError(f"{text.strip()!r} is not a cpu list (e.g. 0-3,8)") from None
        if last < first:
            raise CgroupError(f"{text.strip()!r} is not a cpu list (e.g. 0-3,8)")
        count += last - first + 1
    return count


def _stat(text: str | None) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.strip().partition(" ")
        if key and value.strip().isdigit():
            values[key] = int(value)
    return values


def cgroup_v2(cpu_max: str | None, cpu_stat: str | None, cpuset: str | None) -> CgroupCpu:
    """From `cpu.max` ("max 100000" or "150000 100000"), `cpu.stat`, `cpuset.cpus.effective`."""
    quota: Decimal | None = None
    period: int | None = None
    if cpu_max is not None:
        fields = cpu_max.split()
        if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) == 0:
            raise CgroupError(f"cpu.max: {cpu_max.strip()!r} is not '<quota|max> <period>'")
        period = int(fields[1])
        if fields[0] != "max":
            if not fields[0].isdigit():
                raise CgroupError(f"cpu.max: {cpu_max.strip()!r} is not '<quota|max> <period>'")
            quota = Decimal(int(fields[0])) / period
    return _cgroup(2, quota, period, cpuset, cpu_stat, "throttled_usec", 1)


def cgroup_v1(
    quota_us: str | None, period_us: str | None, cpu_stat: str | None, cpuset: str | None
) -> CgroupCpu:
    """From `cpu.cfs_quota_us` (-1: unlimited), `cpu.cfs_period_us`, `cpu.stat`
    (throttled_time in ns) and `cpuset.effective_cpus` (or `cpuset.cpus`)."""
    quota: Decimal | None = None
    period: int | None = None
    try:
        period = int(period_us) if period_us is not None else None
        raw_quota = int(quota_us) if quota_us is not None else -1
    except ValueError:
        raise CgroupError(
            f"cpu.cfs_quota_us/cpu.cfs_period_us: {quota_us!r}/{period_us!r} are not integers"
        ) from None
    if raw_quota > 0 and period:
        quota = Decimal(raw_quota) / period
    return _cgroup(1, quota, period, cpuset, cpu_stat, "throttled_time", 1000)


def _cgroup(  # noqa: PLR0917 - the two readers' shared tail
    version: int,
    quota: Decimal | None,
    period: int | None,
    cpuset: str | None,
    cpu_stat: str | None,
    throttled_key: str,
    per_us: int,
) -> CgroupCpu:
    stat = _stat(cpu_stat)
    throttled = stat.get(throttled_key)
    return CgroupCpu(
        version,
        quota,
        period,
        cpu_list_size(cpuset) if cpuset and cpuset.strip() else None,
        stat.get("nr_periods"),
        stat.get("nr_throttled"),
        throttled // per_us if throttled is not None else None,
    )


def cgroup_paths(proc_cgroup: str) -> dict[str, str]:
    """`/proc/<pid>/cgroup` as {controller: path}; the v2 hierarchy is under ""."""
    paths: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            paths[controller] = parts[2]
    return paths


# --- the environment's PyTorch, probed in a subprocess --------------------------------------

PROBE_SCRIPT: Final = (
    "import json, os\n"
    f"out = {{'env': {{k: os.environ.get(k) for k in {KERNEL_CAPS!r}}}}}\n"
    """\
try:
    import torch
except ImportError as exc:
    out["error"] = "import torch: " + str(exc)
    print(json.dumps(out)); raise SystemExit(0)
out.update(version=torch.__version__, threads=torch.get_num_threads(),
           interop=torch.get_num_interop_threads(),
           capability=torch.backends.cpu.get_cpu_capability(),
           mkldnn=bool(torch.backends.mkldnn.is_available()))
print(json.dumps(out))
"""
)


@dataclass(frozen=True, slots=True)
class Probe:
    status: ProbeStatus
    python: str | None = None
    detail: str = ""
    version: str | None = None
    threads: int | None = None
    interop: int | None = None
    capability: str | None = None
    mkldnn: bool | None = None
    caps: Mapping[str, str | None] = field(default_factory=dict)


def probe_result(python: str, returncode: int, stdout: str, stderr: str) -> Probe:
    """The probe's outcome from its exit status and output."""
    if returncode in (-SIGILL, 128 + SIGILL):
        return Probe("sigill", python, "python3 -c 'import torch' died with SIGILL")
    last = (stdout.strip().splitlines() or [""])[-1]
    try:
        found: Any = json.loads(last)
    except ValueError:
        found = None
    if returncode != 0 or not isinstance(found, dict):
        tail = (stderr.strip().splitlines() or [stdout.strip() or "no output"])[-1]
        return Probe("failed", python, f"exit status {returncode}: {tail[:200]}")
    given = found.get("env")
    caps: dict[str, str | None] = (
        {str(k): (str(v) if v is not None else None) for k, v in given.items()}
        if isinstance(given, dict)
        else {}
    )
    if "error" in found:
        return Probe("no-torch", python, str(found["error"]), caps=caps)

    def number(key: str) -> int | None:
        value = found.get(key)
        return value if isinstance(value, int) else None

    return Probe(
        "ok",
        python,
        version=str(found.get("version")),
        threads=number("threads"),
        interop=number("interop"),
        capability=str(found.get("capability")),
        mkldnn=found.get("mkldnn") if isinstance(found.get("mkldnn"), bool) else None,
        caps=caps,
    )


# --- facts and findings ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Facts:
    workload: Workload
    features: Features
    choice: Choice  # this CPU's best variant
    environment: str | None  # owner/name the pod runs
    environment_source: str
    cgroup: CgroupCpu | None
    affinity: int | None
    cpu_count: int | None
    thread_vars: Mapping[str, str | None]
    process_threads: int | None
    in_activation: bool  # FLOX_ENV set: [vars] are applied
    probe: Probe


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    status: Status
    message: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return {"check": self.check, "status": self.status, "message": self.message,
                "fix": self.fix}  # fmt: skip


def usable_cpus(facts: Facts) -> int | None:
    """The CPUs this container can keep busy: floor(quota), the cpuset, the affinity."""
    limits = [facts.affinity, facts.cpu_count]
    if facts.cgroup is not None:
        limits.append(facts.cgroup.cpuset)
        if facts.cgroup.quota is not None:
            limits.append(max(1, math.floor(facts.cgroup.quota)))
    known = [n for n in limits if n is not None]
    return min(known) if known else None


def diagnose(facts: Facts, catalog: Catalog) -> list[Finding]:
    return [
        _variant(facts, catalog),
        _cpus(facts),
        *_throttling(facts),
        _thread_vars(facts),
        *_process(facts),
        *_probe(facts),
    ]


def _process(facts: Facts) -> list[Finding]:
    usable, threads = usable_cpus(facts), facts.process_threads
    if threads is None:
        return []
    message = f"the process runs {threads} threads on {usable} usable CPUs"
    if usable is not None and threads > THREADS_PER_CPU * usable:
        return [
            Finding(
                "process",
                "warn",
                message,
                f"size its thread pools by the {usable} CPUs (OMP_NUM_THREADS, interop threads)",
            )
        ]
    return [Finding("process", "ok", message)]


def _variant(facts: Facts, catalog: Catalog) -> Finding:
    return variant_finding(
        facts.environment, facts.environment_source, facts.features, facts.choice, catalog
    )


def variant_finding(
    env: str | None, env_source: str, features: Features, choice: Choice, catalog: Catalog
) -> Finding:
    """The environment's build against the best variant `features` run."""
    best, workload = choice.variant, choice.workload
    if env is None:
        return Finding(
            "variant",
            "info",
            f"this CPU's best variant for {workload}: {best.name if best else 'none'};"
            " no environment found (FLOX_PROMPT_ENVIRONMENTS is unset)",
            "run inside `flox activate`, or pass --environment OWNER/NAME",
        )
    base = env.split(":", 1)[0]
    variant = catalog.variant_for_environment(base)
    if variant is None:
        return Finding(
            "variant",
            "warn",
            f"{env} (from {env_source}) is not a per-ISA build; this CPU's best"
            f" for {workload} is {best.name if best else 'none'}",
            f"run {base}-{best.name} (label the pod {names.INJECT_LABEL}=true)" if best else "",
        )
    if not fits(variant, features):
        lacks = ", ".join(sorted(variant.flags - features.flags))
        what = lacks if variant.arch == features.arch else f"arch {variant.arch}"
        better = f"; use the {best.name} build" if best else ""
        return Finding(
            "variant",
            "fail",
            f"{env} is the {variant.name} build, but this CPU lacks {what}: importing torch"
            " dies with 'Illegal instruction'",
            f"switch to a variant this CPU runs{better} (the webhook pins pods to nodes that"
            " have their instructions)",
        )
    if best is not None and rank_key(best, workload) < rank_key(variant, workload):
        return Finding(
            "variant",
            "warn",
            f"{env} is the {variant.name} build ({variant.score(workload):g}); this CPU"
            f" runs {best.name} ({best.score(workload):g}) for {workload}",
            f"use {base.removesuffix(variant.environment_suffix)}{best.environment_suffix}",
        )
    return Finding("variant", "ok", f"{env} is the {variant.name} build, the best this CPU runs")


def _cpus(facts: Facts) -> Finding:
    cg = facts.cgroup
    parts = [f"os.cpu_count() {facts.cpu_count}", f"affinity {facts.affinity}"]
    if cg is not None:
        quota = f"{cg.quota:g}" if cg.quota is not None else "none"
        parts += [f"cgroup v{cg.version} quota {quota}", f"cpuset {cg.cpuset}"]
    usable = usable_cpus(facts)
    message = f"usable CPUs {usable} ({', '.join(parts)})"
    if usable is not None and facts.cpu_count is not None and usable < facts.cpu_count:
        return Finding("cpus", "info", message + ": fewer than the host has; size threads by it")
    return Finding("cpus", "ok", message)


def _throttling(facts: Facts) -> list[Finding]:
    cg = facts.cgroup
    if cg is None or not cg.periods or cg.throttled is None:
        return []
    share = cg.throttled / cg.periods
    message = (
        f"throttled in {cg.throttled} of {cg.periods} periods ({share:.1%},"
        f" {(cg.throttled_us or 0) / 1e6:.1f} s)"
    )
    if share <= THROTTLED_SHARE:
        return [Finding("throttling", "ok", message)]
    return [
        Finding(
            "throttling",
            "warn",
            message,
            f"run at most floor(quota) = {usable_cpus(facts)} busy threads, or raise the CPU limit",
        )
    ]


def _thread_vars(facts: Facts) -> Finding:
    usable = usable_cpus(facts)
    values = {k: facts.thread_vars.get(k) for k in THREAD_VARIABLES}
    shown = ", ".join(f"{k}={v if v is not None else 'unset'}" for k, v in values.items())
    where = "effective (after [vars])" if facts.in_activation else "outside flox activate"
    message = f"{shown} ({where})"
    fix = (
        f"set all three to {usable} ({names.INJECT_LABEL}=true pods get them from the webhook;"
        " [vars] in the environment win at activation)"
    )
    if values["OMP_NUM_THREADS"] is None and values["MKL_NUM_THREADS"] is None:
        return Finding(
            "threads",
            "warn",
            f"{message}: PyTorch starts one thread per physical core of the host",
            fix,
        )
    counts = {v for v in values.values() if v is not None}
    numbers = [int(v) for v in counts if v.strip().isdigit()]
    if usable is not None and any(n > usable for n in numbers):
        return Finding("threads", "warn", f"{message}: more threads than {usable} usable CPUs", fix)
    if len(counts) > 1:
        return Finding("threads", "warn", f"{message}: the three disagree", fix)
    return Finding("threads", "ok", message)


def _probe(facts: Facts) -> list[Finding]:
    p, usable, best = facts.probe, usable_cpus(facts), facts.choice.variant
    if p.status == "sigill":
        fix = f"use the {best.name} build" if best else "use a build this CPU runs"
        return [
            Finding(
                "torch",
                "fail",
                f"{p.python}: importing torch died with SIGILL (Illegal instruction): the build"
                " needs instructions this CPU lacks",
                fix,
            )
        ]
    if p.status != "ok":
        status: Status = "info" if p.status in ("no-torch", "no-python") else "warn"
        return [Finding("torch", status, f"{p.python or 'python3'}: {p.detail}")]
    found = [
        Finding(
            "torch",
            "ok",
            f"torch {p.version} ({p.python}): {p.threads} threads, {p.interop} inter-op,"
            f" ATen capability {p.capability}, oneDNN {'on' if p.mkldnn else 'off'}",
        )
    ]
    if usable is not None and p.threads is not None and p.threads > usable:
        found.append(
            Finding(
                "torch-threads",
                "warn",
                f"torch.get_num_threads() is {p.threads} on {usable} usable CPUs",
                f"set OMP_NUM_THREADS={usable} (or torch.set_num_threads({usable}))",
            )
        )
    if p.interop is not None and usable is not None and p.interop > usable:
        found.append(
            Finding(
                "torch-interop",
                "info",
                f"torch.get_num_interop_threads() is {p.interop}: no variable sets it",
                "call torch.set_num_interop_threads(1) at start-up in application code",
            )
        )
    if p.mkldnn is False:
        found.append(
            Finding(
                "kernels",
                "warn",
                "torch.backends.mkldnn.is_available() is False: oneDNN kernels are not used",
                "use the per-ISA PyTorch build of the environment (flox list)",
            )
        )
    for name, value in p.caps.items():
        if value:
            found.append(
                Finding(
                    "kernels",
                    "warn",
                    f"{name}={value} caps the kernels below what the CPU can run",
                    f"unset {name}",
                )
            )
    return found


def environment_of(
    prompt_environments: str | None, given: str | None, catalog: Catalog
) -> tuple[str | None, str]:
    """The environment the pod runs, and where that was read: --environment, else the
    first of FLOX_PROMPT_ENVIRONMENTS that names a catalog build, else its first."""
    if given:
        return given, "--environment"
    entries = (prompt_environments or "").split()
    for entry in entries:
        if "/" in entry and catalog.variant_for_environment(entry.split(":", 1)[0]):
            return entry, "FLOX_PROMPT_ENVIRONMENTS"
    named = [e for e in entries if "/" in e]
    return (named[0], "FLOX_PROMPT_ENVIRONMENTS") if named else (None, "")


def summary_status(findings: Sequence[Finding]) -> Status:
    order: list[Status] = ["ok", "info", "warn", "fail"]
    return max((f.status for f in findings), key=order.index, default="ok")


# --- `doctor --pod NS/NAME`: the static part, from the API server ----------------------------


def diagnose_pod(
    pod: Mapping[str, Any], node: Mapping[str, Any] | None, catalog: Catalog
) -> list[Finding]:
    """What the pod's object and its node say: the build vs the node, each container's
    CPUs and thread variables against the rule the webhook applies."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    annotations = meta.get("annotations") or {}
    workload = parse_workload(annotations.get(names.WORKLOAD_ANNOTATION))
    findings: list[Finding] = []
    env = annotations.get(names.ENVIRONMENT_ANNOTATION)
    if node is None:
        findings.append(Finding("node", "info", "not scheduled yet: no node to check against"))
    else:
        labels = (node.get("metadata") or {}).get("labels") or {}
        features = features_from_labels(labels)
        node_name = (node.get("metadata") or {}).get("name")
        choice = choose(catalog, features, workload)
        findings.append(
            Finding(
                "node",
                "ok",
                f"node {node_name} ({labels.get(names.INSTANCE_TYPE_LABEL, '-')},"
                f" {features.arch}): best for {workload} is"
                f" {choice.variant.name if choice.variant else 'none'}",
            )
        )
        findings.append(variant_finding(env, f"annotation {names.ENVIRONMENT_ANNOTATION}",
                                        features, choice, catalog))  # fmt: skip
    reason = annotations.get(names.REASON_ANNOTATION)
    if reason:
        findings.append(Finding("reason", "info", f"{names.REASON_ANNOTATION}: {reason}"))
    containers = spec.get("containers") or []
    views = [container_cpu(c) for c in containers]
    try:
        override = parse_override(annotations.get(names.THREADS_ANNOTATION))
        settings = plan_threads(views, [container_cpu(c) for c in spec.get("initContainers") or []],
                                override)  # fmt: skip
    except InvalidInputError as exc:
        return [*findings, Finding("threads", "warn", str(exc))]
    wanted = {s.index: s for s in settings}
    for index, container in enumerate(containers):
        findings.append(_container_finding(container, views[index], wanted.get(index)))
    return findings


def _container_finding(
    container: Mapping[str, Any], view: ContainerCpu, setting: Setting | None
) -> Finding:
    env = {e.get("name"): e.get("value") for e in container.get("env") or ()
           if isinstance(e, Mapping)}  # fmt: skip
    values = {k: env.get(k) for k in THREAD_VARIABLES}
    shown = ", ".join(f"{k}={v if v is not None else 'unset'}" for k, v in values.items())
    cpus = f"CPU request {view.cpu_request or '-'}, limit {view.cpu_limit or '-'}"
    message = f"container {view.name}: {cpus}; {shown}"
    target = setting.threads if setting is not None else None
    if target is None or view.sets_threads:
        if all(v is None for v in values.values()) and view.cpu_limit is None:
            return Finding("container", "info", message)
        return Finding("container", "ok", message)
    if any(v != str(target) for v in values.values()):
        return Finding(
            "container",
            "warn",
            f"{message}: expected {target} ({setting.why if setting else ''})",
            f"label the pod {names.INJECT_LABEL}=true (the webhook sets them at creation)"
            f" or set all three to {target}",
        )
    return Finding("container", "ok", message)
