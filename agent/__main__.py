"""`python -m agent run|sim`: the runtime's own entry (the launcher starts a slot's agent
this way; the simulated cabinet child too). Every other command is `cabinet ...`."""

import sys

from agent.runtime.entry import main

sys.exit(main())
