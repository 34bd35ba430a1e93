"""The library's log, routed to Python's :mod:`logging` (logger ``eventstore``).

The C library logs what recovery cut off, a handle poisoned by a failed write or sync,
and a failed close, through one process-wide callback (``es_set_log_callback``). The
binding sets it when it loads the library; each message becomes a record of the logger
named ``eventstore`` at the matching level.

Three rules keep this from ever hurting the process:

- The ctypes callback object is never freed: the C library keeps its address for the
  life of the process, and a message being delivered on another thread when the
  callback is replaced may still reach it. A reference is leaked on purpose (module
  globals are cleared at interpreter exit, which would free it).
- It never raises into C: everything it does is inside ``try/except BaseException``.
- It does not run Python once the interpreter is finalising: an ``atexit`` handler
  removes the callback (the library is then silent) before finalisation starts, and a
  message that still arrives during finalisation is dropped.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import sys
from typing import Any, Optional

from . import _native

LOGGER_NAME = "eventstore"
logger = logging.getLogger(LOGGER_NAME)

LEVELS = {
    _native.ES_LOG_ERROR: logging.ERROR,
    _native.ES_LOG_WARN: logging.WARNING,
    _native.ES_LOG_INFO: logging.INFO,
    _native.ES_LOG_DEBUG: logging.DEBUG,
}

_installed: Optional[_native.Library] = None


def _deliver(context: Optional[int], level: int, message: Optional[bytes]) -> None:
    # Called by the library, from any thread, with the GIL taken by ctypes.
    try:
        if sys.is_finalizing():
            return
        pylevel = LEVELS.get(level, logging.WARNING)
        if not logger.isEnabledFor(pylevel):
            return
        text = message.decode("utf-8", "replace") if message is not None else ""
        logger.log(pylevel, "%s", text)
    except BaseException:  # noqa: BLE001 - nothing may propagate into C
        pass


_CALLBACK: Any = _native.es_log_fn(_deliver)
# Leaked on purpose: the callback's code must outlive every possible call from C.
ctypes.pythonapi.Py_IncRef(ctypes.py_object(_CALLBACK))


def install(lib: _native.Library) -> None:
    """Routes ``lib``'s log to the ``eventstore`` logger (once per process), and
    removes the callback at interpreter exit."""
    global _installed
    if _installed is not None:
        return
    lib.es_set_log_callback(_CALLBACK, None)
    _installed = lib
    atexit.register(_uninstall)


def _uninstall() -> None:
    global _installed
    lib = _installed
    if lib is not None:
        # A NULL function pointer: ctypes passes None as NULL for a CFUNCTYPE argument.
        lib.es_set_log_callback(_native.es_log_fn(), None)
        _installed = None
