"""agent/control/lighting/poles.py alone: per-pole conditions from status words, a cable cut
told apart from lamp failures and from one dead node, cable theft. Pure: no I/O."""

from __future__ import annotations

from agent.control.lighting.model import FailureDetection, Segment
from agent.control.lighting.poles import BITS, PoleWatch

POLES = tuple(f"pole{k}" for k in range(1, 9))
F = FailureDetection(confirm_s=30.0)


def watch() -> PoleWatch:
    return PoleWatch(Segment("seg2", "relays.relay_2", "streets", voltage="m.voltage", poles=POLES), F)


def image(silent: tuple[str, ...] = (), bits: dict[str, int] | None = None, volts: float = 230.0) -> dict:
    img: dict = {f"{p}.status": (float((bits or {}).get(p, 0)), "good", 1.0) for p in POLES if p not in silent}
    img.update({f"{p}.status": (None, "bad", 5.0) for p in silent})
    img["m.voltage"] = (volts, "good", 1.0)
    return img


def run(w: PoleWatch, img: dict, power: float, t0: float = 0.0, t1: float = 60.0) -> set[tuple[str, bool]]:
    seen = set()
    t = t0
    while t <= t1:
        seen |= {(cid, active) for cid, _, active, _ in w.judge(t, True, True, img, power, 1200.0)}
        t += 5.0
    return seen


def test_lamp_failure_bit_of_one_pole_is_that_pole():
    w = watch()
    got = run(w, image(bits={"pole7": BITS["lamp_failure"]}), power=1050.0)
    assert got == {("lighting.seg2.pole7.lamp_failure", True)}
    assert run(w, image(), power=1200.0, t0=65, t1=70) == {("lighting.seg2.pole7.lamp_failure", False)}


def test_cut_after_pole4_one_alarm_after_confirmation_and_not_before():
    w = watch()
    img = image(silent=POLES[4:])
    assert run(w, img, power=600.0, t1=25.0) == set()  # confirm_s not yet
    assert run(w, img, power=600.0, t0=30.0, t1=35.0) == {("lighting.seg2.cable_cut", True)}
    assert w.tail == 4


def test_no_cut_without_a_current_drop_without_supply_or_for_one_dead_node():
    assert run(watch(), image(silent=POLES[4:]), power=1190.0) == set()  # the lamps still draw: nodes' comms
    assert run(watch(), image(silent=POLES[4:], volts=20.0), power=600.0) == set()  # no supply: not a cut
    assert run(watch(), image(silent=("pole8",)), power=1050.0) == set()  # one node: not "several together"
    assert run(watch(), image(silent=("pole3", "pole4")), power=900.0) == set()  # not to the end of the line


def test_all_silent_is_a_cut_at_the_cabinet():
    w = watch()
    run(w, image(silent=POLES), power=0.0)
    assert w.cut.active and w.tail == 0


def test_door_then_current_drop_is_cable_theft_and_door_alone_is_not():
    w = watch()
    assert run(w, image(bits={"pole5": BITS["door"]}), power=1200.0) == {("lighting.seg2.pole5.door", True)}
    got = run(w, image(silent=POLES[4:]), power=600.0, t0=65, t1=70)  # pole5 silent now: the door is remembered
    assert ("lighting.seg2.cable_theft", True) in got
