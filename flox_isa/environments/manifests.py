"""Manifest files in, per-variant Flox environments out (the I/O around isa.manifest).

`tomllib` reads what Flox will see; `tomlkit` edits a round-trip copy so that comments,
order and every field flox-isa does not own stay as written.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import tomlkit
from tomlkit.items import Table

from flox_isa.files import InputError, read_text
from flox_isa.isa.catalog import Catalog, Variant
from flox_isa.isa.contract import ENVIRONMENT_GRAMMAR, is_environment, variant_environment
from flox_isa.isa.manifest import (
    Finding,
    Manifest,
    ManifestError,
    NothingToRenderError,
    RenderPlan,
    isa_packages,
    lint,
    plan_render,
    read_manifest,
)

MARKER: Final = ".flox-isa.json"  # beside .flox/: says flox-isa wrote this directory
GITIGNORE: Final = "run/\ncache/\nlib/\nlog/\n!env/\n"  # what `flox init` writes in .flox/
VERSION_LINE: Final = "version = 1\n"


@dataclass(frozen=True, slots=True)
class Source:
    path: str
    text: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rendered:
    """One variant's environment, in memory until `write` puts it on disk."""

    environment: str  # owner/name-<variant>
    directory: Path
    plan: RenderPlan
    manifest_text: str
    findings: tuple[Finding, ...]
    missing: tuple[str, ...] | None  # None: unchecked (no --packages)

    @property
    def name(self) -> str:
        return self.environment.split("/", 1)[1]


@dataclass(frozen=True, slots=True)
class Skipped:
    variant: Variant
    reason: str


def read_source(path: str) -> Source:
    """A manifest file parsed as Flox parses it; InputError when it is not TOML."""
    text = read_text(path, "manifest")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"manifest {path!r} is not valid TOML: {exc}") from None
    return Source(path, text, data)


def load_schema(path: str | None) -> dict[str, Any] | None:
    """Flox's manifest JSON Schema (cli/schemas/manifest-v1.schema.json), if given."""
    if path is None:
        return None
    schema = _read_json(path, "schema")
    if not isinstance(schema, dict) or "$defs" not in schema:
        raise InputError(f"schema {path!r} is not Flox's manifest JSON Schema (no $defs)")
    return schema


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(read_text(path, what))
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} {path!r} is not valid JSON: {exc}") from None


