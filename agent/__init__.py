"""cabinet-agent: the runtime on a street cabinet's controller.

This package owns the cabinet-side runtime: config, clock, process image, poller,
control loops, the app that wires them, and the `cabinet` command table.
"""

__version__ = "0.1.0"
