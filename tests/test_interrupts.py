"""Ctrl-C and SIGTERM: deferred while a file must stay whole, and SIGTERM unwinding as Ctrl-C does."""

import signal
import threading

import pytest

from cladec_cli import interrupts


def test_a_signal_within_a_deferred_block_arrives_once_the_block_has_finished(ctrl_c_raises):
    before = signal.getsignal(signal.SIGINT)
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.deferred():
            signal.raise_signal(signal.SIGINT)
            done.append("the rest of the block")
    assert done == ["the rest of the block"]
    assert signal.getsignal(signal.SIGINT) is before


def test_a_deferred_block_without_a_signal_changes_nothing():
    before = {number: signal.getsignal(number) for number in interrupts.SIGNALS}
    with interrupts.deferred():
        pass
    assert {number: signal.getsignal(number) for number in interrupts.SIGNALS} == before


def test_sigterm_raises_keyboard_interrupt_within_the_block_only():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with interrupts.sigterm_as_interrupt():
            signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == before


def test_sigterm_waits_within_a_deferred_block_too():
    done = []
    with interrupts.sigterm_as_interrupt():
        with pytest.raises(KeyboardInterrupt):
            with interrupts.deferred():
                signal.raise_signal(signal.SIGTERM)
                done.append("whole")
    assert done == ["whole"]


def test_a_failing_deferred_block_raises_its_own_error():
    with pytest.raises(OSError, match="disk full"):
        with interrupts.deferred():
            signal.raise_signal(signal.SIGINT)
            raise OSError("disk full")


def test_outside_the_main_thread_the_blocks_change_nothing():
    before = {number: signal.getsignal(number) for number in interrupts.SIGNALS}
    seen, failures = [], []

    def work():
        try:
            with interrupts.sigterm_as_interrupt(), interrupts.deferred():
                seen.append({number: signal.getsignal(number) for number in interrupts.SIGNALS})
        except Exception as e:  # setting a handler here would raise ValueError
            failures.append(e)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert failures == [] and seen == [before]