def schema_errors(data: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Where `data` breaks Flox's schema: one message per problem, naming the field path."""
    import jsonschema  # noqa: PLC0415 (only lint and render with --schema need it)

    if "version" not in data and "schema-version" not in data:
        return ["version: missing: Flox needs `version = 1` (or `schema-version`)"]
    if "schema-version" not in data and "ManifestV1" in schema["$defs"]:
        schema = {**schema, "anyOf": [{"$ref": "#/$defs/ManifestV1"}]}
    validator = jsonschema.validators.validator_for(schema)(schema)
    found = []
    for error in validator.iter_errors(data):
        leaf = _deepest(error)
        where = ".".join(str(part) for part in leaf.absolute_path) or "(top level)"
        found.append(f"{where}: {leaf.message}")
    return found


def _deepest(error: Any) -> Any:
    """The most specific error inside an anyOf (the branch that got furthest)."""
    if not error.context:
        return error
    leaves = [_deepest(child) for child in error.context]
    return max(leaves, key=lambda e: (len(e.absolute_path), e.validator != "anyOf"))


def lint_source(
    source: Source, catalog: Catalog, schema: Mapping[str, Any] | None
) -> list[Finding]:
    """Schema findings (when a schema is given) then flox-isa's rules."""
    findings = [
        Finding("error", "schema", message)
        for message in (schema_errors(source.data, schema) if schema is not None else ())
    ]
    try:
        manifest = read_manifest(source.data)
    except ManifestError as exc:
        return [*findings, Finding("error", "schema", str(exc))]
    return [*findings, *lint(manifest, catalog)]


def parse_name(name: str) -> tuple[str, str]:
    if not is_environment(name):
        raise InputError(
            f"--name {name!r} is not an environment reference: use {ENVIRONMENT_GRAMMAR}"
        )
    owner, base = name.split("/", 1)
    return owner, base


def pick_variants(catalog: Catalog, names: str | None) -> tuple[tuple[Variant, ...], bool]:
    """The variants to render and whether the user named them."""
    if names is None:
        return catalog.variants, False
    picked = []
    for name in (n.strip() for n in names.split(",")):
        variant = catalog.get(name)
        if variant is None:
            raise InputError(
                f"--variants: unknown variant {name!r}; the catalog has {', '.join(catalog.names)}"
            )
        if variant not in picked:
            picked.append(variant)
    return tuple(picked), True


def read_packages(path: str | None) -> frozenset[str] | None:
    """The package paths in saved `flox search --json` output (a list of results)."""
    if path is None:
        return None
    data = _read_json(path, "packages file")
    if not isinstance(data, list):
        raise InputError(f"packages file {path!r}: expected a JSON array (`flox search --json`)")
    found = set()
    for index, entry in enumerate(data):
        value = entry.get("pkg_path", entry.get("attr_path")) if isinstance(entry, dict) else entry
        if not isinstance(value, str):
            raise InputError(
                f"packages file {path!r}: entry {index + 1} has no pkg_path (a string)"
            )
        found.add(value)
    return frozenset(found)


def render(
    source: Source,
    catalog: Catalog,
    name: str,
    variants: Sequence[Variant],
    out: Path,
    *,
    keep_darwin: bool = False,
    packages: frozenset[str] | None = None,
) -> tuple[list[Rendered], list[Skipped]]:
    """Every variant's environment in memory; NothingToRenderError if the manifest has none."""
    parse_name(name)
    try:
        manifest = read_manifest(source.data)
    except ManifestError as exc:
        raise InputError(f"manifest {source.path!r}: {exc}") from None
    if not isa_packages(manifest, catalog):
        raise NothingToRenderError(
            f"manifest {source.path!r} has no ISA-specific package (no pkg-path ends in one of"
            f" {', '.join('-' + v.package_token for v in catalog.variants)}): nothing to render"
        )
    rendered, skipped = [], []
    for variant in variants:
        try:
            plan = plan_render(manifest, catalog, variant, keep_darwin=keep_darwin)
        except NothingToRenderError as exc:
            skipped.append(Skipped(variant, str(exc)))
            continue
        text = apply(source.text, plan)
        result = read_manifest(tomllib.loads(text))
        environment = variant_environment(name, variant)
        rendered.append(
            Rendered(
                environment=environment,
                directory=out / environment.split("/", 1)[1],
                plan=plan,
                manifest_text=text,
                findings=tuple(lint(result, catalog)),
                missing=_missing(result, catalog, packages),
            )
        )
    return rendered, skipped


def _missing(
    manifest: Manifest, catalog: Catalog, known: frozenset[str] | None
) -> tuple[str, ...] | None:
    if known is None:
        return None
    return tuple(
        p.pkg_path
        for p, _ in isa_packages(manifest, catalog)
        if p.pkg_path and p.pkg_path not in known
    )


def apply(text: str, plan: RenderPlan) -> str:
    """The base manifest's text with the plan's edits, everything else as written."""
    document = tomlkit.parse(VERSION_LINE + "\n" + text if plan.add_version else text)
    install = document.get("install")
    for edit in plan.edits:
        assert install is not None  # edits exist only for [install] entries
        if edit.remove:
            del install[edit.install_id]
            continue
        entry = install[edit.install_id]
        if edit.pkg_path is not None:
            entry["pkg-path"] = edit.pkg_path
        if edit.systems is not None and list(edit.systems) != list(entry["systems"]):
            entry["systems"] = list(edit.systems)
    options = document.get("options")
    if options is None:
        options = tomlkit.table()
        document.add("options", options)
    assert isinstance(options, (Table, dict))
    options["systems"] = list(plan.options_systems)
    return tomlkit.dumps(document)


# --- the output directory -----------------------------------------------------------


def check_directories(rendered: Iterable[Rendered], force: bool) -> None:
    """Refuse (before writing anything) directories that exist and are not ours."""
    for env in rendered:
        directory = env.directory
        if not directory.exists() or force or _ours(directory, env.environment):
            continue
        if directory.is_dir() and not any(directory.iterdir()):
            continue
        raise InputError(
            f"{str(directory)!r} exists and was not written by `flox-isa environments render`"
            f" for {env.environment} (no {MARKER}); move it away or pass --force"
        )


def _ours(directory: Path, environment: str) -> bool:
    try:
        marker = json.loads((directory / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("environment") == environment


def write(env: Rendered, base_manifest: str) -> None:
    """One environment's files; an env.json naming this environment and a .gitignore are
    kept if already there."""
    dot_flox = env.directory / ".flox"
    (dot_flox / "env").mkdir(parents=True, exist_ok=True)
    _replace(dot_flox / "env" / "manifest.toml", env.manifest_text)
    if not _names(dot_flox / "env.json", env.name):
        _replace(
            dot_flox / "env.json", json.dumps({"name": env.name, "version": 1}, indent=2) + "\n"
        )
    if not (dot_flox / ".gitignore").exists():
        _replace(dot_flox / ".gitignore", GITIGNORE)
    marker = {
        "renderedBy": "flox-isa environments render",
        "environment": env.environment,
        "variant": env.plan.variant.name,
        "base": base_manifest,
    }
    _replace(env.directory / MARKER, json.dumps(marker, indent=2) + "\n")


def _names(env_json: Path, name: str) -> bool:
    """Does this env.json (kept if so: a pushed one also links to FloxHub) name `name`?"""
    try:
        data = json.loads(env_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("name") == name


def _replace(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
