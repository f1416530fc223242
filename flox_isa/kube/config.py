"""Kubernetes client configuration: a kubeconfig file, else in-cluster, else the default."""

from __future__ import annotations

import os
from typing import cast

from kubernetes import client, config

# The kubernetes package is only partly typed: its config loaders are untyped.


def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """An ApiClient for `kubeconfig`, the pod's service account, or $KUBECONFIG/~/.kube."""
    if kubeconfig:
        return cast(client.ApiClient, config.new_client_from_config(config_file=kubeconfig))  # type: ignore[no-untyped-call]
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return client.ApiClient(configuration)
    return cast(client.ApiClient, config.new_client_from_config())  # type: ignore[no-untyped-call]
