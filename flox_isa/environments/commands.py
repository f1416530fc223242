"""`flox-isa environments render|lint|plan`: publishing one Flox manifest per ISA variant.

Exit codes: 0 done (lint: clean), 1 findings (lint errors or warnings; render: a base
manifest or a render with lint errors, nothing written), 2 bad input (nothing written).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from flox_isa.files import InputError, load_catalog, read_documents
from flox_isa.isa import names
from flox_isa.isa.catalog import WORKLOADS, Catalog, Variant, Workload
from flox_isa.isa.contract import variant_environment
from flox_isa.isa.manifest import LINUX_SYSTEM, Finding, NothingToRenderError
from flox_isa.isa.nodes import NodeDocumentError, node_info, nodes_in
from flox_isa.isa.selection import choose

EXIT_FINDINGS = 1
EXIT_INPUT = 2
DEFAULT_OUT = "environments"
SCHEMA_HELP = (
    "Flox's manifest JSON Schema (flox/flox cli/schemas/manifest-v1.schema.json) to validate"
    " against; without it the schema is reported unchecked"
)


def register(commands: Any) -> None:
    environments = commands.add_parser(
        "environments",
        help="render, lint and plan the per-ISA Flox environments",
        description="From one base Flox manifest, write one environment per ISA variant"
        " (owner/name-<variant>, the names the webhook and the operator ask for), check a"
        " manifest for mixed ISA builds, and print the commands that publish them.",
    )
    sub = environments.add_subparsers(title="subcommands", metavar="SUBCOMMAND")
    environments.set_defaults(handler=lambda _args: _help(environments))

    render = sub.add_parser(
        "render",
        help="write one Flox environment per variant",
        description="Write DIR/<name>-<variant>/.flox/{env.json,env/manifest.toml,.gitignore}"
        " per variant: each ISA-specific pkg-path's trailing token rewritten to the variant's"
        " packageToken, options.systems set to the variant's Linux system, every package's"
        " systems intersected with it (entries left with none removed), all else unchanged."
        " Exit codes: 0 written, 1 lint errors (nothing written), 2 bad input.",
    )
    render.add_argument("--manifest", metavar="PATH", required=True, help="base manifest.toml")
    render.add_argument("--name", metavar="OWNER/NAME", required=True, help="base environment")
    render.add_argument("--catalog", metavar="FILE", help="variant catalog (YAML or JSON)")
    render.add_argument("--variants", metavar="A,B", help="default: every catalog variant")
    render.add_argument("--out", metavar="DIR", default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    render.add_argument(
        "--keep-darwin", action="store_true", help="keep the variant arch's darwin system"
    )
    render.add_argument(
        "--packages", metavar="FILE", help="saved `flox search --json` output: report missing"
    )
    render.add_argument("--schema", metavar="FILE", help=SCHEMA_HELP)
    render.add_argument("--force", action="store_true", help="overwrite directories not ours")
    render.add_argument("--output", choices=("text", "json"), default="text")
    render.set_defaults(handler=_render)

    lint = sub.add_parser(
        "lint",
        help="check a manifest for mixed ISA builds and system mistakes",
        description="Errors: packages of one environment built for different ISAs, ISA tokens"
        " the catalog does not know, ISA builds on systems of another architecture, package"
        " systems outside options.systems, unknown systems, schema violations (--schema)."
        " Warnings: thread-count variables in [vars]."
        " Exit codes: 0 clean, 1 findings, 2 unreadable input.",
    )
    lint.add_argument("--manifest", metavar="PATH", required=True)
    lint.add_argument("--catalog", metavar="FILE", help="variant catalog (YAML or JSON)")
    lint.add_argument("--schema", metavar="FILE", help=SCHEMA_HELP)
    lint.add_argument("--output", choices=("text", "json"), default="text")
    lint.set_defaults(handler=_lint)

    plan = sub.add_parser(
        "plan",
        help="which variants a fleet needs, and the commands that publish them",
        description="Each node's best variant per workload (as `explain nodes` decides),"
        " the variants worth publishing, and the flox commands to publish and update them"
        " (printed, not run). FILE is what `kubectl get nodes -o yaml` writes.",
    )
    plan.add_argument("--manifest", metavar="PATH", required=True)
    plan.add_argument("--name", metavar="OWNER/NAME", required=True)
    plan.add_argument("--nodes", metavar="FILE", required=True)
    plan.add_argument("--workload", choices=WORKLOADS, help="default: every workload")
    plan.add_argument("--catalog", metavar="FILE", help="variant catalog (YAML or JSON)")
    plan.add_argument("--out", metavar="DIR", default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    plan.add_argument("--output", choices=("text", "json"), default="text")
    plan.set_defaults(handler=_plan)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_INPUT


def _finding_json(finding: Finding) -> dict[str, Any]:
    return {
        "severity": finding.severity,
        "rule": finding.rule,
        "installIds": list(finding.install_ids),
        "message": finding.message,
    }


def _print_findings(path: str, findings: list[Finding] | tuple[Finding, ...]) -> None:
    for f in findings:
        print(f"{path}: {f.severity}: [{f.rule}] {f.message}")


# --- lint ---------------------------------------------------------------------------


def _lint(args: argparse.Namespace) -> int:
    from flox_isa.environments import manifests  # noqa: PLC0415

    catalog = load_catalog(args.catalog)
    schema = manifests.load_schema(args.schema)
    source = manifests.read_source(args.manifest)
    findings = manifests.lint_source(source, catalog, schema)
    schema_state = "checked" if schema is not None else "unchecked"
    if args.output == "json":
        print(
            json.dumps(
                {
                    "manifest": args.manifest,
                    "schema": schema_state,
                    "findings": [_finding_json(f) for f in findings],
                },
                indent=2,
            )
        )
    elif findings:
        _print_findings(args.manifest, findings)
    else:
        print(f"{args.manifest}: clean (schema: {schema_state})")
    return EXIT_FINDINGS if findings else 0


# --- render -------------------------------------------------------------------------


def _base_has_errors(path: str, source: Any, catalog: Catalog) -> bool:
    from flox_isa.environments import manifests  # noqa: PLC0415

    errors = [f for f in manifests.lint_source(source, catalog, None) if f.severity == "error"]
    if errors:
        _print_findings(path, errors)
        print(
            f"flox-isa: {path}: fix the base manifest first (`flox-isa environments lint`);"
            " nothing done",
            file=sys.stderr,
        )
    return bool(errors)


def _render(args: argparse.Namespace) -> int:
    from flox_isa.environments import manifests  # noqa: PLC0415

    catalog = load_catalog(args.catalog)
    manifests.parse_name(args.name)
    variants, named = manifests.pick_variants(catalog, args.variants)
    schema = manifests.load_schema(args.schema)
    packages = manifests.read_packages(args.packages)
    source = manifests.read_source(args.manifest)
    if _base_has_errors(args.manifest, source, catalog):
        return EXIT_FINDINGS
    try:
        rendered, skipped = manifests.render(
            source,
            catalog,
            args.name,
            variants,
            Path(args.out),
            keep_darwin=args.keep_darwin,
            packages=packages,
        )
    except NothingToRenderError as exc:
        raise InputError(str(exc)) from None
    if named and skipped:
        raise InputError(
            f"--variants: {skipped[0].variant.name}: {skipped[0].reason} in {args.manifest}"
        )
    if not rendered:
        raise InputError(f"{args.manifest}: no variant renders: {skipped[0].reason}")
    failed = False
    for env in rendered:
        errors = [f for f in env.findings if f.severity == "error"]
        if schema is not None:
            import tomllib  # noqa: PLC0415

            data = tomllib.loads(env.manifest_text)
            errors += [Finding("error", "schema", m) for m in manifests.schema_errors(data, schema)]
        if errors:
            failed = True
            _print_findings(f"{env.environment} (rendered)", errors)
    if failed:
        print("flox-isa: a render breaks the rules above; nothing written", file=sys.stderr)
        return EXIT_FINDINGS
    manifests.check_directories(rendered, args.force)
    for env in rendered:
        try:
            manifests.write(env, args.manifest)
        except OSError as exc:
            raise InputError(
                f"cannot write {str(env.directory)!r}: {exc.strerror or exc}"
            ) from None
    if args.output == "json":
        print(json.dumps(_render_json(rendered, skipped, schema is not None), indent=2))
    else:
        _render_text(args, rendered, skipped, schema is not None)
    return 0


def _render_json(rendered: list[Any], skipped: list[Any], schema_checked: bool) -> dict[str, Any]:
    return {
        "environments": [
            {
                "environment": env.environment,
                "variant": env.plan.variant.name,
                "directory": str(env.directory),
                "optionsSystems": list(env.plan.options_systems),
                "rewritten": {e.install_id: e.pkg_path for e in env.plan.rewritten},
                "removed": list(env.plan.removed),
                "notes": list(env.plan.notes),
                "warnings": [_finding_json(f) for f in env.findings],
                "packages": "unchecked" if env.missing is None else {"missing": list(env.missing)},
            }
            for env in rendered
        ],
        "skipped": [{"variant": s.variant.name, "reason": s.reason} for s in skipped],
        "schema": "checked" if schema_checked else "unchecked",
    }


def _render_text(
    args: argparse.Namespace, rendered: list[Any], skipped: list[Any], schema_checked: bool
) -> None:
    print(
        f"rendered {len(rendered)} environment{'' if len(rendered) == 1 else 's'} from"
        f" {args.manifest} (schema: {'valid' if schema_checked else 'unchecked'})"
    )
    for env in rendered:
        print(f"  {env.environment}  ->  {env.directory}/.flox/env/manifest.toml")
        for edit in env.plan.rewritten:
            print(f"      {edit.install_id}: pkg-path -> {edit.pkg_path}")
        if env.plan.removed:
            print(f"      removed (no system left): {', '.join(env.plan.removed)}")
        print(f"      options.systems = {json.dumps(list(env.plan.options_systems))}")
        for note in env.plan.notes:
            print(f"      {note}")
        for finding in env.findings:
            print(f"      {finding.severity}: [{finding.rule}] {finding.message}")
        if env.missing is None:
            print("      packages: unchecked (pass --packages with saved `flox search --json`)")
        elif env.missing:
            print(f"      packages: MISSING {', '.join(env.missing)}")
        else:
            print("      packages: all found")
    for skip in skipped:
        print(f"  skipped {skip.variant.name}: {skip.reason}")


# --- plan ---------------------------------------------------------------------------


def _plan(args: argparse.Namespace) -> int:
    from flox_isa.environments import manifests  # noqa: PLC0415

    catalog = load_catalog(args.catalog)
    owner, _ = manifests.parse_name(args.name)
    source = manifests.read_source(args.manifest)
    try:
        nodes = [node_info(n) for n in nodes_in(read_documents(args.nodes, "nodes file"))]
    except NodeDocumentError as exc:
        raise InputError(f"nodes file {str(args.nodes)!r}: {exc}") from None
    if _base_has_errors(args.manifest, source, catalog):
        return EXIT_FINDINGS
    workloads: tuple[Workload, ...] = (args.workload,) if args.workload else WORKLOADS
    out = Path(args.out)
    try:
        rendered, skipped = manifests.render(source, catalog, args.name, catalog.variants, out)
    except NothingToRenderError as exc:
        raise InputError(str(exc)) from None
    renderable = {env.plan.variant.name: env for env in rendered}
    needed = _needed(catalog, nodes, workloads)
    publish = [v for v in catalog.variants if v.name in needed and v.name in renderable]
    unrenderable = {s.variant.name: s.reason for s in skipped if s.variant.name in needed}
    commands = _commands(args, owner, publish, out)
    if args.output == "json":
        print(
            json.dumps(
                {
                    "workloads": list(workloads),
                    "variants": [
                        {
                            "variant": v.name,
                            "environment": variant_environment(args.name, v),
                            "nodes": sorted(needed[v.name]["nodes"]),
                            "workloads": sorted(needed[v.name]["workloads"]),
                        }
                        for v in publish
                    ],
                    "nodes": [
                        {
                            "name": node.name,
                            "best": {
                                w: getattr(choose(catalog, node.features, w).variant, "name", None)
                                for w in workloads
                            },
                        }
                        for node in nodes
                    ],
                    "notRenderable": unrenderable,
                    "commands": commands,
                },
                indent=2,
            )
        )
        return 0
    print(f"variants worth publishing for {', '.join(workloads)} on {len(nodes)} nodes:")
    for v in publish:
        used = needed[v.name]
        print(
            f"  {variant_environment(args.name, v)}: best on {len(used['nodes'])} node(s) for"
            f" {', '.join(sorted(used['workloads']))}"
        )
    for name, reason in unrenderable.items():
        variant = catalog.get(name)
        assert variant is not None
        print(
            f"  {variant_environment(args.name, variant)}: NOT RENDERABLE from {args.manifest}"
            f" ({reason}), yet the best variant of {len(needed[name]['nodes'])} node(s): add"
            f" {name} builds to the manifest, or keep these pods off them"
            f" ({names.VARIANTS_ANNOTATION})"
        )
    print("\nfirst publish (run these; flox-isa runs none):")
    for line in commands["publish"]:
        print(f"  {line}")
    print("\nupdates (after changing the base manifest):")
    for line in commands["update"]:
        print(f"  {line}")
    return 0


def _needed(
    catalog: Catalog, nodes: list[Any], workloads: tuple[Workload, ...]
) -> dict[str, dict[str, set[str]]]:
    needed: dict[str, dict[str, set[str]]] = {}
    for node in nodes:
        for workload in workloads:
            best = choose(catalog, node.features, workload).variant
            if best is not None:
                entry = needed.setdefault(best.name, {"nodes": set(), "workloads": set()})
                entry["nodes"].add(node.name)
                entry["workloads"].add(workload)
    return needed


def _commands(
    args: argparse.Namespace, owner: str, publish: list[Variant], out: Path
) -> dict[str, list[str]]:
    if not publish:
        return {"publish": [], "update": []}
    render = shlex.join(
        [
            "flox-isa", "environments", "render", "--manifest", args.manifest,
            "--name", args.name, "--variants", ",".join(v.name for v in publish),
            "--out", str(out),
        ]
    )  # fmt: skip
    first, update = [render], [render]
    for v in publish:
        environment = variant_environment(args.name, v)
        directory = out / environment.split("/", 1)[1]
        host = (
            f"  # from an {LINUX_SYSTEM[v.arch]} host"
            if LINUX_SYSTEM[v.arch] != "x86_64-linux"
            else ""
        )
        manifest = directory / ".flox" / "env" / "manifest.toml"
        first.append(shlex.join(["flox", "push", "-d", str(directory), "-o", owner]) + host)
        update.append(shlex.join(["flox", "edit", "-r", environment, "-f", str(manifest)]))
        update.append(shlex.join(["flox", "push", "-r", environment]) + host)
    return {"publish": first, "update": update}
