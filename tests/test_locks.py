"""Unit locks: one holder at a time, a heartbeat while held, stale locks taken over."""

import json
import os
import time

from cladec_cli.locks import UnitLock, describe


def test_one_holder_at_a_time(tmp_path):
    path = tmp_path / "unit.lock"
    first, second = UnitLock(path), UnitLock(path)
    assert first.acquire()
    assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not second.acquire()
    assert describe(second.owner()).startswith(f"pid {os.getpid()} on ")
    first.release()
    assert not path.exists()
    assert second.acquire()
    second.release()


def test_a_held_lock_keeps_beating(tmp_path):
    path = tmp_path / "unit.lock"
    holder = UnitLock(path, timeout=0.8)
    assert holder.acquire()
    os.utime(path, (time.time() - 0.7, time.time() - 0.7))
    time.sleep(0.9)  # past the timeout, counted from that old time, but the heartbeat (every 0.2 s) went on
    other = UnitLock(path, timeout=0.8)
    assert not other.stale() and not other.acquire()
    holder.release()


def test_a_lock_without_heartbeat_is_taken_over(tmp_path):
    path = tmp_path / "unit.lock"
    path.write_text(json.dumps({"host": "node-7", "pid": 4242, "since": 0}))
    os.utime(path, (time.time() - 30, time.time() - 30))  # its holder died 30 s ago
    assert not UnitLock(path, timeout=60).acquire()
    taker = UnitLock(path, timeout=10)
    assert taker.acquire()
    assert taker.taken_from == {"host": "node-7", "pid": 4242, "since": 0}
    assert describe(taker.taken_from) == "pid 4242 on node-7"
    assert json.loads(path.read_text())["pid"] == os.getpid()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unit.lock"]
    taker.release()


def test_a_lock_of_a_process_gone_from_this_host_is_taken_over_at_once(tmp_path):
    import socket
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = tmp_path / "unit.lock"
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": int(gone.stdout), "since": 0}))
    taker = UnitLock(path, timeout=600)
    assert taker.stale() and taker.acquire()
    assert taker.taken_from["pid"] == int(gone.stdout)
    taker.release()


def test_a_fresh_lock_put_in_place_meanwhile_is_not_taken(tmp_path, monkeypatch):
    path = tmp_path / "unit.lock"
    path.write_text(json.dumps({"host": "node-7", "pid": 1, "since": 0}))
    os.utime(path, (time.time() - 30, time.time() - 30))
    late = UnitLock(path, timeout=10)
    assert late.stale()
    winner = UnitLock(path, timeout=10)
    assert winner.acquire()  # took it over between the late one's look and its move
    monkeypatch.setattr(late, "stale", lambda: True)  # the late one still believes what it saw
    assert not late.acquire() and late.taken_from is None
    assert winner.holds() and json.loads(path.read_text())["pid"] == os.getpid()
    late.release()  # holds nothing: leaves the winner's lock alone
    assert path.exists()
    winner.release()
    assert not path.exists()
