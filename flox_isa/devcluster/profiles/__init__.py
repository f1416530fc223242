"""Package data: instance profiles, the cited /proc/cpuinfo they are built from, fleets."""
