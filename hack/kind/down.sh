#!/usr/bin/env bash
# Delete the kind cluster made by hack/kind/up.sh (and its kubeconfig file).
set -euo pipefail
CLUSTER="${KIND_CLUSTER:-flox-isa}"
KUBECONFIG_OUT="${KUBECONFIG_OUT:-${XDG_CACHE_HOME:-$HOME/.cache}/flox-isa/kind-${CLUSTER}.kubeconfig}"
command -v kind >/dev/null 2>&1 || { echo "down.sh: kind is not on PATH" >&2; exit 1; }
kind delete cluster --name "$CLUSTER"
rm -f "$KUBECONFIG_OUT"
