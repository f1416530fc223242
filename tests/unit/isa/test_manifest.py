"""isa.manifest: ISA tokens, the lint rules and the render plan (pure, no files)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from flox_isa.isa.catalog import (
    DEFAULT_CATALOG_DATA,
    CatalogError,
    catalog_from_data,
    default_catalog,
)
from flox_isa.isa.manifest import (
    Manifest,
    ManifestError,
    NothingToRenderError,
    isa_token,
    lint,
    plan_render,
    read_manifest,
)
from tests.unit.isa.test_best_node_preference import variant

CATALOG = default_catalog()


def manifest(install: dict[str, Any], **top: Any) -> Manifest:
    return read_manifest({"version": 1, "install": install, **top})


def rules(m: Manifest) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(f.severity, f.rule, f.install_ids) for f in lint(m, CATALOG)]


# --- catalog: packageToken ------------------------------------------------------------


def test_package_token_defaults_to_the_name_and_armv8_2_is_spelled_as_the_builds() -> None:
    assert {v.name: v.package_token for v in CATALOG.variants} == {
        "avx2": "avx2",
        "avx512": "avx512",
        "avx512bf16": "avx512bf16",
        "avx512vnni": "avx512vnni",
        "armv8.2": "armv8_2",
        "armv9": "armv9",
    }


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("cpu-avx2", "'cpu-avx2' is not a valid package token"),
        ("org/avx2", "'org/avx2' is not a valid package token"),
        ("avx512", "packageToken: 'avx512' is already variant 'avx2''s"),
    ],
)
def test_a_bad_package_token_names_the_variant_and_field(token: str, message: str) -> None:
    data = copy.deepcopy(DEFAULT_CATALOG_DATA)
    data["variants"][0]["packageToken"] = token
    with pytest.raises(CatalogError) as error:
        catalog_from_data(data)
    assert "variant 'avx2'" in str(error.value) and message in str(error.value)


# --- tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pkg_path", "token", "stem"),
    [
        ("flox/pytorch-python313-cpu-avx2", "avx2", "flox/pytorch-python313-cpu-"),
        (
            "acme/torchvision-python313-cpu-avx512vnni",
            "avx512vnni",
            "acme/torchvision-python313-cpu-",
        ),
        ("acme/pytorch-python313-cpu-avx512", "avx512", "acme/pytorch-python313-cpu-"),
        (
            "barstoolbluz/pytorch-python313-cpu-armv8_2",
            "armv8_2",
            "barstoolbluz/pytorch-python313-cpu-",
        ),
        # Only the last segment counts: an owner that looks like a token is kept.
        ("avx2-builds/pytorch-cpu-armv9", "armv9", "avx2-builds/pytorch-cpu-"),
    ],
)
def test_known_tokens_match_whole_at_the_end(pkg_path: str, token: str, stem: str) -> None:
    found = isa_token(pkg_path, CATALOG)
    assert found is not None and found.variant is not None
    assert (found.token, found.stem) == (token, stem)


@pytest.mark.parametrize(
    "pkg_path", ["python313", "flox/avx2-tools", "ripgrep", "flox/pytorch-avx2.1-docs", "avx2"]
)
def test_paths_without_a_trailing_token_are_not_isa_specific(pkg_path: str) -> None:
    assert isa_token(pkg_path, CATALOG) is None


@pytest.mark.parametrize(
    ("pkg_path", "token"),
    [
        ("flox/pytorch-python313-cpu-armv8.2", "armv8.2"),
        ("acme/pytorch-cpu-avx", "avx"),
        ("acme/pytorch-cpu-avx2x", "avx2x"),
    ],
)
def test_isa_looking_tokens_the_catalog_lacks_are_found(pkg_path: str, token: str) -> None:
    found = isa_token(pkg_path, CATALOG)
    assert found is not None and found.variant is None and found.token == token


# --- lint -----------------------------------------------------------------------------

X86 = ["x86_64-linux", "x86_64-darwin"]


def test_the_guides_mixed_variant_conflict_is_an_error_naming_both_ids() -> None:
    m = manifest(
        {
            "pytorch": {
                "pkg-path": "flox/pytorch-python313-cpu-avx2",
                "systems": X86,
                "priority": 2,
            },
            "torchvision": {
                "pkg-path": "flox/torchvision-python313-cpu-avx512",
                "systems": X86,
                "priority": 3,
            },
        }
    )
    findings = lint(m, CATALOG)
    assert [(f.rule, f.install_ids) for f in findings] == [
        ("mixed-isa", ("pytorch", "torchvision"))
    ]
    message = findings[0].message
    assert "flox/pytorch-python313-cpu-avx2" in message
    assert "flox/torchvision-python313-cpu-avx512" in message
    assert "installed together on x86_64-darwin, x86_64-linux" in message


def test_per_architecture_variants_on_disjoint_systems_are_clean() -> None:
    m = manifest(
        {
            "pytorch-x86": {"pkg-path": "flox/pytorch-python313-cpu-avx2", "systems": X86},
            "pytorch-arm": {
                "pkg-path": "flox/pytorch-python313-cpu-armv9",
                "systems": ["aarch64-linux", "aarch64-darwin"],
            },
        }
    )
    assert rules(m) == []


def test_an_isa_build_inheriting_every_system_is_on_the_wrong_architecture() -> None:
    m = manifest({"pytorch": {"pkg-path": "flox/pytorch-python313-cpu-avx2"}})
    findings = lint(m, CATALOG)
    assert [(f.rule, f.install_ids) for f in findings] == [("wrong-architecture", ("pytorch",))]
    assert "aarch64-darwin, aarch64-linux (inherited" in findings[0].message


def test_an_arm_build_listed_for_x86_is_on_the_wrong_architecture() -> None:
    m = manifest({"t": {"pkg-path": "a/torch-cpu-armv9", "systems": ["x86_64-linux"]}})
    assert rules(m) == [("error", "wrong-architecture", ("t",))]


def test_unknown_token_names_the_builds_spelling() -> None:
    m = manifest({"t": {"pkg-path": "flox/pytorch-cpu-armv8.2", "systems": ["aarch64-linux"]}})
    findings = lint(m, CATALOG)
    assert [f.rule for f in findings] == ["unknown-isa-token"]
    assert "variant 'armv8.2' spells it 'armv8_2'" in findings[0].message


def test_package_systems_must_be_within_options_systems() -> None:
    m = manifest(
        {"t": {"pkg-path": "a/t-avx2", "systems": ["x86_64-linux", "x86_64-darwin"]}},
        options={"systems": ["x86_64-linux"]},
    )
    findings = lint(m, CATALOG)
    assert [(f.rule, f.install_ids) for f in findings] == [("system-not-in-options", ("t",))]
    assert "x86_64-darwin not in options.systems" in findings[0].message


def test_unknown_system_names_are_errors() -> None:
    m = manifest(
        {"rg": {"pkg-path": "ripgrep", "systems": ["x86_64-linux", "amd64-linux"]}},
        options={"systems": ["x86_64-linux", "x86-64-linux"]},
    )
    found = lint(m, CATALOG)
    assert [f.rule for f in found] == ["unknown-system", "unknown-system"]
    assert "options.systems: unknown system 'x86-64-linux'" in found[0].message
    assert "install.rg.systems: unknown system 'amd64-linux'" in found[1].message


def test_thread_count_variables_are_warnings() -> None:
    m = manifest(
        {"t": {"pkg-path": "a/t-avx2", "systems": ["x86_64-linux"]}},
        vars={"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4", "MODEL": "x"},
    )
    assert rules(m) == [
        ("warning", "thread-variable", ()),
        ("warning", "thread-variable", ()),
    ]


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"install": {"t": {"pkg-path": 3}}}, "install.t.pkg-path"),
        ({"install": {"t": {"pkg-path": "x", "systems": "x86_64-linux"}}}, "install.t.systems"),
        ({"install": {"t": "flox/x"}}, "install.t"),
        ({"options": {"systems": [1]}}, "options.systems"),
    ],
)
def test_structure_errors_name_the_field(data: dict[str, Any], where: str) -> None:
    with pytest.raises(ManifestError, match=f"^{where}:"):
        read_manifest(data)


# --- render plan ------------------------------------------------------------------------

GUIDE_MULTI = {
    "pytorch-x86": {"pkg-path": "flox/pytorch-python313-cpu-avx2", "systems": X86},
    "pytorch-arm": {
        "pkg-path": "flox/pytorch-python313-cpu-armv9",
        "systems": ["aarch64-linux", "aarch64-darwin"],
    },
    "ripgrep": {"pkg-path": "ripgrep"},
}


def test_render_rewrites_the_token_and_narrows_systems() -> None:
    plan = plan_render(manifest(GUIDE_MULTI), CATALOG, variant("avx512vnni"))
    assert plan.options_systems == ("x86_64-linux",)
    edits = {e.install_id: e for e in plan.edits}
    assert edits["pytorch-x86"].pkg_path == "flox/pytorch-python313-cpu-avx512vnni"
    assert edits["pytorch-x86"].systems == ("x86_64-linux",)
    assert plan.removed == ("pytorch-arm",)
    assert edits["ripgrep"].pkg_path is None and edits["ripgrep"].systems is None
    assert not plan.add_version


def test_render_for_arm_spells_the_token_as_the_catalog_says() -> None:
    plan = plan_render(manifest(GUIDE_MULTI), CATALOG, variant("armv8.2"))
    edits = {e.install_id: e for e in plan.edits}
    assert edits["pytorch-arm"].pkg_path == "flox/pytorch-python313-cpu-armv8_2"
    assert plan.removed == ("pytorch-x86",)
    assert plan.options_systems == ("aarch64-linux",)


def test_keep_darwin_keeps_the_variants_darwin_system() -> None:
    plan = plan_render(manifest(GUIDE_MULTI), CATALOG, variant("avx2"), keep_darwin=True)
    assert plan.options_systems == ("x86_64-linux", "x86_64-darwin")
    edits = {e.install_id: e for e in plan.edits}
    assert edits["pytorch-x86"].systems == ("x86_64-linux", "x86_64-darwin")
    assert edits["pytorch-x86"].pkg_path is None  # already avx2


def test_a_shorter_token_is_rewritten_whole() -> None:
    m = manifest({"t": {"pkg-path": "a/t-cpu-avx512vnni", "systems": ["x86_64-linux"]}})
    edit = plan_render(m, CATALOG, variant("avx512")).edits[0]
    assert edit.pkg_path == "a/t-cpu-avx512"


def test_a_manifest_without_version_gets_one_and_says_so() -> None:
    m = read_manifest({"install": {"t": {"pkg-path": "a/t-avx2", "systems": ["x86_64-linux"]}}})
    plan = plan_render(m, CATALOG, variant("avx2"))
    assert plan.add_version and plan.notes == ("added `version = 1` (the manifest had no version)",)


def test_nothing_to_render_without_isa_packages_or_without_the_arch() -> None:
    with pytest.raises(NothingToRenderError, match="no ISA-specific package"):
        plan_render(manifest({"rg": {"pkg-path": "ripgrep"}}), CATALOG, variant("avx2"))
    x86_only = manifest({"t": {"pkg-path": "a/t-avx2", "systems": X86}})
    with pytest.raises(NothingToRenderError, match="for arm64 is left on aarch64-linux"):
        plan_render(x86_only, CATALOG, variant("armv9"))
