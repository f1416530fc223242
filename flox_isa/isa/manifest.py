"""Flox manifests per ISA variant (pure: parsed TOML data in, findings and edits out).

Flox's semantics this follows (flox/flox, `cli/flox/doc/manifest.toml.md` and the lock's
system checks): a package's `systems` defaults to `options.systems`, which defaults to
all four systems; a package system missing from `options.systems` is a lock error; every
package of a `pkg-group` is resolved for each of its systems; `priority` only settles file
conflicts, so two builds of one library for different ISAs may install side by side.

An ISA-specific package is one whose last path segment ends in `-<token>` with the
token of a catalog variant (`packageToken`, default the variant name), e.g.
`flox/pytorch-python313-cpu-avx512vnni`. Tokens match whole: `-avx512` never
matches inside `-avx512vnni`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from flox_isa.isa.catalog import Catalog, Variant

SYSTEMS: Final = ("aarch64-darwin", "aarch64-linux", "x86_64-darwin", "x86_64-linux")
SYSTEM_ARCH: Final[Mapping[str, str]] = {
    "aarch64-darwin": "arm64",
    "aarch64-linux": "arm64",
    "x86_64-darwin": "amd64",
    "x86_64-linux": "amd64",
}
LINUX_SYSTEM: Final[Mapping[str, str]] = {"amd64": "x86_64-linux", "arm64": "aarch64-linux"}
DARWIN_SYSTEM: Final[Mapping[str, str]] = {"amd64": "x86_64-darwin", "arm64": "aarch64-darwin"}
# Variables that fix a math library's thread count. The cluster sets the thread count
# from the pod's CPU; a value in the manifest's [vars] overrides it on every node.
THREAD_VARIABLES: Final = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
# What an ISA token looks like when the catalog does not know it (e.g. `-avx`,
# `-armv8.2` where the builds spell it `armv8_2`, `-sse4_2`).
_ISA_LIKE: Final = re.compile(
    r"-(avx[0-9a-z_]*|armv[0-9][0-9a-z_.]*|sse[0-9a-z_.]*|amx[0-9a-z_]*|sve[0-9]*|neon)$",
    re.IGNORECASE,
)

Severity = Literal["error", "warning"]


class ManifestError(ValueError):
    """A manifest whose structure flox-isa cannot read; the message names the field."""


@dataclass(frozen=True, slots=True)
class Package:
    """One `[install]` entry."""

    install_id: str
    pkg_path: str | None  # None for flake and store-path descriptors
    systems: tuple[str, ...] | None  # None: inherits options.systems


@dataclass(frozen=True, slots=True)
class Manifest:
    """What flox-isa reads from a manifest; everything else is left as written."""

    packages: tuple[Package, ...]
    options_systems: tuple[str, ...] | None
    variables: tuple[str, ...]
    versioned: bool  # has `version` or `schema-version`

    def effective_systems(self, package: Package) -> tuple[str, ...]:
        """The systems Flox resolves `package` for."""
        if package.systems is not None:
            return package.systems
        return self.options_systems if self.options_systems is not None else SYSTEMS


@dataclass(frozen=True, slots=True)
class IsaToken:
    """The ISA part of a package path: `stem` + `token` is the path."""

    stem: str
    token: str
    variant: Variant | None  # None: an ISA token the catalog does not know


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    rule: str
    message: str
    install_ids: tuple[str, ...] = ()


def read_manifest(data: Mapping[str, Any]) -> Manifest:
    """The parts of parsed manifest TOML that flox-isa acts on (errors name the field)."""
    install = data.get("install", {})
    if not isinstance(install, Mapping):
        raise ManifestError("install: must be a table of install ids")
    packages = []
    for install_id, descriptor in install.items():
        where = f"install.{install_id}"
        if not isinstance(descriptor, Mapping):
            raise ManifestError(f"{where}: must be a table (pkg-path, systems, ...)")
        pkg_path = descriptor.get("pkg-path")
        if pkg_path is not None and not isinstance(pkg_path, str):
            raise ManifestError(f"{where}.pkg-path: must be a string")
        systems = _systems(descriptor.get("systems"), f"{where}.systems")
        packages.append(Package(str(install_id), pkg_path, systems))
    options = data.get("options", {})
    if not isinstance(options, Mapping):
        raise ManifestError("options: must be a table")
    variables = data.get("vars", {})
    if not isinstance(variables, Mapping):
        raise ManifestError("vars: must be a table of strings")
    return Manifest(
        packages=tuple(packages),
        options_systems=_systems(options.get("systems"), "options.systems"),
        variables=tuple(str(name) for name in variables),
        versioned="version" in data or "schema-version" in data,
    )


def _systems(value: object, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ManifestError(f"{where}: must be an array of system names ({', '.join(SYSTEMS)})")
    return tuple(value)


def isa_token(pkg_path: str | None, catalog: Catalog) -> IsaToken | None:
    """The ISA token ending `pkg_path`'s last segment, known to the catalog or not."""
    if pkg_path is None:
        return None
    last = pkg_path.rsplit("/", 1)[-1]
    known = sorted(catalog.variants, key=lambda v: -len(v.package_token))
    for variant in known:
        suffix = f"-{variant.package_token}"
        if last.endswith(suffix) and len(last) > len(suffix):
            return IsaToken(pkg_path[: -len(variant.package_token)], variant.package_token, variant)
    match = _ISA_LIKE.search(last)
    if match and match.start() > 0:
        token = match.group(1)
        return IsaToken(pkg_path[: -len(token)], token, None)
    return None


