"""Kubernetes client configuration, found the way kubectl finds it.

`--kubeconfig`, else `$KUBECONFIG` (a list of files, merged), else `~/.kube/config`,
else the pod's service account (in-cluster); `--context` picks a context of the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from flox_isa.kube.errors import ClusterError

# The kubernetes package is only partly typed: its config loaders are untyped.

IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True, slots=True)
class Source:
    """Where the client configuration comes from: kubeconfig file(s), or in-cluster (None)."""

    kubeconfig: str | None
    origin: str  # "--kubeconfig", "KUBECONFIG", "~/.kube/config" or "in-cluster"


def resolve(
    kubeconfig: str | None,
    environ: Mapping[str, str] = os.environ,
    home: Path | None = None,
) -> Source:
    """kubectl's order: the flag, $KUBECONFIG, ~/.kube/config, then in-cluster. Pure but stat."""
    if kubeconfig:
        if not Path(kubeconfig).expanduser().is_file():
            raise ClusterError(f"--kubeconfig {kubeconfig!r}: no such file")
        return Source(kubeconfig, "--kubeconfig")
    listed = environ.get("KUBECONFIG", "")
    if any(p and Path(p).expanduser().is_file() for p in listed.split(os.pathsep)):
        return Source(listed, "KUBECONFIG")
    default = (home or Path.home()) / ".kube" / "config"
    if default.is_file():
        return Source(str(default), "~/.kube/config")
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return Source(None, "in-cluster")
    where = f"KUBECONFIG={listed!r} names no existing file; " if listed else ""
    raise ClusterError(
        f"no kubeconfig: {where}give --kubeconfig FILE, set KUBECONFIG or create"
        " ~/.kube/config (and this is not a pod with a service account)"
    )


def api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """An ApiClient for the kubeconfig kubectl would use (see `resolve`)."""
    source = resolve(kubeconfig)
    if source.kubeconfig is None:
        if context:
            raise ClusterError(f"context {context!r}: no kubeconfig (running in-cluster)")
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return client.ApiClient(configuration)
    try:
        return cast(
            client.ApiClient,
            config.new_client_from_config(config_file=source.kubeconfig, context=context),  # type: ignore[no-untyped-call]
        )
    except ConfigException as exc:
        raise ClusterError(f"{source.origin} {source.kubeconfig}: {_one_line(exc)}") from None


def default_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace of the context in use (kubectl's default for -n), else "default"."""
    source = resolve(kubeconfig)
    if source.kubeconfig is None:
        try:
            return IN_CLUSTER_NAMESPACE_FILE.read_text().strip() or "default"
        except OSError:
            return "default"
    try:
        contexts, current = config.list_kube_config_contexts(config_file=source.kubeconfig)  # type: ignore[no-untyped-call]
    except ConfigException as exc:
        raise ClusterError(f"{source.origin} {source.kubeconfig}: {_one_line(exc)}") from None
    chosen: Any = current
    if context:
        chosen = next((c for c in contexts or [] if c.get("name") == context), None)
        if chosen is None:
            raise ClusterError(f"{source.origin} {source.kubeconfig}: no context {context!r}")
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else "default"


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
