"""Ctrl-C and a batch system's SIGTERM: both unwind a command as KeyboardInterrupt, and neither
lands in the middle of writing a file that must stay whole."""

import contextlib
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _in_main_thread():
    # Python lets only the main thread set signal handlers.
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM (how Slurm and other batch systems end a job) raises KeyboardInterrupt as
    Ctrl-C does, so that a training says what it kept and removes what it had only begun to write."""
    if not _in_main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


@contextlib.contextmanager
def deferred():
    """Within the block, SIGINT and SIGTERM wait: the first one to arrive is delivered to the handler that
    was in place once the block has finished (for Ctrl-C: KeyboardInterrupt, raised there). A block that
    fails raises its own error; the signal then goes unanswered, as the command ends anyway."""
    if not _in_main_thread():
        yield
        return
    received = []
    before = {number: signal.getsignal(number) for number in SIGNALS}

    def hold(number, frame):
        received.append((number, frame))

    for number in SIGNALS:
        signal.signal(number, hold)
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
    if received:
        number, frame = received[0]
        handler = before[number]
        if callable(handler):
            handler(number, frame)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(number)
