"""flox-isa: pick the CPU-ISA-specific Flox environment for every workload."""

__version__ = "0.1.0"
