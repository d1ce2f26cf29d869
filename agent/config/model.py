"""The validated cabinet configuration as plain frozen dataclasses (no parsing here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.model import Point

if TYPE_CHECKING:  # a type only: importing the config's vocabulary stays cheap
    from drivers.profiles.base import DeviceProfile


@dataclass(frozen=True)
class BoardInfo:
    """What the validator needs to know of a board profile: its port and pin names."""

    name: str
    ports: frozenset[str]
    pins: frozenset[str]


@dataclass(frozen=True)
class Site:
    latitude: float
    longitude: float
    elevation: float
    timezone: str


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 1.0
    max_s: float = 60.0
    factor: float = 2.0


@dataclass(frozen=True)
class RtuBus:
    name: str
    port: str  # absolute device path or a port name of the board
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    timeout_ms: float = 300.0  # the device's answer allowance; wire time is added
    retries: int = 0
    inter_frame_ms: float | None = None  # None: 3.5 character times (1.75 ms above 19200 Bd)
    rs485: bool = False  # kernel RS-485 mode (RTS drives the transceiver)
    backoff: Backoff = Backoff()
    kind: str = "rtu"


@dataclass(frozen=True)
class TcpBus:
    name: str
    host: str
    port: int = 502
    timeout_ms: float = 1000.0
    retries: int = 0
    inter_frame_ms: float = 0.0
    backoff: Backoff = Backoff()
    kind: str = "tcp"


Bus = RtuBus | TcpBus


@dataclass(frozen=True)
class Device:
    name: str
    bus: str
    unit: int
    profile_name: str
    profile: DeviceProfile  # built from options, with limit and point overrides applied
    poll_s: float
    points: Mapping[str, Point]  # key -> Point (name "<device>.<key>"), enabled points only
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Gps:
    port: str
    baudrate: int = 9600
    stale_s: float = 5.0


UNSET_POINT = Point("dio.unset")  # the point of an input or output built without one (Point is frozen)


@dataclass(frozen=True)
class Input:
    name: str
    pin: str
    invert: bool = False
    pull: str | None = None
    poll_s: float = 0.2
    point: Point = UNSET_POINT


@dataclass(frozen=True)
class Output:
    name: str
    pin: str
    invert: bool = False
    initial: bool = False
    point: Point = UNSET_POINT


@dataclass(frozen=True)
class SimCircuit:
    name: str
    load_w: float
    relay: str | None = None  # "<device>.<coil point>"
    meter: str | None = None  # meter device name
    dali: str | None = None  # DALI gateway device name
    phases: int = 1
    poles: tuple[str, ...] = ()  # pole_node devices on the circuit, in cable order from the cabinet


@dataclass(frozen=True)
class SimWeather:
    """[sim.weather]: outdoor curves, points (seconds after the start, value); () = the plant's day curve."""

    temperature: tuple[tuple[float, float], ...] = ()  # °C
    humidity: tuple[tuple[float, float], ...] = ()  # %RH
    cloud: tuple[tuple[float, float], ...] = ()  # cover 0..1


@dataclass(frozen=True)
class Sim:
    speed: float = 1.0
    seed: int = 0
    start: str = "now"  # ISO 8601 wall time the simulated clock starts at, or "now"
    circuits: tuple[SimCircuit, ...] = ()
    fan: str | None = None  # "<device>.<coil point>"
    heater: str | None = None
    electronics_w: float = 20.0
    contacts: Mapping[str, str] = field(default_factory=dict)  # plant contact -> "pin:<name>" or "<device>.<point>"
    script: tuple[tuple[float, Mapping[str, Any]], ...] = ()  # (sim seconds after start, control command)
    weather: SimWeather | None = None  # [sim.weather]; None: the plant's own day curve


@dataclass(frozen=True)
class Uplink:
    """[uplink]: MQTT v5 to the city cloud. Paths are absolute (resolved against the config's directory)."""

    broker: str
    port: int = 8883
    tls: bool = True
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    signing_key: str | None = None  # Ed25519 PEM; None: generated in the data dir (development)
    ingest_key: str | None = None  # hex of the ingest's Ed25519 public key, or a path to it (verifies acks)
    topic_prefix: str = "city/v1"
    client_id: str | None = None  # default: the cabinet id
    keepalive_s: int = 30
    session_expiry_s: int = 86400
    inflight: int = 10
    max_unacked: int = 256
    ack_timeout_s: float = 60.0
    batch_max_readings: int = 2000
    batch_max_age_s: float = 300.0  # telemetry latency bound; alarms and events go within a second
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 6.0  # back within ~8 s of the broker (jitter 0.3 spreads a fleet)


@dataclass(frozen=True)
class OutboxSettings:
    path: str = "outbox.db"  # relative to the data dir
    max_mb: float = 256.0
    commit_interval_ms: float = 100.0
    queue_max: int = 20000


@dataclass(frozen=True)
class AgentSettings:
    log_level: str = "info"
    log_format: str = "text"
    stale_factor: float = 3.0


@dataclass(frozen=True)
class Config:
    source: str
    sha256: str
    cabinet_id: str
    cabinet_name: str
    tags: tuple[str, ...]
    site: Site
    board: str
    agent: AgentSettings
    buses: Mapping[str, Bus]
    devices: Mapping[str, Device]
    gps: Gps | None
    inputs: Mapping[str, Input]
    outputs: Mapping[str, Output]
    sim: Sim
    raw: Mapping[str, Any]
    uplink: Uplink | None = None
    outbox: OutboxSettings = OutboxSettings()
    climate: Any = None  # agent.control.climate.settings.ClimateSettings when [climate] is configured
    alarms: Mapping[str, Any] = field(default_factory=dict)  # alarm id -> agent.control.alarms.manager.AlarmOverride
    lighting: Any = None  # agent.control.lighting.model.LightingSettings when [lighting] is configured
    trust: Any = None  # agent.wire.commands.Trust: operator keys for signed commands ([trust])
    config_version: int = 0  # [cabinet] config_version: remote configuration version (docs/commands.md)
    ota: Any = None  # agent.config.ota.OtaSettings ([ota], docs/ota.md)
    console: Any = None  # agent.config.console.ConsoleSettings ([console], docs/console.md)

    def points(self) -> list[Point]:
        out = [p for d in self.devices.values() for p in d.points.values()]
        out += [i.point for i in self.inputs.values()]
        out += [o.point for o in self.outputs.values()]
        return out