def isa_packages(manifest: Manifest, catalog: Catalog) -> list[tuple[Package, IsaToken]]:
    found = []
    for package in manifest.packages:
        token = isa_token(package.pkg_path, catalog)
        if token is not None:
            found.append((package, token))
    return found


# --- lint --------------------------------------------------------------------------


def lint(manifest: Manifest, catalog: Catalog) -> list[Finding]:
    """Every rule, errors first; an empty list is a clean manifest."""
    findings = [
        *_unknown_systems(manifest),
        *_systems_outside_options(manifest),
        *_unknown_tokens(manifest, catalog),
        *_wrong_architecture(manifest, catalog),
        *_mixed_isas(manifest, catalog),
        *_thread_variables(manifest),
    ]
    return sorted(findings, key=lambda f: f.severity != "error")


def _unknown_systems(manifest: Manifest) -> list[Finding]:
    allowed = f"allowed: {', '.join(SYSTEMS)}"
    findings = []
    for system in manifest.options_systems or ():
        if system not in SYSTEMS:
            findings.append(
                Finding(
                    "error",
                    "unknown-system",
                    f"options.systems: unknown system {system!r}; {allowed}",
                )
            )
    for package in manifest.packages:
        for system in package.systems or ():
            if system not in SYSTEMS:
                findings.append(
                    Finding(
                        "error",
                        "unknown-system",
                        f"install.{package.install_id}.systems: unknown system {system!r};"
                        f" {allowed}",
                        (package.install_id,),
                    )
                )
    return findings


def _systems_outside_options(manifest: Manifest) -> list[Finding]:
    if manifest.options_systems is None:
        return []
    findings = []
    for package in manifest.packages:
        outside = [
            s for s in package.systems or () if s in SYSTEMS and s not in manifest.options_systems
        ]
        if outside:
            findings.append(
                Finding(
                    "error",
                    "system-not-in-options",
                    f"install.{package.install_id}.systems: {', '.join(outside)} not in"
                    f" options.systems ({', '.join(manifest.options_systems)}); Flox fails to lock",
                    (package.install_id,),
                )
            )
    return findings


def _unknown_tokens(manifest: Manifest, catalog: Catalog) -> list[Finding]:
    known = ", ".join(v.package_token for v in catalog.variants)
    findings = []
    for package, token in isa_packages(manifest, catalog):
        if token.variant is not None:
            continue
        spelled = [v for v in catalog.variants if v.name == token.token]
        hint = (
            f"; variant {spelled[0].name!r} spells it {spelled[0].package_token!r}"
            if spelled
            else ""
        )
        findings.append(
            Finding(
                "error",
                "unknown-isa-token",
                f"install.{package.install_id}.pkg-path: {package.pkg_path!r} ends in ISA token"
                f" {token.token!r}, which the catalog does not know (its tokens: {known}){hint}",
                (package.install_id,),
            )
        )
    return findings


def _wrong_architecture(manifest: Manifest, catalog: Catalog) -> list[Finding]:
    findings = []
    for package, token in isa_packages(manifest, catalog):
        if token.variant is None:
            continue
        foreign = [
            s
            for s in manifest.effective_systems(package)
            if s in SYSTEM_ARCH and SYSTEM_ARCH[s] != token.variant.arch
        ]
        if foreign:
            inherited = "" if package.systems is not None else " (inherited: no systems of its own)"
            findings.append(
                Finding(
                    "error",
                    "wrong-architecture",
                    f"install.{package.install_id}: {package.pkg_path!r} is a"
                    f" {token.variant.name} ({token.variant.arch}) build but its systems include"
                    f" {', '.join(foreign)}{inherited}; limit its systems to"
                    f" {LINUX_SYSTEM[token.variant.arch]}",
                    (package.install_id,),
                )
            )
    return findings


