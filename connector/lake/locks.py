"""Lock files in an output: one extract per module at a time (:meth:`Output.acquire_lock`).

Locks are files created only if absent. Locally that is ``O_CREAT | O_EXCL``; a lock whose owner
ran on this host and whose pid is no longer alive is stale and is taken over with a warning. On
object stores the lock is created with fsspec's exclusive mode (``"xb"``, a conditional
``If-None-Match: *`` PUT on S3) and read back to check it is ours. Caveat: a store or fsspec
backend without exclusive create gets a best-effort lock (check, then write, then read back), which
two processes starting within the same instant could both pass. Locks held by another host are
never broken automatically: delete the lock file by hand once you know that run is gone.

The lock file holds the caller's ``owner_info`` (``module``, ``run_id``) with the pid, the host
name, the start time and a random token. The output provides the two primitives used here,
``_create_exclusive`` and ``_age_seconds``, one per kind of store.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from connector.errors import LockError

if TYPE_CHECKING:
    from connector.lake.output import Output

# The logger these warnings had before locks left output.py: log filters may match its name.
log = logging.getLogger("connector.lake.output")

# A lock file that cannot be parsed and is older than this is taken for a crash between creating
# and writing it; younger, it may belong to a process that is writing it right now.
UNREADABLE_LOCK_GRACE_SECONDS = 60.0


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lock:
    """A held lock; :meth:`release` (or leaving the ``with`` block) removes the lock file."""

    def __init__(self, output: Output, rel: str, info: Mapping[str, Any]) -> None:
        self.output = output
        self.rel = rel
        self.info = dict(info)
        self.released = False

    @property
    def location(self) -> str:
        """Where the lock file is, for messages."""
        return self.output.describe(self.rel)

    def release(self) -> None:
        """Remove the lock file if it is still ours (idempotent)."""
        if self.released:
            return
        self.released = True
        current = _parse_lock(self.output.read_bytes(self.rel))
        if current is not None and current.get("token") != self.info.get("token"):
            log.warning("lock %s is no longer ours; left in place", self.location)
            return
        self.output.delete(self.rel)

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _parse_lock(data: bytes | None) -> dict[str, Any] | None:
    """The lock's owner info; None when there is no lock file, ``{}`` when it cannot be parsed."""
    if data is None:
        return None
    try:
        info = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def acquire_lock(
    output: Output,
    rel: str,
    owner_info: Mapping[str, Any],
    now: Callable[[], datetime] | None = None,
) -> Lock:
    """Take the lock file ``rel`` (a clean relative path) in ``output``, or raise LockError.

    See :meth:`Output.acquire_lock`.
    """
    clock = now or (lambda: datetime.now(timezone.utc))
    info = {
        **owner_info,
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "started_at": clock().isoformat(),
        "token": uuid.uuid4().hex,
    }
    payload = json.dumps(info, indent=2).encode("utf-8")
    for _ in range(3):
        if output._create_exclusive(rel, payload):
            held = _parse_lock(output.read_bytes(rel))
            if held is not None and held.get("token") == info["token"]:
                return Lock(output, rel, info)
            # A store without exclusive create let another process overwrite our lock.
            raise _held_error(output, rel, held or {}, owner_info)
        held = _parse_lock(output.read_bytes(rel))
        if held is None:
            continue  # released between our attempt and the read: try again
        if not _is_stale(output, rel, held):
            raise _held_error(output, rel, held, owner_info)
        log.warning(
            "taking over stale lock %s (pid %s on %s is not running)",
            output.describe(rel),
            held.get("pid", "?"),
            held.get("hostname", "?"),
        )
        _break_stale(output, rel, held)
    raise LockError(f"could not take the lock {output.describe(rel)}: it keeps changing")


def _is_stale(output: Output, rel: str, held: Mapping[str, Any]) -> bool:
    if not held:
        age = output._age_seconds(rel)
        return age is not None and age > UNREADABLE_LOCK_GRACE_SECONDS
    if held.get("hostname") != socket.gethostname():
        return False
    pid = held.get("pid")
    return isinstance(pid, int) and not pid_alive(pid)


def _break_stale(output: Output, rel: str, held: Mapping[str, Any]) -> None:
    # Two processes may find the same stale lock: only the one that takes the "breaker" lock
    # removes it, and only if it still holds the same content, so a fresh lock is never lost.
    breaker = rel + ".break"
    if not output._create_exclusive(breaker, b"{}"):
        age = output._age_seconds(breaker)
        if age is not None and age > UNREADABLE_LOCK_GRACE_SECONDS:
            output.delete(breaker)
        return
    try:
        if _parse_lock(output.read_bytes(rel)) == held:
            output.delete(rel)
    finally:
        output.delete(breaker)


def _held_error(
    output: Output, rel: str, held: Mapping[str, Any], owner_info: Mapping[str, Any]
) -> LockError:
    module = owner_info.get("module") or held.get("module") or rel
    if not held:
        who = "a process that is still writing the lock file"
    else:
        who = (
            f"pid {held.get('pid', '?')} on {held.get('hostname', '?')} "
            f"(run {held.get('run_id', '?')}, since {held.get('started_at', '?')})"
        )
    return LockError(
        f"{module} is being extracted into this output by {who}; lock file "
        f"{output.describe(rel)}. If that run is gone, delete the lock file."
    )
