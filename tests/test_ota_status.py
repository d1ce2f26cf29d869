"""ota.status on real files: transitions, idempotence, seq, history bound, delivery mark,
persistence across instances, corrupt files."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ota.status import HISTORY, STATES, TERMINAL, StatusBook, StatusError


@pytest.fixture
def book(tmp_path):
    return StatusBook(tmp_path / "state" / "status.json")


def test_happy_path_seq_and_persistence(book):
    assert book.current() is None and book.undelivered() is None
    seqs = []
    steps: list[tuple[str, dict[str, Any]]] = [
        ("offered", {}),
        ("downloading", {"percent": 0}),
        ("downloading", {"percent": 55.5}),
        ("downloaded", {}),
        ("installing", {}),
        ("restarting", {}),
        ("verifying", {}),
        ("success", {}),
    ]
    for i, (state, kw) in enumerate(steps):
        r = book.set(
            "dep-1", state, version="0.9.0" if i == 0 else None, counter=12 if i == 0 else None, t=1000.0 + i, **kw
        )
        seqs.append(r["seq"])
        assert (r["state"], r["version"], r["counter"]) == (state, "0.9.0", 12)
    assert seqs == list(range(1, 9))
    again = StatusBook(book.path)  # a new instance (after a restart) sees the same record
    assert again.current() == r and r["t"] == 1007.0 and r["percent"] is None
    assert [h["state"] for h in again.history()][-2:] == ["verifying", "success"]


def test_same_state_again_is_a_no_op(book):
    a = book.set("d", "downloading", percent=10, t=1)
    assert book.set("d", "downloading", percent=10, t=2) == a
    b = book.set("d", "downloading", percent=20, t=3)
    assert b["seq"] == a["seq"] + 1
    c = book.set("d", "rolled_back", reason="crash_loop: 3 starts", t=4)
    assert book.set("d", "rolled_back", reason="crash_loop: 3 starts", t=5) == c
    assert book.set("d", "rolled_back", reason="other words", t=6) == c, "terminal stays"
    assert len(book.history()) == 3


def test_rules(book):
    with pytest.raises(StatusError, match="unknown state"):
        book.set("d", "exploded", t=1)
    with pytest.raises(StatusError, match="percent"):
        book.set("d", "installing", percent=5, t=1)
    with pytest.raises(StatusError, match=r"0..100"):
        book.set("d", "downloading", percent=101, t=1)
    for state in ("failure", "rolled_back", "deferred", "rejected"):
        with pytest.raises(StatusError, match="needs a reason"):
            book.set("d", state, t=1)
    with pytest.raises(StatusError, match="non-empty"):
        book.set("", "offered", t=1)
    assert book.current() is None, "refused changes write nothing"
    book.set("d", "deferred", reason="outside the window", t=1)
    book.set("d", "offered", t=2)  # deferred is not terminal
    for terminal in sorted(TERMINAL):
        book.set("x-" + terminal, "offered", t=3)
        book.set("x-" + terminal, terminal, reason="r", t=4)
        for state in STATES:
            if state != terminal:
                with pytest.raises(StatusError, match="terminal"):
                    book.set("x-" + terminal, state, reason="r", percent=1 if state == "downloading" else None, t=5)
    # a new deployment may start after a terminal one; seq keeps growing across deployments
    before = book.current()["seq"]
    assert book.set("next", "offered", t=6)["seq"] == before + 1


def test_history_is_bounded(book):
    for i in range(HISTORY + 15):
        book.set("d", "downloading", percent=i % 101, t=i)
    h = book.history()
    assert len(h) == HISTORY and h[-1]["seq"] == HISTORY + 15 and h[0]["seq"] == 16


def test_delivery_mark(book):
    r = book.set("d", "offered", t=1)
    assert book.undelivered() == r
    book.mark_delivered(r["seq"])
    assert StatusBook(book.path).undelivered() is None
    r2 = book.set("d", "downloading", percent=1, t=2)
    assert book.undelivered() == r2, "re-sent after a reboot until marked"
    book.mark_delivered(r["seq"])  # an old ack does not cover the newer record
    assert book.undelivered() == r2
    book.mark_delivered(10**6)  # a mark beyond the last seq is capped
    r3 = book.set("d", "downloaded", t=3)
    assert book.undelivered() == r3


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"format": 2}',
        b'{"format": 1, "record": {"state": "x"}, "seq": 1, "delivered_seq": 0, "history": []}',
    ],
)
def test_corrupt_file_is_moved_aside_and_seq_stays_ahead(book, garbage, caplog):
    book.set("d", "offered", t=1)
    book.path.write_bytes(garbage)
    assert book.current() is None
    assert (book.path.parent / "status.json.bad").exists()
    assert "status.json corrupt" in caplog.text
    r = book.set("d", "offered", t=2)
    assert r["seq"] > 1_000_000_000, "above anything sent before (wall-clock base)"
    json.loads(book.path.read_text())


def test_corrupt_file_keeps_a_readable_seq(book):
    for i in range(5):
        book.set("d", "downloading", percent=i, t=i)
    doc = json.loads(book.path.read_text())
    doc["history"] = "broken"
    doc["seq"] = 10**12  # larger than the clock: kept
    book.path.write_text(json.dumps(doc))
    assert book.set("d2", "offered", t=9)["seq"] == 10**12 + 1
