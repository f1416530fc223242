"""Pinned control-plane versions: `k8s/versions.env` (package data), the single source of truth.

Pure parsing and rendering (ldflags, cache key, go.mod checks); no I/O except `load_versions`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# The Go consumer modules the binaries are built from: package data, so an installed
# wheel can build them too (`build` copies them under the cache directory first).
K8S_DIR = Path(__file__).resolve().parent / "k8s"
VERSIONS_FILE = K8S_DIR / "versions.env"

_LINE = re.compile(r"^(?P<key>[A-Z][A-Z0-9_]*)=(?P<value>\S*)$")
_K8S_VERSION = re.compile(r"^v1\.(?P<minor>\d+)\.(?P<patch>\d+)$")
REQUIRED_KEYS = (
    "KUBERNETES_VERSION",
    "KUBERNETES_STAGING_VERSION",
    "ETCD_VERSION",
    "KWOK_VERSION",
    "KUBECTL_LAYER_PACKAGE",
    "KUBECTL_LAYER_VERSION",
)


class VersionsError(ValueError):
    """versions.env (or a go.mod that must agree with it) is malformed."""


@dataclass(frozen=True, slots=True)
class Versions:
    kubernetes: str
    kubernetes_staging: str
    etcd: str
    kwok: str
    kubectl_layer_package: str
    kubectl_layer_version: str

    @property
    def cache_key(self) -> str:
        """Directory name of the binary cache: every version that goes into a binary."""
        return (
            f"kubernetes-{self.kubernetes}_etcd-{self.etcd}_kwok-{self.kwok}"
            f"_kubectl-layer-{self.kubectl_layer_version}"
        )


def parse_versions(text: str) -> Versions:
    """Parse KEY=VALUE lines (comments and blank lines allowed); check the k8s pairing."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise VersionsError(f"versions.env line {number}: expected KEY=VALUE, got {raw!r}")
        values[match["key"]] = match["value"]
    missing = [key for key in REQUIRED_KEYS if not values.get(key)]
    if missing:
        raise VersionsError(f"versions.env: missing {', '.join(missing)}")
    versions = Versions(*(values[key] for key in REQUIRED_KEYS))
    expected_staging = staging_version(versions.kubernetes)
    if versions.kubernetes_staging != expected_staging:
        raise VersionsError(
            f"versions.env: KUBERNETES_STAGING_VERSION {versions.kubernetes_staging} does not"
            f" match KUBERNETES_VERSION {versions.kubernetes} (expected {expected_staging})"
        )
    return versions


def load_versions(path: Path = VERSIONS_FILE) -> Versions:
    try:
        return parse_versions(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VersionsError(
            f"{path} not found: this flox-isa installation lacks its devcluster package data"
        ) from None


def staging_version(kubernetes_version: str) -> str:
    """v1.34.4 -> v0.34.4: the tag the k8s.io/* staging modules publish for a release."""
    match = _K8S_VERSION.match(kubernetes_version)
    if match is None:
        raise VersionsError(f"not a Kubernetes release version: {kubernetes_version!r}")
    return f"v0.{match['minor']}.{match['patch']}"


def kubernetes_ldflags(kubernetes_version: str) -> str:
    """Linker flags that stamp the release into the binaries, so /version reports it.

    `-s -w` drops symbol tables: smaller binaries, faster links on a small machine.
    """
    match = _K8S_VERSION.match(kubernetes_version)
    if match is None:
        raise VersionsError(f"not a Kubernetes release version: {kubernetes_version!r}")
    stamps = {
        "gitVersion": kubernetes_version,
        "gitMajor": "1",
        "gitMinor": match["minor"],
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{name}={value}" for name, value in stamps.items()]
    return " ".join(flags)


def gomod_requirements(gomod: str) -> dict[str, str]:
    """Module -> version of a go.mod's `require` and `replace ... => module version` lines."""
    found: dict[str, str] = {}
    for raw in gomod.splitlines():
        line = raw.split("//", 1)[0].strip().removeprefix("require ").removeprefix("replace ")
        parts = line.split()
        if len(parts) == 4 and parts[1] == "=>":
            found[f"replace {parts[0]}"] = parts[3]
        elif len(parts) == 2 and parts[0] not in {"module", "go", "toolchain"}:
            found[parts[0]] = parts[1]
    return found


def gomod_mismatches(versions: Versions, gomods: dict[str, str]) -> list[str]:
    """What in k8s/*/go.mod disagrees with versions.env (empty: all agree).

    `gomods` maps the module directory name (kubernetes, etcd, kwok) to its go.mod text.
    """
    problems: list[str] = []
    pins = {
        "kubernetes": ("k8s.io/kubernetes", versions.kubernetes),
        "etcd": ("go.etcd.io/etcd/server/v3", versions.etcd),
        "kwok": ("sigs.k8s.io/kwok", versions.kwok),
    }
    for directory, (module, version) in pins.items():
        got = gomod_requirements(gomods.get(directory, "")).get(module)
        if got != version:
            problems.append(f"k8s/{directory}/go.mod: {module} is {got}, want {version}")
    kube = gomod_requirements(gomods.get("kubernetes", ""))
    staging = {k: v for k, v in kube.items() if k.startswith("replace k8s.io/")}
    if not staging:
        problems.append("k8s/kubernetes/go.mod: no k8s.io/* staging replaces")
    for key, version in sorted(staging.items()):
        if version != versions.kubernetes_staging:
            problems.append(
                f"k8s/kubernetes/go.mod: {key} is {version}, want {versions.kubernetes_staging}"
            )
    return problems