def _mixed_isas(manifest: Manifest, catalog: Catalog) -> list[Finding]:
    """Packages resolved together for one system but built for different ISAs."""
    by_system: dict[str, list[tuple[Package, IsaToken]]] = {}
    for package, token in isa_packages(manifest, catalog):
        if token.variant is None:
            continue
        for system in manifest.effective_systems(package):
            by_system.setdefault(system, []).append((package, token))
    groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for system in SYSTEMS:
        entries = by_system.get(system, [])
        if len({t.token for _, t in entries}) > 1:
            key = tuple((p.install_id, t.token) for p, t in entries)
            groups.setdefault(key, []).append(system)
    findings = []
    for key, systems in groups.items():
        paths = {p.install_id: p.pkg_path for p, _ in by_system[systems[0]]}
        listed = ", ".join(f"{i} ({paths[i]})" for i, _ in key)
        isas = ", ".join(sorted({t for _, t in key}))
        findings.append(
            Finding(
                "error",
                "mixed-isa",
                f"install: packages built for different ISAs ({isas})"
                f" are installed together on {', '.join(systems)}: {listed}; use one variant's"
                " builds for all of them (distinct priorities let `flox install` accept this)",
                tuple(i for i, _ in key),
            )
        )
    return findings


def _thread_variables(manifest: Manifest) -> list[Finding]:
    return [
        Finding(
            "warning",
            "thread-variable",
            f"vars.{name}: fixes the thread count on every node, overriding what the cluster"
            " sets from the pod's CPU; remove it from [vars]",
        )
        for name in manifest.variables
        if name in THREAD_VARIABLES
    ]


# --- render ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PackageEdit:
    """What rendering does to one `[install]` entry."""

    install_id: str
    remove: bool = False
    pkg_path: str | None = None  # set: rewritten to this
    systems: tuple[str, ...] | None = None  # set: the entry's own systems, intersected


@dataclass(frozen=True, slots=True)
class RenderPlan:
    """The edits that turn the base manifest into one variant's manifest."""

    variant: Variant
    options_systems: tuple[str, ...]
    edits: tuple[PackageEdit, ...]
    add_version: bool
    notes: tuple[str, ...] = field(default=())

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(e.install_id for e in self.edits if e.remove)

    @property
    def rewritten(self) -> tuple[PackageEdit, ...]:
        return tuple(e for e in self.edits if e.pkg_path is not None)


class NothingToRenderError(ValueError):
    """The manifest, or the variant's part of it, has no ISA-specific package."""


def target_systems(variant: Variant, keep_darwin: bool) -> tuple[str, ...]:
    linux = LINUX_SYSTEM[variant.arch]
    return (linux, DARWIN_SYSTEM[variant.arch]) if keep_darwin else (linux,)


def plan_render(
    manifest: Manifest, catalog: Catalog, variant: Variant, *, keep_darwin: bool = False
) -> RenderPlan:
    """The variant's manifest, as edits: tokens rewritten, systems narrowed, strays removed.

    Raises NothingToRenderError when no ISA-specific package is left for the variant's
    architecture (e.g. an x86-only manifest rendered for an arm64 variant).
    """
    targets = target_systems(variant, keep_darwin)
    tokens = {p.install_id: t for p, t in isa_packages(manifest, catalog)}
    edits = []
    kept_isa = 0
    for package in manifest.packages:
        systems = None
        if package.systems is not None:
            systems = tuple(s for s in package.systems if s in targets)
            if not systems:
                edits.append(PackageEdit(package.install_id, remove=True))
                continue
        token = tokens.get(package.install_id)
        pkg_path = None
        if token is not None and token.variant is not None and token.variant.arch == variant.arch:
            kept_isa += 1
            if token.token != variant.package_token:
                pkg_path = token.stem + variant.package_token
        edits.append(PackageEdit(package.install_id, pkg_path=pkg_path, systems=systems))
    if not tokens:
        raise NothingToRenderError("no ISA-specific package (pkg-path ending in a catalog token)")
    if kept_isa == 0:
        raise NothingToRenderError(
            f"no ISA-specific package for {variant.arch} is left on {', '.join(targets)}"
        )
    notes = () if manifest.versioned else ("added `version = 1` (the manifest had no version)",)
    return RenderPlan(variant, targets, tuple(edits), not manifest.versioned, notes)
