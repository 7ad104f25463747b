"""A testing hook: kill this process (SIGKILL, like ``kill -9``) at a named checkpoint.

Set ``CTKD_FAULT_KILL_AT=<phase>:<n>`` and the process kills itself the n-th
time (1-based, counted in this process) it reaches a checkpoint of that phase.
The reliability tests use it to interrupt runs at exact, repeatable points and
check that a rerun resumes with nothing lost, duplicated or half-written.
Unset (always, outside tests) it costs one environment lookup per checkpoint.

Phases, in run order:

=================  ===========================================================
``prepare``        a track's environment is built (tokenizers, teacher loaded)
``teacher-train``  a trained teacher is saved to its temp folder, not yet renamed
``teacher-cache``  a teacher-signal file is written to its temp name, not yet renamed
``train-step``     after an optimiser step of a cell
``eval``           before a model is evaluated
``cell-write``     before a cell record is written
``write``          any atomic file write: temp file complete, not yet renamed
``summarize``      between writing results.parquet and results.csv
``report``         before each report file is written
=================  ===========================================================
"""
from __future__ import annotations

import os
import signal

ENV_VAR = "CTKD_FAULT_KILL_AT"
PHASES = ("prepare", "teacher-train", "teacher-cache", "train-step", "eval", "cell-write", "write",
          "summarize", "report")

_armed: tuple[str, str, int] | None = None   # (raw env value, phase, n)
_counts: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    global _armed
    raw = os.environ.get(ENV_VAR)
    if not raw:
        return None
    if _armed is None or _armed[0] != raw:   # a new setting: counting starts again
        phase, _, n = raw.rpartition(":")
        if phase not in PHASES or not n.isdigit() or int(n) < 1:
            raise ValueError(f"{ENV_VAR}={raw!r}: expected <phase>:<n> with phase one of {', '.join(PHASES)}")
        _armed = (raw, phase, int(n))
        _counts.clear()
    return _armed[1], _armed[2]


def checkpoint(phase: str) -> None:
    """Count a checkpoint of `phase`; SIGKILL this process when it is the armed one."""
    target = _target()
    if target is None:
        return
    _counts[phase] = _counts.get(phase, 0) + 1
    if phase == target[0] and _counts[phase] == target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
