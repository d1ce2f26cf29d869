"""What the services around the agent see of it: small Protocols, not the App.

Remote configuration (config_apply), the OTA service, the built-in commands, the health
gate and the service watchdog each need a few things from the running agent: its config
and clock, the uplink (state, counters, retained messages, its key), the control loop
(alive? the lighting commands), the buses' counters, a way to put events into the
outbox, and a way to ask for a graceful restart. `Host` names exactly that;
`agent.runtime.app.App` provides it, and tests can hand in anything shaped like it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from agent.clock import Clock
from agent.config import Config
from agent.config.model import Uplink as UplinkSettings
from agent.model import Priority, Reading


class ActionError(Exception):
    """A control action refused its request: the message says why (the status socket
    answers 409 with it; a command's reply carries it)."""


class BusCounters(Protocol):
    """A bus engine as the health gate sees it: its transaction counters."""

    @property
    def stats(self) -> Mapping[str, Any]: ...


class UplinkPort(Protocol):
    """The uplink as the services see it."""

    @property
    def s(self) -> UplinkSettings: ...

    @property
    def key(self) -> Any: ...  # the cabinet's Ed25519PrivateKey (signs status reports)

    @property
    def kid(self) -> bytes: ...

    @property
    def state(self) -> str: ...

    @property
    def stats(self) -> Mapping[str, int]: ...

    def snapshot(self) -> dict[str, Any]: ...

    def put_retained(self, topic: str, payload: bytes, on_sent: Callable[[], None] | None = None) -> None: ...


class ControlPort(Protocol):
    """The control loop as the services see it: is it there, is it stepping, and the
    local actions (the same the status socket offers)."""

    @property
    def active(self) -> bool: ...

    @property
    def steps(self) -> int: ...

    @property
    def mode(self) -> str | None: ...

    @property
    def alarms(self) -> Any: ...  # agent.control.alarms.manager.AlarmManager

    async def override(self, args: dict[str, Any]) -> dict[str, Any]: ...

    async def cancel(self, args: dict[str, Any]) -> dict[str, Any]: ...

    async def acknowledge(self, args: dict[str, Any]) -> dict[str, Any]: ...


class Host(Protocol):
    """The running agent, as remote management and the watchdog need it."""

    @property
    def config(self) -> Config: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def data_dir(self) -> Path: ...

    @property
    def started_mono(self) -> float: ...

    @property
    def uplink(self) -> UplinkPort | None: ...

    @property
    def controls(self) -> ControlPort: ...

    @property
    def engines(self) -> Mapping[str, BusCounters]: ...

    async def put(self, readings: list[Reading], priority: Priority) -> None:
        """Events and alarms straight into the outbox with their priority."""
        ...

    def request_stop(self) -> None:
        """A graceful stop: run() returns and the service manager starts us again."""
        ...

    def brief(self) -> dict[str, Any]:
        """Counts for the `status` command: points, outbox."""
        ...
