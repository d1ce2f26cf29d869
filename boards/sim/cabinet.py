"""The simulated cabinet: real servers driven by the plant model.

SimCabinet takes a validated cabinet config (agent.config.Config, used by
attribute only) and serves exactly the devices it declares: one emulated RS-485
line per RTU bus (pymodbus RTU server behind a pty, with wire timing), one
Modbus TCP endpoint per TCP bus on a free loopback port, an NMEA GPS on a pty,
and the contacts as pin files. A plant loop steps the physics on the sim clock
and refreshes every register; writes of the master drive the plant. Faults are
injected per device (FaultTable of its bus), per port (vanish/restore), per TCP
endpoint (refuse) and for the GPS (mode).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boards.sim import commands, poles
from boards.sim.bindings import Binding, ClimateBinding, DaliBinding, LuxBinding, MeterBinding, RelayBinding
from boards.sim.faults import Fault, FaultKind, FaultTable
from boards.sim.line import RtuLine
from boards.sim.nmea_out import NmeaWriter
from boards.sim.plant import Cabinet as PlantCabinet
from boards.sim.plant import Circuit, Plant, Site, Weather
from boards.sim.store import RegisterStore
from boards.sim.tcp import TcpEndpoint
from drivers import profiles
from drivers.dio import DioError, read_pin, write_pin
from drivers.profiles.base import DeviceProfile, LineDefaults, ProfileError

log = logging.getLogger("boards.sim")

TICK_S = 1.0  # plant step in simulated seconds
MIN_TICK_REAL_S = 0.05


@dataclass
class GpsFaults:
    mode: str = "normal"  # normal | no_fix | bad_checksum | garbage | silent


def device_profile(dev: Any) -> DeviceProfile:
    """What the simulated device has: every point of its profile built with the
    config's options (the config's own version of a point where it has one, e.g. a
    changed scale; also points a config disables: a real device still answers them),
    its configuration registers, and the config's limits."""
    try:
        full = profiles.get(dev.profile_name).build(dev.options)
    except (KeyError, ProfileError):
        return dev.profile
    mine = {p.key: p for p in dev.profile.points}
    points = tuple(mine.get(p.key, p) for p in full.points) + tuple(
        p for p in dev.profile.points if p.key not in {q.key for q in full.points}
    )
    return DeviceProfile(full.name, points, dev.profile.limits, full.line, full.description, full.config)


def plant_weather(w: Any, start: float) -> Weather | None:
    """The plant's weather from the config's [sim.weather] (curves in seconds after the
    start, made wall times here); None: the plant's own day curve."""
    if w is None:
        return None

    def curve(points: Any) -> tuple[tuple[float, float], ...]:
        return tuple((start + float(t), float(v)) for t, v in points or ())

    return Weather(temperature=curve(w.temperature), humidity=curve(w.humidity), cloud_cover=curve(w.cloud))


def start_time(text: str, now: float) -> float:
    return now if text == "now" else dt.datetime.fromisoformat(text).timestamp()


