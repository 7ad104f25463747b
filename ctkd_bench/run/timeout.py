"""A per-cell wall-clock limit (``budget.cell_timeout_s``) that turns a hang into a failed cell.

SIGALRM interrupts Python code between bytecodes (a sleeping or looping method);
a single long native call finishes first. Signals only reach the main thread,
so elsewhere (a worker thread of some executor) the limit is not enforced.
"""
from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager

from ..errors import CellFailure


class CellTimeout(CellFailure):
    """The cell ran longer than the suite's `budget.cell_timeout_s`."""


def can_time_out() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def time_limit(seconds: float | None):
    """Raise `CellTimeout` in the block after `seconds` (0 or None: no limit); restores what was there."""
    if not seconds or seconds <= 0 or not can_time_out():
        yield
        return
    state = {"active": True}

    def on_alarm(signum, frame):
        if state["active"]:
            raise CellTimeout(f"timed out after {seconds:g} s (budget.cell_timeout_s)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.monotonic()
    try:
        yield
    finally:
        state["active"] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay > 0:  # an enclosing timer keeps running, minus the time spent here
            left = max(outer_delay - (time.monotonic() - start), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, outer_interval)
