"""Named crash points: kill the process at a chosen step, to prove a crash loses nothing.

The crash-safety tests run ``zoho-crm extract`` in a subprocess with ``ZOHO_CRM_CRASH_AT`` set to
a point's name, or ``name:N`` for the N-th time the point is reached (counted from 1). When the
process reaches it, it sends itself ``SIGKILL``: no ``finally`` block, no ``atexit`` handler, no
flush runs, exactly as when the machine loses power or the OOM killer strikes.

The variable is read once, at import. Without it :func:`crashpoint` is a near-free no-op (one
global comparison), so the calls can stay in production code.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
from typing import Any, BinaryIO, cast

ENV_VAR = "ZOHO_CRM_CRASH_AT"


def _parse(spec: str | None) -> tuple[str, int] | None:
    """``"name"`` -> ("name", 1); ``"name:N"`` -> ("name", N); empty or malformed -> None."""
    if not spec:
        return None
    name, sep, count = spec.strip().rpartition(":")
    if not sep:
        return (spec.strip(), 1) if spec.strip() else None
    if not name or not count.isdigit() or int(count) < 1:
        return None
    return name, int(count)


_TARGET = _parse(os.environ.get(ENV_VAR))
_hits = 0
_lock = threading.Lock()


def crashpoint(name: str) -> None:
    """Kill this process with SIGKILL if ``ZOHO_CRM_CRASH_AT`` names this point (and hit count)."""
    if _TARGET is None or _TARGET[0] != name:
        return
    global _hits
    with _lock:
        _hits += 1
        if _hits < _TARGET[1]:
            return
    os.kill(os.getpid(), signal.SIGKILL)


class _CrashingWriter:
    """A binary file wrapper that passes :func:`crashpoint` before every ``write``."""

    def __init__(self, inner: BinaryIO, name: str) -> None:
        self._inner = inner
        self._name = name

    def write(self, data: Any) -> int:
        crashpoint(self._name)
        return self._inner.write(data)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)


def crash_on_write(stream: BinaryIO, name: str) -> BinaryIO:
    """``stream`` itself, or (only when ``name`` is the armed point) a wrapper that crashes at a
    ``write`` (the N-th with ``name:N``): a crash in the middle of a download."""
    if _TARGET is None or _TARGET[0] != name:
        return stream
    return cast(BinaryIO, _CrashingWriter(stream, name))


def armed() -> str | None:
    """The point this process will crash at (``name:N``), or None; for diagnostics."""
    return None if _TARGET is None else f"{_TARGET[0]}:{_TARGET[1]}"


# ----------------------------------------------------------------------------------------------
# Write faults: a full disk on demand (a test hook, like the crash points).

FAIL_WRITE_ENV_VAR = "ZOHO_CRM_FAIL_WRITE_AT"
"""``N`` or ``ERRNO:N`` (``ENOSPC``, ``EDQUOT``, ``EIO``): the N-th write to the output fails.

Read once, at import. The writes counted are the output's durable writes (a state file, a run
manifest, a commit's data files), each through :func:`write_fault`; the N-th raises ``OSError``
with that errno (``ENOSPC`` by default) as a full disk would. Tests set it on a subprocess to
prove a full disk mid-run stops cleanly and a rerun resumes.
"""


def _parse_write_fault(spec: str | None) -> tuple[int, int] | None:
    """``"N"`` -> (ENOSPC, N); ``"EIO:N"`` -> (EIO, N); empty or malformed -> None."""
    if not spec:
        return None
    name, _, count = spec.strip().rpartition(":")
    code = getattr(errno, name or "ENOSPC", None)
    if not isinstance(code, int) or not count.isdigit() or int(count) < 1:
        return None
    return code, int(count)


_WRITE_FAULT = _parse_write_fault(os.environ.get(FAIL_WRITE_ENV_VAR))
_writes = 0


def write_fault(where: str) -> None:
    """Raise the armed ``OSError`` if this is the N-th write (see :data:`FAIL_WRITE_ENV_VAR`)."""
    if _WRITE_FAULT is None:
        return
    global _writes
    with _lock:
        _writes += 1
        if _writes != _WRITE_FAULT[1]:
            return
    code = _WRITE_FAULT[0]
    raise OSError(code, f"{os.strerror(code)} (test hook {FAIL_WRITE_ENV_VAR})", where)
