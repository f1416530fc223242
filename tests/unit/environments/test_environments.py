"""`flox-isa environments render|lint|plan` on files: golden renders, Flox's schema, bad input.

The base manifests in tests/data/flox/ are the user's guide's two (copied unchanged) and one in
the naming of the public per-ISA builds (barstoolbluz/build-pytorch; see the file's header).
The expected renders are checked in under tests/data/flox/expected/.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from flox_isa.cli import main
from flox_isa.environments.manifests import GITIGNORE, MARKER
from flox_isa.isa.catalog import DEFAULT_CATALOG_DATA, catalog_from_data, catalog_to_yaml

DATA = Path(__file__).resolve().parents[2] / "data" / "flox"
EXPECTED = DATA / "expected"
# Flox's own JSON Schema, kept unmodified as test data (tests/data/flox/SCHEMA-SOURCE.md).
SCHEMA = Path(__file__).resolve().parent.parent.parent / "data" / "flox" / "manifest-v1.schema.json"
MANIFESTS = ("guide-single-variant", "guide-multi-variant", "build-pytorch")
NODES = Path(__file__).resolve().parents[2] / "data" / "pods" / "nodes-default-fleet.yaml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def render(
    capsys: pytest.CaptureFixture[str], manifest: Path, out: Path, *extra: str
) -> tuple[int, str, str]:
    return run(
        capsys,
        "environments", "render", "--manifest", str(manifest), "--name", "acme/tickets",
        "--out", str(out), *extra,
    )  # fmt: skip


def run_plan(
    capsys: pytest.CaptureFixture[str], manifest: str, *extra: str
) -> tuple[int, str, str]:
    """`environments plan` of tests/data/flox/`manifest`.toml for the default fleet."""
    return run(
        capsys, "environments", "plan", "--manifest", str(DATA / f"{manifest}.toml"),
        "--name", "acme/tickets", "--nodes", str(NODES), *extra,
    )  # fmt: skip


def mixed_manifest(tmp_path: Path, extra: str = "") -> Path:
    """The guide's single-variant manifest with torchvision's avx512 build beside avx2 ones."""
    mixed = tmp_path / "manifest.toml"
    mixed.write_text(
        (DATA / "guide-single-variant.toml")
        .read_text()
        .replace("torchvision-python313-cpu-avx2", "torchvision-python313-cpu-avx512")
        + extra
    )
    return mixed


def flox_schema() -> dict[str, Any]:
    assert SCHEMA.is_file(), f"Flox's manifest schema is expected at {SCHEMA} (tests/data/flox)"
    schema: dict[str, Any] = json.loads(SCHEMA.read_text())
    return schema


# --- render: golden files, Flox's schema, what stays unchanged ---------------------------


@pytest.mark.parametrize("name", MANIFESTS)
def test_render_writes_the_golden_environments(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = render(capsys, DATA / f"{name}.toml", tmp_path)
    assert (code, err) == (0, "")
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(p.name for p in (EXPECTED / name).iterdir())
    for directory in written:
        dot_flox = tmp_path / directory / ".flox"
        expected = EXPECTED / name / directory
        assert (dot_flox / "env" / "manifest.toml").read_text() == (
            expected / "manifest.toml"
        ).read_text(), directory
        assert json.loads((dot_flox / "env.json").read_text()) == json.loads(
            (expected / "env.json").read_text()
        )
        assert (dot_flox / ".gitignore").read_text() == GITIGNORE
        assert json.loads((tmp_path / directory / MARKER).read_text())["environment"] == (
            f"acme/{directory}"
        )


@pytest.mark.parametrize(
    "golden",
    sorted(EXPECTED.glob("*/*/manifest.toml")),
    ids=lambda p: f"{p.parts[-3]}/{p.parts[-2]}",
)
def test_every_golden_render_is_valid_for_flox_and_clean_for_lint(
    golden: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tomllib.loads(golden.read_text())
    jsonschema.validate(data, flox_schema())
    code, out, _ = run(
        capsys, "environments", "lint", "--manifest", str(golden), "--schema", str(SCHEMA)
    )
    assert (code, out.strip()) == (0, f"{golden}: clean (schema: checked)")


def test_the_guides_manifests_are_not_valid_for_flox_until_rendered() -> None:
    for name in ("guide-single-variant", "guide-multi-variant"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(tomllib.loads((DATA / f"{name}.toml").read_text()), flox_schema())


def _strip_owned(data: dict[str, Any]) -> dict[str, Any]:
    """The manifest without what render owns: options.systems, ISA entries' pkg-path/systems."""
    data = json.loads(json.dumps(data))
    data.get("options", {}).pop("systems", None)
    for descriptor in data.get("install", {}).values():
        if descriptor["pkg-path"].startswith("barstoolbluz/"):
            descriptor.pop("pkg-path")
            descriptor.pop("systems")
    return data


