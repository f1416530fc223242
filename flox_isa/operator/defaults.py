"""The operator's I/O tuning defaults, beside no code: `flox-isa --help` reads them cheaply."""

from __future__ import annotations

from typing import Final

# The placement controller's writes in flight at once. Each pod costs one write (the
# ungate); at 16 a 1,000-pod burst on 1,000 nodes ran 1.33x admission-only pinning, at 64
# 1.12x (`bench/placement.py`). The API server's priority and fairness still bounds it.
DEFAULT_WRITE_CONCURRENCY: Final = 64
