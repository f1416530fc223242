"""Publishing side: one base Flox manifest rendered into per-ISA environments, linted, planned."""
