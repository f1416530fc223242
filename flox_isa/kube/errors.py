"""The one error the CLI's cluster reads raise (light: no client imported)."""

from __future__ import annotations


class ClusterError(Exception):
    """No kubeconfig, an unreachable server, a refusal: one line, as kubectl says it."""
