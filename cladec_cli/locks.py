"""Lock files that let several processes share one output folder: a unit of work is done by whoever
creates its lock file first (O_CREAT | O_EXCL, which shared file systems honour), and the holder keeps
the file's modification time fresh while it works. A lock nobody refreshed for `timeout` seconds
belongs to a process that died; the next process takes it over."""

import json
import os
import socket
import threading
import time
from pathlib import Path


class UnitLock:
    """The lock of one unit of work at `path`, holding the owner's host and pid and a heartbeat."""

    def __init__(self, path, timeout=600.0):
        self.path = Path(path)
        self.timeout = float(timeout)
        self.taken_from = None
        self._beating = None

    def owner(self):
        """{'host', 'pid', 'since'} of the process holding the lock, {} when free or unreadable."""
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def stale(self):
        """Whether the lock exists and its holder has not refreshed it for `timeout` seconds."""
        try:
            return time.time() - self.path.stat().st_mtime > self.timeout
        except FileNotFoundError:
            return False

    def acquire(self):
        """Take the lock if it is free or stale; True when this process now holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.stale():
            self._remove_stale()
        try:
            descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "w") as f:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}, f)
        self._start_heartbeat()
        return True

    def _remove_stale(self):
        # Renaming first means that of several processes finding the same stale lock, one removes it.
        moved = self.path.with_name(f"{self.path.name}.stale-{socket.gethostname()}-{os.getpid()}")
        owner = self.owner()
        try:
            os.rename(self.path, moved)
        except FileNotFoundError:
            return
        moved.unlink(missing_ok=True)
        self.taken_from = owner

    def _start_heartbeat(self):
        stop = threading.Event()
        interval = max(self.timeout / 4, 0.2)

        def beat():
            while not stop.wait(interval):
                try:
                    os.utime(self.path)
                except FileNotFoundError:
                    return

        thread = threading.Thread(target=beat, name=f"heartbeat {self.path.name}", daemon=True)
        thread.start()
        self._beating = (stop, thread)

    def release(self):
        """Stop the heartbeat and remove the lock file."""
        if self._beating is not None:
            stop, thread = self._beating
            stop.set()
            thread.join()
            self._beating = None
        self.path.unlink(missing_ok=True)


def describe(owner):
    """'pid 123 on host-a' for a lock's owner record."""
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}" if owner else "another process"
