"""Helpers of the pole node's test vectors (vectors_*.py): a flash that can lose power
mid-write, request builders, a lamp. MicroPython subset: no pytest, no typing at run time."""

from boards.pole_node import rtu, settings
from boards.pole_node.node import PoleNode

UNIT = 7
NIGHT, DAY = 5, 500  # lux


class PowerCut(Exception):
    pass


class MemFlash(settings.Flash):
    """Flash in memory; `cut_after` bytes into the next write the power goes (the slot keeps
    the torn prefix) and PowerCut is raised."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_after = -1
        self.writes = 0

    def read(self, name: str) -> bytes | None:
        return self.files.get(name)

    def write(self, name: str, data: bytes) -> None:
        if self.cut_after >= 0:
            self.files[name] = bytes(data[: self.cut_after])
            self.cut_after = -1
            raise PowerCut()
        self.files[name] = bytes(data)
        self.writes += 1


def req(*body: int) -> bytes:
    return rtu.with_crc(bytes(body))


def read_req(fc: int, start: int, count: int, unit: int = UNIT) -> bytes:
    return req(unit, fc, start >> 8, start & 0xFF, count >> 8, count & 0xFF)


def write1(address: int, value: int, unit: int = UNIT) -> bytes:
    return req(unit, 6, address >> 8, address & 0xFF, value >> 8, value & 0xFF)


def write_n(start: int, values: list[int], unit: int = UNIT) -> bytes:
    body = [unit, 16, start >> 8, start & 0xFF, 0, len(values), 2 * len(values)]
    for v in values:
        body += [v >> 8, v & 0xFF]
    return req(*body)


def words(reply: bytes) -> list[int]:
    assert rtu.crc_ok(reply), "reply CRC"
    return [(reply[3 + 2 * i] << 8) | reply[4 + 2 * i] for i in range(reply[2] // 2)]


def lamp(n: PoleNode, now_ms: int, lux: int | None = NIGHT, healthy: bool = True, door: bool = False) -> int:
    """One measurement step of a healthy (or dead) 60 W lamp at the level the node drives."""
    watts = 60.0 * n.level / 100 if healthy else 0.0
    return n.update(now_ms, 230.0, watts / 230.0, watts, 0.95 if watts else 0.0, lux, 0, door)