class SimCabinet:
    def __init__(self, config: Any, directory: Path, clock: Any) -> None:
        self.config = config
        self.dir = Path(directory)
        self.clock = clock
        s = config.site
        self.site = Site(s.latitude, s.longitude, s.elevation, s.timezone)
        sim = config.sim
        dali_circuits = {c.dali for c in sim.circuits if c.dali}
        start = clock.now()
        self.plant = Plant(
            self.site,
            [Circuit(c.name, c.load_w, c.phases, dimmable=c.dali is not None) for c in sim.circuits],
            seed=sim.seed,
            start=start,
            weather=plant_weather(getattr(sim, "weather", None), start),
            cabinet=PlantCabinet(electronics_w=sim.electronics_w),
        )
        self.stores: dict[str, RegisterStore] = {}
        self.bindings: dict[str, Binding] = {}
        self.faults: dict[str, FaultTable] = {name: FaultTable() for name in config.buses}
        self.gps_faults = GpsFaults()
        self.pins_dir = self.dir / "pins"
        self.lines: dict[str, RtuLine] = {}
        self.endpoints: dict[str, TcpEndpoint] = {}
        self.gps: NmeaWriter | None = None
        self._pin_levels: dict[str, bool] = {}
        self._keys: dict[str, frozenset[str]] = {}
        self._task: asyncio.Task | None = None
        self._script: asyncio.Task | None = None
        self.script_done = 0
        self._where: dict[str, Any] = {}
        self.poles = poles.segments(config, self._ms())  # circuit -> its simulated pole nodes
        pole_names = {p.name for seg in self.poles.values() for p in seg.poles}
        for name, dev in config.devices.items():
            if name in pole_names:
                continue  # served by the firmware's own logic (boards/sim/poles.py), not a store
            bus = config.buses[dev.bus]
            line = LineDefaults(bus.baudrate, bus.parity, bus.stopbits) if bus.kind == "rtu" else None
            profile = device_profile(dev)
            store = RegisterStore(profile, {c.key: c.value(dev.unit, line) for c in profile.config})
            binding = self._binding(name, dev, sim, dali_circuits)
            store.on_write = self._writer(binding)
            self.stores[name] = store
            self.bindings[name] = binding
            self._keys[name] = store.keys()
        self.refresh()

    # wiring ---------------------------------------------------------------------
    def _ms(self) -> int:
        """The pole nodes' millisecond clock: the simulated monotonic time."""
        return int(self.clock.monotonic() * 1000)

    def _writer(self, binding: Binding) -> Callable[[str, Any], None]:
        def on_write(key: str, value: Any) -> None:
            binding.on_write(self.plant, key, value)

        return on_write

    def _binding(self, name: str, dev: Any, sim: Any, dali_circuits: set[str]) -> Binding:
        kind = dev.profile_name
        if kind in ("sdm120", "sdm630"):
            circuit = next((c.name for c in sim.circuits if c.meter == name), None)
            return MeterBinding(circuit, three_phase=kind == "sdm630")
        if kind == "xy-md02":
            return ClimateBinding()
        if kind == "lux":
            return LuxBinding()
        if kind == "relay-board":
            outputs: dict[str, Callable[[Plant, bool], None]] = {}
            for c in sim.circuits:
                if c.relay and c.relay.split(".", 1)[0] == name:
                    outputs[c.relay.split(".", 1)[1]] = (lambda n: lambda p, v: p.set_circuit(n, v))(c.name)
            if sim.fan and sim.fan.split(".", 1)[0] == name:
                outputs[sim.fan.split(".", 1)[1]] = lambda p, v: setattr(p, "fan_on", v)
            if sim.heater and sim.heater.split(".", 1)[0] == name:
                outputs[sim.heater.split(".", 1)[1]] = lambda p, v: setattr(p, "heater_on", v)
            inputs = {
                ref.split(".", 1)[1]: _contact(contact)
                for contact, ref in sim.contacts.items()
                if not ref.startswith("pin:") and ref.split(".", 1)[0] == name
            }
            return RelayBinding(outputs, inputs)
        if kind == "dali-gateway":
            circuit = next((c.name for c in sim.circuits if c.dali == name), None)
            return DaliBinding(circuit, list(dev.options.get("addresses") or [0]))
        return Binding()

    def _pin_outputs(self) -> None:
        """Outputs of the agent on pins (fan, heater, contactors) drive the plant."""
        sim = self.config.sim
        wired = [
            (sim.fan, lambda v: setattr(self.plant, "fan_on", v)),
            (sim.heater, lambda v: setattr(self.plant, "heater_on", v)),
        ]
        wired += [(c.relay, (lambda n: lambda v: self.plant.set_circuit(n, v))(c.name)) for c in sim.circuits]
        for ref, act in wired:
            if ref and ref.startswith("pin:"):
                try:
                    level = read_pin(self.pins_dir, ref[4:], missing=False)
                except DioError:
                    continue
                out = next((o for o in self.config.outputs.values() if o.pin == ref[4:]), None)
                act(level != (out.invert if out else False))

    def refresh(self) -> None:
        """Step the plant to the clock and show it in every register and pin."""
        self._pin_outputs()
        self.plant.step(self.clock.now())
        for seg in self.poles.values():
            seg.step(self.plant, self._ms())
        for name, binding in self.bindings.items():
            values = binding.values(self.plant)
            if values:
                keys = self._keys[name]
                self.stores[name].set_many({k: v for k, v in values.items() if k in keys})
        for contact, ref in self.config.sim.contacts.items():
            if ref.startswith("pin:"):
                pin = ref[4:]
                inp = next((i for i in self.config.inputs.values() if i.pin == pin), None)
                level = _contact(contact)(self.plant) != (inp.invert if inp else False)
                if self._pin_levels.get(pin) != level:
                    write_pin(self.pins_dir, pin, level)
                    self._pin_levels[pin] = level

    # lifecycle ------------------------------------------------------------------
    async def start(self) -> dict[str, Any]:
        """Start every server; returns the endpoints (bus -> where to reach it)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        buses: dict[str, list[Any]] = {}
        for name, bus in self.config.buses.items():
            units = {
                d.unit: self.stores[n] for n, d in self.config.devices.items() if d.bus == name and n in self.stores
            }
            if bus.kind == "rtu":
                line = RtuLine(
                    self.dir / f"{name}.tty",
                    units,
                    baudrate=bus.baudrate,
                    parity=bus.parity,
                    stopbits=bus.stopbits,
                    faults=self.faults[name],
                    seed=self.config.sim.seed,
                    nodes=poles.nodes_on(self.poles, self.config, name, self._ms),
                )
                await line.start()
                self.lines[name] = line
                buses[name] = ["rtu", line.port]
            else:
                ep = TcpEndpoint(units, faults=self.faults[name], seed=self.config.sim.seed)
                host, port = await ep.start()
                self.endpoints[name] = ep
                buses[name] = ["tcp", host, port]
        gps_link = None
        if self.config.gps is not None:
            self.gps = NmeaWriter(
                self.dir / "gps.tty", self.clock, self.site, faults=self.gps_faults, seed=self.config.sim.seed
            )
            self.gps.open()
            self.gps.start()
            gps_link = str(self.dir / "gps.tty")
        self.refresh()
        self._task = asyncio.create_task(self._plant_loop(), name="sim-plant")
        if self.config.sim.script:
            self._script = asyncio.create_task(self._run_script(), name="sim-script")
        log.info(
            "simulated cabinet %s serving %d devices on %d buses", self.config.cabinet_id, len(self.stores), len(buses)
        )
        self._where = {"buses": buses, "gps": gps_link, "pins": str(self.pins_dir)}
        return dict(self._where)

    async def _plant_loop(self) -> None:
        speed = getattr(self.clock, "speed", 1.0)
        step = max(TICK_S, MIN_TICK_REAL_S * speed)
        while True:
            await self.clock.sleep(step)
            try:
                self.refresh()
            except Exception:
                log.exception("plant step failed")

    async def _run_script(self) -> None:
        """[[sim.script]]: control commands at simulated seconds after the start."""
        t0 = self.clock.monotonic()
        for at, cmd in self.config.sim.script:
            await self.clock.sleep_until(t0 + at)
            try:
                await self.command(dict(cmd))
                log.info("script at %gs: %s", at, cmd)
            except (ValueError, KeyError, TypeError, RuntimeError, OSError) as e:
                log.error("script at %gs: %s failed: %s", at, cmd, e)
            self.script_done += 1

    async def stop(self) -> None:
        for task in (self._task, self._script):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.gps is not None:
            await self.gps.aclose()
        for line in self.lines.values():
            await line.stop()
        for ep in self.endpoints.values():
            await ep.stop()

    # faults and scenarios -------------------------------------------------------
    def device_fault(self, device: str, kind: str | FaultKind | None, **kw: Any) -> None:
        """Inject a fault on one device (None clears it): silent, garbage, crc, wrong_unit, short, slow, exception."""
        dev = self.config.devices[device]
        table = self.faults[dev.bus]
        if kind is None:
            table.clear(dev.unit)
        else:
            table.set(dev.unit, Fault(FaultKind(kind) if isinstance(kind, str) else kind, **kw))

    def vanish(self, bus: str) -> None:
        self.lines[bus].vanish()

    async def restore(self, bus: str) -> None:
        await self.lines[bus].restore()

    def refuse(self, bus: str, on: bool) -> None:
        self.endpoints[bus].refuse(on)

    def set_input(self, name: str, value: Any) -> None:
        """Drive the plant: door_open, flood, mains_ok, ups_replace_battery, fan_on, heater_on, fan_failed."""
        if name not in ("door_open", "flood", "mains_ok", "ups_replace_battery", "fan_on", "heater_on", "fan_failed"):
            raise KeyError(f"unknown plant input {name!r}")
        setattr(self.plant, name, bool(value))
        self.refresh()

    async def command(self, req: Any) -> dict[str, Any]:
        """One control message (boards/sim/commands.py; the control socket's and
        [[sim.script]]'s vocabulary); what the reply adds. CommandError if refused."""
        return await commands.run(self, req)

    def endpoints_info(self) -> dict[str, Any]:
        """Where everything is: bus -> ["rtu", pty] or ["tcp", host, port], the GPS pty, the pins directory."""
        return dict(self._where)

    def state(self) -> dict[str, Any]:
        p = self.plant
        return {
            "lux": round(p.lux, 2),
            "ambient_c": round(p.ambient_c, 2),
            "cabinet_c": round(p.cabinet_c, 2),
            "cabinet_rh": round(p.cabinet_rh, 2),
            "fan_on": p.fan_on,
            "heater_on": p.heater_on,
            "door_open": p.door_open,
            "flood": p.flood,
            "mains_ok": p.mains_ok,
            "circuits": {
                c: {
                    "on": p.circuit_on(c),
                    "power_w": round(p.circuit_power_w(c), 1),
                    "energy_kwh": round(p.circuit_energy_kwh(c), 6),
                }
                for c in p.circuits
            },
            "lines": {n: dict(line.stats) for n, line in self.lines.items()},
            "tcp": {n: dict(ep.stats) for n, ep in self.endpoints.items()},
            "gps_mode": self.gps_faults.mode,
            "poles": {c: seg.state() for c, seg in self.poles.items()},
            "faults": self._faults_now(),
            "circuit_faults": {
                c: {"failed": p.failed_share(c), "stuck": p.stuck(c), "cut": p.cable_cut(c)}
                for c in p.circuits
                if p.failed_share(c) or p.stuck(c) or p.cable_cut(c)
            },
        }

    def _faults_now(self) -> dict[str, dict[str, Any]]:
        """Device name -> its injected fault (kind, exception_code, delay_ms, every)."""
        out = {}
        for name, dev in self.config.devices.items():
            fault = self.faults[dev.bus].get(dev.unit)
            if fault is not None:
                out[name] = {
                    "kind": fault.kind.value,
                    "exception_code": fault.exception_code,
                    "delay_ms": fault.delay_ms,
                    "every": fault.every,
                }
        return out


def _contact(contact: str) -> Callable[[Plant], bool]:
    return {
        "door": lambda p: p.door_open,
        "flood": lambda p: p.flood,
        "ups_on_battery": lambda p: p.ups_on_battery,
        "ups_battery_low": lambda p: p.ups_battery_low,
        "ups_replace_battery": lambda p: p.ups_replace_battery,
    }[contact]