def test_render_changes_nothing_it_does_not_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert render(capsys, DATA / "build-pytorch.toml", tmp_path)[0] == 0
    base = tomllib.loads((DATA / "build-pytorch.toml").read_text())
    avx512 = tomllib.loads((tmp_path / "tickets-avx512" / ".flox/env/manifest.toml").read_text())
    # The arm entries are gone (no system left); everything else is the base's.
    expected = _strip_owned(base)
    for install_id in ("pytorch-arm", "torchvision-arm"):
        del expected["install"][install_id]
    assert _strip_owned(avx512) == expected
    text = (tmp_path / "tickets-avx512" / ".flox/env/manifest.toml").read_text()
    for comment in ("# The ISA-specific builds", "# pinned with the builds"):
        assert comment in text


def test_render_text_says_what_it_did(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = render(capsys, DATA / "guide-single-variant.toml", tmp_path)
    assert code == 0
    assert out.startswith(
        f"rendered 4 environments from {DATA / 'guide-single-variant.toml'} (schema: unchecked)\n"
    )
    assert "      pytorch: pkg-path -> flox/pytorch-python313-cpu-avx512vnni\n" in out
    assert "      added `version = 1` (the manifest had no version)\n" in out
    assert "      packages: unchecked (pass --packages" in out
    assert "  skipped armv9: no ISA-specific package for arm64 is left on aarch64-linux\n" in out


def test_render_json_lists_environments_and_skips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = render(
        capsys, DATA / "guide-multi-variant.toml", tmp_path, "--variants", "avx2,armv8.2",
        "--output", "json", "--schema", str(SCHEMA),
    )  # fmt: skip
    assert code == 0
    result = json.loads(out)
    assert result["schema"] == "checked" and result["skipped"] == []
    by_variant = {e["variant"]: e for e in result["environments"]}
    assert by_variant["armv8.2"]["environment"] == "acme/tickets-armv8.2"
    assert by_variant["armv8.2"]["rewritten"] == {
        "pytorch-arm": "flox/pytorch-python313-cpu-armv8_2",
        "torchvision-arm": "flox/torchvision-python313-cpu-armv8_2",
    }
    assert by_variant["armv8.2"]["removed"] == ["pytorch-x86", "torchvision-x86"]
    assert by_variant["avx2"]["optionsSystems"] == ["x86_64-linux"]
    assert by_variant["avx2"]["packages"] == "unchecked"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tickets-armv8.2", "tickets-avx2"]


def test_keep_darwin_keeps_the_darwin_system(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--variants", "avx512", "--keep-darwin", "--schema", str(SCHEMA))
    assert render(capsys, DATA / "guide-single-variant.toml", tmp_path, *args)[0] == 0
    data = tomllib.loads((tmp_path / "tickets-avx512/.flox/env/manifest.toml").read_text())
    assert data["options"]["systems"] == ["x86_64-linux", "x86_64-darwin"]
    assert data["install"]["pytorch"]["systems"] == ["x86_64-linux", "x86_64-darwin"]


def test_packages_file_reports_missing_builds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    found = [
        {"pkg_path": f"flox/{lib}-python313-cpu-{token}", "version": "2.8.0"}
        for lib in ("pytorch", "torchvision", "torchaudio")
        for token in ("avx2", "avx512", "avx512vnni")
    ]  # avx512bf16 is missing
    search = tmp_path / "search.json"
    search.write_text(json.dumps(found))
    code, out, _ = render(
        capsys, DATA / "guide-single-variant.toml", tmp_path / "out", "--packages", str(search),
        "--output", "json",
    )  # fmt: skip
    assert code == 0
    packages = {e["variant"]: e["packages"] for e in json.loads(out)["environments"]}
    assert packages == {
        "avx2": {"missing": []},
        "avx512": {"missing": []},
        "avx512bf16": {
            "missing": [
                "flox/pytorch-python313-cpu-avx512bf16",
                "flox/torchvision-python313-cpu-avx512bf16",
                "flox/torchaudio-python313-cpu-avx512bf16",
            ]
        },
        "avx512vnni": {"missing": []},
    }


def test_render_again_into_its_own_directory_keeps_a_pushed_env_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        render(capsys, DATA / "guide-single-variant.toml", tmp_path, "--variants", "avx2")[0] == 0
    )
    env_json = tmp_path / "tickets-avx2" / ".flox" / "env.json"
    pushed = {"name": "tickets-avx2", "owner": "acme", "version": 1}
    env_json.write_text(json.dumps(pushed))
    assert render(capsys, DATA / "guide-multi-variant.toml", tmp_path, "--variants", "avx2")[0] == 0
    assert json.loads(env_json.read_text()) == pushed
    text = (tmp_path / "tickets-avx2" / ".flox/env/manifest.toml").read_text()
    assert "pytorch-x86" in text


def test_environment_names_follow_the_catalogs_suffix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(json.dumps(DEFAULT_CATALOG_DATA))
    data["variants"][0]["environmentSuffix"] = "-isa-avx2"
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(catalog_to_yaml(catalog_from_data(data)))
    code, out, _ = render(
        capsys, DATA / "guide-single-variant.toml", tmp_path / "out", "--variants", "avx2",
        "--catalog", str(catalog), "--output", "json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out)["environments"][0]["environment"] == "acme/tickets-isa-avx2"
    env_json = tmp_path / "out" / "tickets-isa-avx2" / ".flox" / "env.json"
    assert json.loads(env_json.read_text())["name"] == "tickets-isa-avx2"


# --- render: bad input ------------------------------------------------------------------


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("flox-isa: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def test_render_refuses_an_unreadable_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = render(capsys, tmp_path / "missing.toml", tmp_path / "out")
    _one_line_error(code, err, "cannot read manifest", "missing.toml")
    assert not (tmp_path / "out").exists()


def test_render_refuses_a_manifest_that_is_not_toml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "manifest.toml"
    bad.write_text("[install\npytorch.pkg-path = 'x'\n")
    code, _, err = render(capsys, bad, tmp_path / "out")
    _one_line_error(code, err, "manifest.toml", "is not valid TOML", "line 1")
    assert not (tmp_path / "out").exists()


def test_render_refuses_an_unknown_variant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = render(
        capsys, DATA / "guide-single-variant.toml", tmp_path, "--variants", "avx3"
    )
    _one_line_error(code, err, "--variants: unknown variant 'avx3'", "avx2, avx512")


@pytest.mark.parametrize("name", ["tickets", "acme/", "acme/tickets/x", "acme/tic kets"])
def test_render_refuses_a_name_that_is_not_owner_slash_name(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "environments", "render", "--manifest", str(DATA / "build-pytorch.toml"),
        "--name", name, "--out", str(tmp_path / "out"),
    )  # fmt: skip
    _one_line_error(code, err, f"--name {name!r} is not an environment reference", "owner/name")
    assert not (tmp_path / "out").exists()


def test_render_refuses_a_directory_that_is_not_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    theirs = tmp_path / "tickets-avx512"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    code, _, err = render(capsys, DATA / "guide-single-variant.toml", tmp_path)
    _one_line_error(
        code, err, str(theirs), "not written by `flox-isa environments render`", "--force"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tickets-avx512"]  # nothing else
    (theirs / ".flox").mkdir()
    (theirs / ".flox" / "env.json").write_text('{"name": "notes", "version": 1}')
    assert render(capsys, DATA / "guide-single-variant.toml", tmp_path, "--force")[0] == 0
    assert (theirs / ".flox" / "env" / "manifest.toml").is_file()
    assert json.loads((theirs / ".flox" / "env.json").read_text())["name"] == "tickets-avx512"


def test_render_says_nothing_to_render_without_isa_packages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "manifest.toml"
    plain.write_text('version = 1\n[install]\nripgrep.pkg-path = "ripgrep"\n')
    code, _, err = render(capsys, plain, tmp_path / "out")
    _one_line_error(code, err, "has no ISA-specific package", "nothing to render")
    assert not (tmp_path / "out").exists()


def test_render_refuses_a_named_variant_the_manifest_has_no_build_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--variants", "avx2,armv9")
    code, _, err = render(capsys, DATA / "guide-single-variant.toml", tmp_path / "out", *args)
    _one_line_error(code, err, "--variants: armv9: no ISA-specific package for arm64")
    assert not (tmp_path / "out").exists()


def test_render_refuses_a_base_manifest_with_lint_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = render(capsys, mixed_manifest(tmp_path), tmp_path / "out")
    assert code == 1
    assert "error: [mixed-isa]" in out
    assert "torchvision (flox/torchvision-python313-cpu-avx512)" in out
    assert "nothing done" in err
    assert not (tmp_path / "out").exists()


def test_render_refuses_a_bad_packages_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    search = tmp_path / "search.json"
    search.write_text('{"pkg_path": "x"}')
    code, _, err = render(
        capsys, DATA / "build-pytorch.toml", tmp_path / "out", "--packages", str(search)
    )
    _one_line_error(code, err, "search.json", "expected a JSON array")


# --- lint -------------------------------------------------------------------------------


def lint(capsys: pytest.CaptureFixture[str], manifest: Path, *extra: str) -> tuple[int, str, str]:
    return run(capsys, "environments", "lint", "--manifest", str(manifest), *extra)


def test_lint_of_the_guides_manifests(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("guide-single-variant", "guide-multi-variant"):
        path = DATA / f"{name}.toml"
        assert lint(capsys, path) == (0, f"{path}: clean (schema: unchecked)\n", "")
        code, out, _ = lint(capsys, path, "--schema", str(SCHEMA))
        assert (code, out) == (
            1,
            f"{path}: error: [schema] version: missing: Flox needs `version = 1`"
            " (or `schema-version`)\n",
        )


def test_lint_finds_the_guides_mixed_variants(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mixed = mixed_manifest(tmp_path, '\n[vars]\nOMP_NUM_THREADS = "8"\n')
    code, out, _ = lint(capsys, mixed, "--output", "json")
    assert code == 1
    findings = json.loads(out)["findings"]
    assert [(f["severity"], f["rule"], f["installIds"]) for f in findings] == [
        ("error", "mixed-isa", ["pytorch", "torchvision", "torchaudio"]),
        ("warning", "thread-variable", []),
    ]


def test_lint_names_the_schema_field_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "manifest.toml"
    bad.write_text('version = 1\n[install]\nt.pkg-path = "a/t-avx2"\nt.priority = "high"\n')
    code, out, _ = lint(capsys, bad, "--schema", str(SCHEMA))
    assert code == 1
    assert "error: [schema] install.t.priority: 'high' is not of type 'integer', 'null'" in out


def test_lint_reports_a_structure_error_without_a_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "manifest.toml"
    bad.write_text('version = 1\n[install]\nt.pkg-path = "a/t-avx2"\nt.systems = "x86_64-linux"\n')
    code, out, _ = lint(capsys, bad)
    assert code == 1
    assert "error: [schema] install.t.systems: must be an array of system names" in out


def test_lint_exits_2_on_unreadable_or_non_toml_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = lint(capsys, tmp_path / "missing.toml")
    _one_line_error(code, err, "cannot read manifest")
    bad = tmp_path / "bad.toml"
    bad.write_text("version = = 1\n")
    code, _, err = lint(capsys, bad)
    _one_line_error(code, err, "is not valid TOML")
    broken_schema = tmp_path / "schema.json"
    broken_schema.write_text("{")
    code, _, err = lint(capsys, DATA / "build-pytorch.toml", "--schema", str(broken_schema))
    _one_line_error(code, err, "schema", "is not valid JSON")


# --- plan -------------------------------------------------------------------------------


def test_plan_names_the_variants_the_fleet_needs_and_the_push_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "envs"
    code, out, _ = run_plan(
        capsys, "guide-single-variant", "--workload", "int8-inference", "--out", str(out_dir),
        "--output", "json",
    )  # fmt: skip
    assert code == 0
    plan = json.loads(out)
    # The default fleet's best int8 builds (as `explain nodes` decides): avx2 on m4,
    # avx512 on c5/m5, avx512vnni on m5n/m6i/m7i, armv8.2 on c6g, armv9 on c7g/c8g.
    assert [v["variant"] for v in plan["variants"]] == ["avx2", "avx512", "avx512vnni"]
    best = {n["name"]: n["best"]["int8-inference"] for n in plan["nodes"]}
    assert (best["m4-xlarge-0"], best["c5-xlarge-0"], best["m6i-xlarge-1"]) == (
        "avx2", "avx512", "avx512vnni",
    )  # fmt: skip
    assert (best["c6g-xlarge-0"], best["c8g-xlarge-1"]) == ("armv8.2", "armv9")
    assert set(plan["notRenderable"]) == {"armv8.2", "armv9"}
    assert plan["commands"]["publish"][1:] == [
        f"flox push -d {out_dir}/tickets-{v} -o acme" for v in ("avx2", "avx512", "avx512vnni")
    ]
    assert plan["commands"]["update"][1:3] == [
        f"flox edit -r acme/tickets-avx2 -f {out_dir}/tickets-avx2/.flox/env/manifest.toml",
        "flox push -r acme/tickets-avx2",
    ]
    assert "--variants avx2,avx512,avx512vnni" in plan["commands"]["publish"][0]
    assert not out_dir.exists()  # plan prints; it writes nothing


def test_plan_says_arm_builds_push_from_an_arm_host(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_plan(capsys, "guide-multi-variant", "--out", "envs")
    assert code == 0
    assert "  flox push -d envs/tickets-armv9 -o acme  # from an aarch64-linux host\n" in out
    assert "  flox push -d envs/tickets-avx512bf16 -o acme\n" in out  # bf16-training on m7i


# --- help -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["render", "lint", "plan"])
def test_each_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["environments", command, "--help"])
    assert exit_.value.code == 0
    assert "--manifest" in capsys.readouterr().out


def test_render_reports_an_output_directory_it_cannot_create(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = render(capsys, DATA / "build-pytorch.toml", blocker / "out")
    _one_line_error(code, err, "cannot write", str(blocker / "out"))


@pytest.mark.parametrize(
    "text",
    [
        # top-level dotted keys, an inline table
        'version = 1\noptions.systems = ["x86_64-linux", "aarch64-linux"]\n'
        'install.t.pkg-path = "a/t-avx2"\ninstall.t.systems = ["x86_64-linux"]\n'
        'install.arm = { pkg-path = "a/t-armv9", systems = ["aarch64-linux"] }\n',
        # [options.allow] with no [options] table of its own
        'version = 1\n[install]\nt.pkg-path = "a/t-avx2"\nt.systems = ["x86_64-linux"]\n'
        "[options.allow]\nunfree = true\n",
    ],
    ids=["dotted", "options-subtable"],
)
def test_render_edits_any_toml_layout(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "manifest.toml"
    base.write_text(text)
    args = ("--variants", "avx512", "--schema", str(SCHEMA))
    assert render(capsys, base, tmp_path / "out", *args)[0] == 0
    written = (tmp_path / "out" / "tickets-avx512" / ".flox/env/manifest.toml").read_text()
    data = tomllib.loads(written)
    expected = tomllib.loads(text)
    expected["options"]["systems"] = ["x86_64-linux"]
    expected["install"]["t"]["pkg-path"] = "a/t-avx512"
    expected["install"].pop("arm", None)
    assert data == expected


def test_plan_warns_of_fleet_variants_the_manifest_cannot_render(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_plan(capsys, "guide-single-variant", "--workload", "fp32-inference")
    assert code == 0
    assert "  acme/tickets-armv9: NOT RENDERABLE from" in out
    assert "yet the best variant of 2 node(s): add armv9 builds to the manifest" in out  # c8g
    assert "flox push -d environments/tickets-armv9" not in out
