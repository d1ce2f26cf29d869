"""`python -m tools.cli ...` = `cabinet ...`."""

import sys

from tools.cli.table import main

sys.exit(main())
