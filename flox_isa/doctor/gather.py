"""The I/O of `flox-isa doctor`: cgroup and /proc files, the environment, the torch probe.

Everything is read under a root directory (`/` live; a saved copy in tests), so the
findings of `isa.doctor` can be checked on real files from other machines.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flox_isa.isa.catalog import Catalog, Workload
from flox_isa.isa.cpuinfo import features_from_cpuinfo
from flox_isa.isa.doctor import (
    PROBE_SCRIPT,
    CgroupCpu,
    Facts,
    Probe,
    cgroup_paths,
    cgroup_v1,
    cgroup_v2,
    cpu_list_size,
    environment_of,
    probe_result,
)
from flox_isa.isa.selection import choose
from flox_isa.isa.threads import THREAD_VARIABLES

PROBE_TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class Sources:
    """Where doctor reads: `root` for /proc and /sys, the cpuinfo file, the process."""

    root: Path
    cpuinfo: Path
    pid: str
    live: bool  # root is "/": affinity and CPU count come from this process


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def read_cgroup(sources: Sources) -> CgroupCpu | None:
    """The CPU limits of the process's cgroup (v2 when the unified hierarchy is mounted
    at /sys/fs/cgroup, else v1); None when no cgroup file is readable."""
    paths = cgroup_paths(_read(sources.root / f"proc/{sources.pid}/cgroup") or "")
    base = sources.root / "sys/fs/cgroup"
    if (base / "cgroup.controllers").exists():
        here = _under(base, [paths.get("", "/")], "cpu.max")
        return cgroup_v2(
            _read(here / "cpu.max"),
            _read(here / "cpu.stat"),
            _read(here / "cpuset.cpus.effective"),
        )
    cpu = _under(base, _v1_dirs(paths, "cpu", ("cpu,cpuacct", "cpu")), "cpu.cfs_quota_us")
    cpuset = _under(base, _v1_dirs(paths, "cpuset", ("cpuset",)), "cpuset.cpus")
    quota, period = _read(cpu / "cpu.cfs_quota_us"), _read(cpu / "cpu.cfs_period_us")
    cpus = _read(cpuset / "cpuset.effective_cpus") or _read(cpuset / "cpuset.cpus")
    if quota is None and cpus is None:
        return None
    return cgroup_v1(quota, period, _read(cpu / "cpu.stat"), cpus)


def _v1_dirs(paths: Mapping[str, str], controller: str, mounts: tuple[str, ...]) -> list[str]:
    path = paths.get(controller, "/").lstrip("/")
    # With a cgroup namespace (containers) the process's path is the mount's root.
    return [f"{mount}/{path}" for mount in mounts] + list(mounts)


def _under(base: Path, candidates: list[str], marker: str) -> Path:
    for candidate in candidates:
        directory = base / candidate.strip("/")
        if (directory / marker).exists():
            return directory
    return base / candidates[-1].strip("/")


def _status_field(sources: Sources, key: str) -> str | None:
    for line in (_read(sources.root / f"proc/{sources.pid}/status") or "").splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return value.strip()
    return None


def find_python(flox_env: str | None, given: str | None) -> str | None:
    """The environment's python3: --python, $FLOX_ENV/bin/python3, else python3 on PATH."""
    if given:
        return given
    if flox_env and (Path(flox_env) / "bin/python3").exists():
        return str(Path(flox_env) / "bin/python3")
    return shutil.which("python3")


def run_probe(python: str | None) -> Probe:
    """Probe torch in a subprocess (a build too new for the CPU dies with SIGILL)."""
    if python is None:
        return Probe("no-python", None, "no python3 in the environment (FLOX_ENV, PATH)")
    try:
        done = subprocess.run(
            [python, "-c", PROBE_SCRIPT],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except OSError as exc:
        return Probe("no-python", python, f"cannot run: {exc.strerror or exc}")
    except subprocess.TimeoutExpired:
        return Probe("failed", python, f"no answer within {PROBE_TIMEOUT:g} s")
    return probe_result(python, done.returncode, done.stdout, done.stderr)


def gather(
    sources: Sources,
    catalog: Catalog,
    workload: Workload,
    environ: Mapping[str, str],
    *,
    environment: str | None = None,
    python: str | None = None,
) -> Facts:
    cpuinfo = _read(sources.cpuinfo)
    if cpuinfo is None:
        raise FileNotFoundError(f"cpuinfo {str(sources.cpuinfo)!r}: cannot be read")
    features = features_from_cpuinfo(cpuinfo)
    if sources.live:
        affinity: int | None = len(os.sched_getaffinity(0))
        cpu_count = os.cpu_count()
    else:
        allowed = _status_field(sources, "Cpus_allowed_list")
        affinity = cpu_list_size(allowed) if allowed else None
        online = _read(sources.root / "sys/devices/system/cpu/online")
        cpu_count = cpu_list_size(online) if online else None
    threads = _status_field(sources, "Threads")
    env, source = environment_of(environ.get("FLOX_PROMPT_ENVIRONMENTS"), environment, catalog)
    return Facts(
        workload=workload,
        features=features,
        choice=choose(catalog, features, workload),
        environment=env,
        environment_source=source,
        cgroup=read_cgroup(sources),
        affinity=affinity,
        cpu_count=cpu_count or None,
        thread_vars={k: environ.get(k) for k in THREAD_VARIABLES},
        process_threads=int(threads) if threads and threads.isdigit() else None,
        in_activation=bool(environ.get("FLOX_ENV")),
        probe=run_probe(find_python(environ.get("FLOX_ENV"), python)),
    )
