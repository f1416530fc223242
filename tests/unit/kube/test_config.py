"""kubectl's kubeconfig order: --kubeconfig, $KUBECONFIG, ~/.kube/config, in-cluster."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flox_isa.kube.config import Source, resolve
from flox_isa.kube.errors import ClusterError
from flox_isa.kube.reads import server_error
from flox_isa.kube.rest import ApiError


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    made = {}
    for name in ("flag", "env", "home/.kube/config"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("apiVersion: v1\nkind: Config\n")
        made[name] = path
    return made


def test_the_flag_comes_first(files: dict[str, Path], tmp_path: Path) -> None:
    environ = {"KUBECONFIG": str(files["env"]), "KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    assert resolve(str(files["flag"]), environ, tmp_path / "home") == Source(
        str(files["flag"]), "--kubeconfig"
    )


def test_then_kubeconfig_a_list_whose_missing_files_are_skipped(
    files: dict[str, Path], tmp_path: Path
) -> None:
    listed = f"{tmp_path / 'missing'}{os.pathsep}{files['env']}"
    environ = {"KUBECONFIG": listed, "KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    assert resolve(None, environ, tmp_path / "home") == Source(listed, "KUBECONFIG")


def test_then_home_then_in_cluster(files: dict[str, Path], tmp_path: Path) -> None:
    environ = {"KUBECONFIG": str(tmp_path / "missing"), "KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    home = resolve(None, environ, tmp_path / "home")
    assert home == Source(str(files["home/.kube/config"]), "~/.kube/config")
    assert resolve(None, environ, tmp_path / "nobody") == Source(None, "in-cluster")


def test_nothing_found_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match=r"^no kubeconfig: KUBECONFIG='/nope' names no"):
        resolve(None, {"KUBECONFIG": "/nope"}, tmp_path)
    with pytest.raises(ClusterError, match=r"^no kubeconfig: give --kubeconfig FILE"):
        resolve(None, {}, tmp_path)
    with pytest.raises(ClusterError, match=r"^--kubeconfig '/nope': no such file$"):
        resolve("/nope", {}, tmp_path)


def test_server_errors_read_as_kubectls() -> None:
    forbidden = ApiError(403, "Forbidden", 'nodes is forbidden: User "u" cannot list resource')
    assert server_error(forbidden) == (
        'Error from server (Forbidden): nodes is forbidden: User "u" cannot list resource'
    )
    missing = ApiError(404, "Not Found", 'deployments.apps "x" not found')
    assert server_error(missing) == 'Error from server (NotFound): deployments.apps "x" not found'
    assert server_error(ApiError(401, "Unauthorized", "Unauthorized")) == (
        "You must be logged in to the server (Unauthorized)"
    )
    assert server_error(ApiError(418, "I'm a teapot", "two\nlines")) == (
        "Error from server (I'mateapot): two lines"
    )
