"""`python -m agent ...` = `cabinet ...` (the launcher starts a slot's agent this way)."""

import sys

from agent.cli import main

sys.exit(main())
