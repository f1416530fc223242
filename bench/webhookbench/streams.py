"""The inputs: a fleet of N nodes, a realistic pod, AdmissionReviews, and the three streams."""

from __future__ import annotations

import json
import uuid
from typing import Any

from flox_isa.devcluster import fleet as fleets
from flox_isa.isa import names
from flox_isa.isa.catalog import default_catalog
from flox_isa.isa.fleet_index import FleetIndex, index_nodes
from flox_isa.isa.nodes import node_state

CATALOG = default_catalog()
REPLICASET_CONTROLLER_UID = "5d0c1f4e-2b8a-4e0f-9a57-0c3e1b7d9f21"
ENV = "yourorg/ticket-processor"
# The streams, in the order they are run and printed, and what each one is.
STREAMS = {
    "replicas": "one template, a new uid each (a ReplicaSet scaling)",
    "distinct": "every pod its own label (parsed each time; same flox-isa inputs)",
    "fresh": "every pod its own environment (parsed each time; decided once, then renamed)",
    "cold": "every pod its own CPU request (parsed and decided anew each time)",
}
# The streams the kopf server is loaded with too (its handler decides every time).
KOPF_STREAMS = ("fresh", "cold")


def fleet(count: int) -> FleetIndex:
    """`count` nodes cycling through the default fleet's nine instance types."""
    by_type: dict[str, dict[str, Any]] = {}
    for node in fleets.node_manifests(fleets.load_fleet(None)):
        by_type.setdefault(node["metadata"]["labels"][names.INSTANCE_TYPE_LABEL], node)
    templates = list(by_type.values())  # one per type: 10 nodes already show every type
    nodes = []
    for i in range(count):
        node = json.loads(json.dumps(templates[i % len(templates)]))
        node["metadata"]["name"] = node["metadata"]["labels"]["kubernetes.io/hostname"] = f"n{i}"
        node["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
        nodes.append(node)
    return index_nodes(node_state(n) for n in nodes)


def realistic_pod() -> dict[str, Any]:
    """A Deployment's pod as the API server sends it to a webhook (~7 KB)."""
    env = [{"name": f"SETTING_{i}", "value": f"value-{i}-" + "x" * 24} for i in range(40)]
    container = {
        "name": "worker",
        "image": "ghcr.io/flox/flox:1.3.0",
        "command": ["flox", "activate", "-r", ENV, "--", "python", "-m", "tickets.worker"],
        "env": env,
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}},
        "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/live", "port": 8080}, "periodSeconds": 10},
        "volumeMounts": [
            {"name": "kube-api-access-x7k2p", "readOnly": True,
             "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
            {"name": "cache", "mountPath": "/cache"},
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }  # fmt: skip
    sidecar = {**container, "name": "metrics", "env": env[:10], "command": ["exporter"]}
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "generateName": "ticket-worker-7d9c8b6f5d-",
            "namespace": "tickets",
            "labels": {
                "app": "ticket-worker",
                "pod-template-hash": "7d9c8b6f5d",
                names.INJECT_LABEL: "true",
                "app.kubernetes.io/part-of": "support",
            },
            "annotations": {
                names.ENVIRONMENT_ANNOTATION: ENV,
                names.WORKLOAD_ANNOTATION: "int8-inference",
                "kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "ticket-worker-7d9c8b6f5d",
                    "uid": str(uuid.uuid4()),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "containers": [container, sidecar],
            "volumes": [
                {"name": "cache", "emptyDir": {}},
                {
                    "name": "kube-api-access-x7k2p",
                    "projected": {
                        "defaultMode": 420,
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {
                                "configMap": {
                                    "name": "kube-root-ca.crt",
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                }
                            },
                            {
                                "downwardAPI": {
                                    "items": [
                                        {
                                            "path": "namespace",
                                            "fieldRef": {
                                                "apiVersion": "v1",
                                                "fieldPath": "metadata.namespace",
                                            },
                                        }
                                    ]
                                }
                            },
                        ],
                    },
                },
            ],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "schedulerName": "default-scheduler",
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {"phase": "Pending", "qosClass": "Burstable"},
    }


def review_body(pod: dict[str, Any]) -> bytes:
    """An AdmissionReview as the API server sends it, with a new uid."""
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "tickets",
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": REPLICASET_CONTROLLER_UID,  # one service account: the same every time
                "groups": ["system:serviceaccounts", "system:authenticated"],
            },
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }
    return json.dumps(review).encode()


def request_sets(count: int = 8192) -> dict[str, list[bytes]]:
    """The streams of AdmissionReviews (STREAMS), each with a new uid per request.

    replicas: one pod template (a ReplicaSet scaling up: the bodies differ in uid only);
    distinct: every pod has its own label value: each body is new and parsed, but the
      flox-isa inputs are shared, so the decision can come from memory;
    fresh: every pod has its own environment (each team's own): parsed every time; the
      decision made for the first is renamed for the others (`decision.template_key`);
    cold: every pod has its own CPU request (so its own thread count note): parsed and
      decided anew every time, the webhook's slowest path.
    A body comes back after `count` requests; the webhook keeps at most 4,096 answers.
    """
    distinct, fresh, cold = [], [], []
    for i in range(count):
        pod = realistic_pod()
        pod["metadata"]["labels"]["bench.flox.dev/pod"] = str(i)
        distinct.append(review_body(pod))
        pod["metadata"]["annotations"][names.ENVIRONMENT_ANNOTATION] = f"{ENV}-{i}"
        fresh.append(review_body(pod))
        pod = realistic_pod()
        pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] = f"{1000 + i}m"
        cold.append(review_body(pod))
    template = realistic_pod()
    replicas = [review_body(template) for _ in range(count)]
    return {"replicas": replicas, "distinct": distinct, "fresh": fresh, "cold": cold}
