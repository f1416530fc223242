"""`flox-isa doctor`: why a pod is slow, from inside its container (or, with --pod, outside)."""
