"""Lock files that let several processes share one output folder: a unit of work is done by whoever
creates its lock file first (O_CREAT | O_EXCL, which shared file systems honour), and the holder keeps
the file's modification time fresh while it works. A lock nobody refreshed for `timeout` seconds, or
one whose process on this host is gone, belongs to a process that died; the next process takes it
over. Keep `timeout` well above the file system's attribute caching (on NFS, a few minutes)."""

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path


class UnitLock:
    """The lock of one unit of work at `path`, holding the owner's host and pid and a heartbeat."""

    def __init__(self, path, timeout=600.0):
        self.path = Path(path)
        self.timeout = float(timeout)
        self.taken_from = None
        self._inode = None
        self._beating = None

    def owner(self):
        """{'host', 'pid', 'since'} of the process holding the lock, {} when free or unreadable."""
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def stale(self):
        """Whether the lock exists and its holder has not refreshed it for `timeout` seconds, or is a
        process of this host that no longer runs."""
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return False
        return age > self.timeout or _dead_here(self.owner())

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
            self._inode = os.fstat(f.fileno()).st_ino
        self._start_heartbeat()
        return True

    def _remove_stale(self):
        # Of several processes finding the same stale lock, one renames it away. Another may already
        # have replaced it with a fresh lock of its own: that one goes back in place.
        owner = self.owner()
        moved = self.path.with_name(f"{self.path.name}.stale-{socket.gethostname()}-{os.getpid()}")
        try:
            os.rename(self.path, moved)
        except FileNotFoundError:
            return
        fresh = time.time() - moved.stat().st_mtime <= self.timeout and not _dead_here(_read(moved))
        if fresh:
            try:
                os.link(moved, self.path)
            except FileExistsError:
                pass
        else:
            self.taken_from = owner
        moved.unlink(missing_ok=True)

    def holds(self):
        """Whether the lock file is still the one this process created."""
        try:
            return self._inode is not None and os.stat(self.path).st_ino == self._inode
        except FileNotFoundError:
            return False

    def _start_heartbeat(self):
        stop = threading.Event()
        interval = max(self.timeout / 4, 0.2)

        def beat():
            warned = False
            while not stop.wait(interval):
                try:
                    if not self.holds():
                        return
                    os.utime(self.path)
                except OSError as e:  # a network file system's hiccup: try again at the next beat
                    if not warned:
                        print(f"cladec: warning: could not refresh {self.path}: {e}", file=sys.stderr)
                        warned = True

        thread = threading.Thread(target=beat, name=f"heartbeat {self.path.name}", daemon=True)
        thread.start()
        self._beating = (stop, thread)

    def release(self):
        """Stop the heartbeat and remove the lock file, if it is still this process's."""
        if self._beating is not None:
            stop, thread = self._beating
            stop.set()
            thread.join()
            self._beating = None
        if self.holds():
            self.path.unlink(missing_ok=True)
        self._inode = None


def _read(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def _dead_here(owner):
    """Whether `owner` names a process of this host that no longer runs."""
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return False
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def describe(owner):
    """'pid 123 on host-a' for a lock's owner record."""
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}" if owner else "another process"
