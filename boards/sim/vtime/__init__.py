"""Virtual time shared by processes (docs/virtual-time.md).

* `protocol`: the messages between a participant and the coordinator, and the shared
  time file.
* `coordinator`: advances the one virtual time when every participant is idle.
* `loop`: the asyncio event loop whose time is virtual (`install`, `VirtualClock`).
* `agent/runtime/entry.py` (`virtual_clock`): `python -m agent run|sim` started with
  `$VTIME_SOCKET` join before their event loop exists and use `VirtualClock`.
* `probe`: a tiny two-process exchange over a pty or TCP, for tests and demos.
* `rig`: run the example cabinet and the agent under a coordinator and measure.
"""
