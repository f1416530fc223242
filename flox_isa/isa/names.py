"""Names users see (the contract of ../shared/design.md): keep them stable."""

from typing import Final

GROUP: Final = "isa.flox.dev"

# Opt-in and inputs.
INJECT_LABEL: Final = "isa.flox.dev/inject"
ENVIRONMENT_ANNOTATION: Final = "flox.dev/environment"
WORKLOAD_ANNOTATION: Final = "isa.flox.dev/workload"
VARIANTS_ANNOTATION: Final = "isa.flox.dev/variants"

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
NFD_CPU_MODEL_PREFIX: Final = "feature.node.kubernetes.io/cpu-model."
ARCH_LABEL: Final = "kubernetes.io/arch"
INSTANCE_TYPE_LABEL: Final = "node.kubernetes.io/instance-type"


def cpuid_label(flag: str) -> str:
    """The NFD node label that says a CPU has `flag`."""
    return NFD_CPUID_PREFIX + flag
