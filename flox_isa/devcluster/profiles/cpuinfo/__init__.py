"""Package data: real /proc/cpuinfo texts, each citing its public source."""
