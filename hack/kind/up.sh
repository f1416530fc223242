#!/usr/bin/env bash
# flox-isa on kind, for users with Docker: create the cluster, optionally install
# Node Feature Discovery and cert-manager, build and load the image, label the
# nodes when NFD is absent, and `helm install` the chart.
#
#   hack/kind/up.sh                      # kind cluster "flox-isa", NFD, chart-generated TLS
#   WITH_CERT_MANAGER=1 hack/kind/up.sh  # cert-manager issues the webhook's certificate
#   WITH_NFD=0 hack/kind/up.sh           # label nodes from their /proc/cpuinfo instead
#
# Needs docker, kind, kubectl, helm (v3.8+ for OCI charts) and network access to the
# image and chart registries. Not exercised in this project's CI (no Docker engine
# there): CI uses the local control plane of `flox-isa devcluster` instead.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER="${KIND_CLUSTER:-flox-isa}"
IMAGE="${IMAGE:-flox-isa:dev}"
NAMESPACE="${NAMESPACE:-flox-isa}"
RELEASE="${RELEASE:-flox-isa}"
WITH_NFD="${WITH_NFD:-1}"
WITH_CERT_MANAGER="${WITH_CERT_MANAGER:-0}"
NFD_VERSION="${NFD_VERSION:-0.18.3}"
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.19.1}"
KUBECONFIG_OUT="${KUBECONFIG_OUT:-${XDG_CACHE_HOME:-$HOME/.cache}/flox-isa/kind-${CLUSTER}.kubeconfig}"

say() { printf '==> %s\n' "$*"; }
die() { printf 'up.sh: %s\n' "$*" >&2; exit 1; }
for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH"
done

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  say "kind cluster $CLUSTER exists: reusing it"
else
  say "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --config "$ROOT/hack/kind/cluster.yaml" --wait 180s
fi
mkdir -p "$(dirname "$KUBECONFIG_OUT")"
kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG_OUT"
export KUBECONFIG="$KUBECONFIG_OUT"

say "building $IMAGE"
docker build -t "$IMAGE" \
  --build-arg REVISION="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" \
  --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  "$ROOT"
say "loading $IMAGE into the cluster's nodes"
kind load docker-image "$IMAGE" --name "$CLUSTER"

if [[ "$WITH_NFD" == 1 ]]; then
  say "installing Node Feature Discovery $NFD_VERSION"
  helm upgrade --install nfd oci://registry.k8s.io/nfd/charts/node-feature-discovery \
    --version "$NFD_VERSION" --namespace node-feature-discovery --create-namespace --wait
  kubectl apply -f "$ROOT/manifests/examples/nfd/nodefeaturerule.yaml"
else
  # kind nodes are containers on one machine: their CPU is that machine's. Label each
  # node as NFD would, computed by flox-isa's own code inside the image just built.
  say "labelling nodes with NFD CPU labels (no NFD)"
  for node in $(kind get nodes --name "$CLUSTER"); do
    labels="$(docker exec "$node" cat /proc/cpuinfo | docker run --rm -i --entrypoint python "$IMAGE" -c '
import sys
from flox_isa.isa.cpuinfo import features_from_cpuinfo
from flox_isa.isa.nfd import nfd_labels
print(" ".join(f"{k}={v}" for k, v in nfd_labels(features_from_cpuinfo(sys.stdin.read())).items()))
')"
    # shellcheck disable=SC2086 # one argument per label
    kubectl label node "$node" --overwrite $labels >/dev/null
  done
fi

tls_values=()
if [[ "$WITH_CERT_MANAGER" == 1 ]]; then
  say "installing cert-manager $CERT_MANAGER_VERSION"
  helm upgrade --install cert-manager oci://quay.io/jetstack/charts/cert-manager \
    --version "$CERT_MANAGER_VERSION" --namespace cert-manager --create-namespace \
    --set crds.enabled=true --wait
  tls_values=(--set certManager.enabled=true)
fi

say "installing the flox-isa chart into namespace $NAMESPACE"
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace "$NAMESPACE" --overwrite \
  pod-security.kubernetes.io/enforce=restricted >/dev/null
helm upgrade --install "$RELEASE" "$ROOT/charts/flox-isa" --namespace "$NAMESPACE" \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
  --set image.pullPolicy=Never ${tls_values[@]+"${tls_values[@]}"} --wait --timeout 5m

say "ready"
cat <<MSG
  export KUBECONFIG=$KUBECONFIG_OUT
  kubectl get nodes -L kubernetes.io/arch,feature.node.kubernetes.io/cpu-cpuid.AVX512F
  kubectl apply -f $ROOT/manifests/examples/opted-in-deployment.yaml
  kubectl get pods -l app=embedder -L isa.flox.dev/variant
e2e tests against this cluster:
  FLOX_ISA_E2E_KUBECONFIG=$KUBECONFIG_OUT make e2e
remove it: hack/kind/down.sh
MSG
