"""`python -m flox_isa`: the same as the `flox-isa` command."""

import sys

from flox_isa.cli import main

sys.exit(main())
