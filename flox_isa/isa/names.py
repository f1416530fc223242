"""Names users see (the contract of ../shared/design.md): keep them stable."""

from typing import Final

GROUP: Final = "isa.flox.dev"

# Opt-in and inputs.
INJECT_LABEL: Final = "isa.flox.dev/inject"
ENVIRONMENT_ANNOTATION: Final = "flox.dev/environment"
WORKLOAD_ANNOTATION: Final = "isa.flox.dev/workload"
VARIANTS_ANNOTATION: Final = "isa.flox.dev/variants"
GENERATIONS_ANNOTATION: Final = "isa.flox.dev/generations"
# "off", or a thread count: OMP/MKL/OPENBLAS_NUM_THREADS of each container (isa.threads).
THREADS_ANNOTATION: Final = "isa.flox.dev/threads"

# Outputs.
VARIANT_LABEL: Final = "isa.flox.dev/variant"
BASE_ENVIRONMENT_ANNOTATION: Final = "isa.flox.dev/base-environment"
REASON_ANNOTATION: Final = "isa.flox.dev/reason"

# Operator bookkeeping.
TICKETWORKER_LABEL: Final = "isa.flox.dev/ticketworker"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "flox-isa"

# Node labels written by Node Feature Discovery and the kubelet.
NFD_CPUID_PREFIX: Final = "feature.node.kubernetes.io/cpu-cpuid."
ARCH_LABEL: Final = "kubernetes.io/arch"
INSTANCE_TYPE_LABEL: Final = "node.kubernetes.io/instance-type"


def cpuid_label(flag: str) -> str:
    """The NFD node label that says a CPU has `flag`."""
    return NFD_CPUID_PREFIX + flag


# Late binding (capacity-aware placement): the webhook gates, the placement controller
# picks the variant with room and removes the gate.
PLACEMENT_GATE: Final = "isa.flox.dev/placement"
# Pod opt-out of late binding: "admission" pins at admission as before.
PLACEMENT_ANNOTATION: Final = "isa.flox.dev/placement"
PLACEMENT_ADMISSION: Final = "admission"
WHEN_FULL_ANNOTATION: Final = "isa.flox.dev/when-full"
SPILLED_FROM_ANNOTATION: Final = "isa.flox.dev/spilled-from"
# The nodeSelector keys the placement controller added (comma-separated; may be empty):
# marks a pod it placed, and lets recovery see the selector the pod's template gave it.
ADDED_SELECTOR_ANNOTATION: Final = "isa.flox.dev/added-node-selector"
PLACEMENT_LEASE: Final = "flox-isa-placement"
PLACEMENT_PROTOCOL_ANNOTATION: Final = "isa.flox.dev/placement-protocol"
PLACEMENT_PROTOCOL: Final = "1"
POD_DELETION_COST_ANNOTATION: Final = "controller.kubernetes.io/pod-deletion-cost"
