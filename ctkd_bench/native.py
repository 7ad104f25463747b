"""Small C kernels compiled at run time, for per-step loops that numpy can only vectorise badly.

A kernel is a C source string in the module that uses it (`ctkd_bench.align.dtw_batch`, CDM's
dynamic map). `library` compiles it once per process with the system C compiler (``$CC``, else
``cc``) into a private temporary directory, loads it with ``ctypes`` and deletes the files (the
process keeps the mapping). Nothing compiled is ever read back from a shared cache, so no other
user or earlier run can put code into this process. When there is no compiler, the compiler
fails, or ``CTKD_NATIVE=0`` is set, `library` returns None and the caller runs its numpy path,
which gives the same values (each kernel is tested against it); only the step cost differs.

    CTKD_NATIVE=0 ctkd-bench run tiny      # numpy paths only
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading

import numpy as np

log = logging.getLogger(__name__)

FLAGS = ("-O2", "-shared", "-fPIC", "-std=c99")
COMPILE_TIMEOUT_S = 60
_LOADED: dict[str, ctypes.CDLL | None] = {}
_LOCK = threading.Lock()


def enabled() -> bool:
    """False when ``CTKD_NATIVE`` is ``0`` / ``false`` / ``no`` / ``off``."""
    return os.environ.get("CTKD_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def compiler() -> str | None:
    """The C compiler to use (``$CC`` or ``cc`` on the PATH), None if there is none."""
    return shutil.which(os.environ.get("CC", "cc"))


def library(name: str, source: str, signatures: dict[str, tuple]) -> ctypes.CDLL | None:
    """``source`` compiled and loaded (once per process and source), or None when unavailable.

    ``signatures``: function name -> its argument types (`array` for arrays, ``ctypes.c_int64``
    for sizes); each is declared (`declare`) so that a call checks its arguments.
    """
    if not enabled():
        return None
    key = hashlib.sha256(source.encode()).hexdigest()
    with _LOCK:
        if key not in _LOADED:
            lib = _build(name, source)
            for fn, argtypes in signatures.items() if lib is not None else ():
                declare(lib, fn, *argtypes)
            _LOADED[key] = lib
        return _LOADED[key]


def _build(name: str, source: str) -> ctypes.CDLL | None:
    cc = compiler()
    if cc is None:
        log.info("no C compiler: %s runs its numpy path", name)
        return None
    with tempfile.TemporaryDirectory(prefix="ctkd-native-") as tmp:   # mode 0700, removed after loading
        c_file, so_file = os.path.join(tmp, name + ".c"), os.path.join(tmp, name + ".so")
        with open(c_file, "w") as f:
            f.write(source)
        try:
            subprocess.run([cc, *FLAGS, "-o", so_file, c_file], check=True, capture_output=True,
                           timeout=COMPILE_TIMEOUT_S)
            return ctypes.CDLL(so_file)
        except (OSError, subprocess.SubprocessError) as err:
            detail = getattr(err, "stderr", b"") or b""
            log.warning("could not compile %s (%s); its numpy path runs instead. %s", name, err,
                        detail.decode(errors="replace")[-500:])
            return None


def array(dtype) -> type:
    """A ``ctypes`` argument type for a C-contiguous numpy array of ``dtype``: the call checks
    the dtype and layout (a mismatch raises ``ctypes.ArgumentError``) and holds the array while it runs."""
    return np.ctypeslib.ndpointer(dtype=dtype, flags="C_CONTIGUOUS")


def declare(lib: ctypes.CDLL, name: str, *argtypes) -> None:
    """Declares ``lib.name`` as a ``void`` function of ``argtypes``."""
    fn = getattr(lib, name)
    fn.argtypes, fn.restype = list(argtypes), None
