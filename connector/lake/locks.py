"""Lock files in an output: one extract per module at a time (:meth:`Output.acquire_lock`).

A lock is a **lease**. The lock file records its holder (module, run id, pid, host, since when)
and an expiry, ``expires_at``, one lease (``lock_lease_seconds``, 5 minutes by default) ahead;
the extract that holds it renews it every third of a lease (:meth:`Lock.keep_renewed`, a
background thread). So a lock whose holder died, on any host (a killed pod, a lost VM), expires
within one lease, and the next run takes it over, with a warning naming the old holder. A lock
whose holder ran on this host and whose pid is gone is taken over at once, without waiting for
its lease. ``zoho-crm unlock DIR --module M`` removes a lock by hand (:func:`read_lock`,
:func:`break_lock`).

Locks are created only if absent: locally ``O_CREAT | O_EXCL``; on object stores fsspec's
exclusive mode (``"xb"``, a conditional ``If-None-Match: *`` PUT on S3), read back to check it
is ours. Taking over an expired lock goes through the same primitive: only the run that creates
the ``<lock>.break`` file may remove the expired lock, and only while it still holds the content
that was found expired; then every contender tries the exclusive create again and one wins. Two
runs taking over at once therefore cannot both hold the lock.

Windows that cannot be closed here, and why they do not matter in practice:

* A store or fsspec backend **without exclusive create** gets a best-effort lock (check, write,
  read back), which two processes starting within the same instant could both pass.
* Renewal and break are read-then-write, and object stores offer no compare-and-swap through
  fsspec: a holder stalled for more than two thirds of a lease (renewal every third) may find
  its lease taken over; its next renewal sees the lock is no longer its own, and the run stops
  that module before its next commit (:meth:`Lock.held`). Keep the lease well above the longest
  pause a process may see (and above the clock difference between hosts: expiry is compared
  with the reader's clock).

The output provides the two primitives used here, ``_create_exclusive`` and ``_age_seconds``,
one per kind of store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from connector.errors import LockError

if TYPE_CHECKING:
    from connector.lake.output import Output

# The logger these warnings had before locks left output.py: log filters may match its name.
log = logging.getLogger("connector.lake.output")

# A lock file that cannot be parsed and is older than this is taken for a crash between creating
# and writing it; younger, it may belong to a process that is writing it right now.
UNREADABLE_LOCK_GRACE_SECONDS = 60.0
# How long a lock stays valid without renewal (the ``lock_lease_seconds`` tuning knob).
DEFAULT_LEASE_SECONDS = 300.0
# Renewals per lease: a holder may miss one and still keep its lock.
RENEWALS_PER_LEASE = 3

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


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


def _payload(info: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(info), indent=2).encode("utf-8")


def lease_expiry(info: Mapping[str, Any]) -> datetime | None:
    """When the lease recorded in ``info`` expires, or None (an old lock file, or unreadable)."""
    text = info.get("expires_at")
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


class Lock:
    """A held lease; :meth:`release` (or leaving the ``with`` block) removes the lock file."""

    def __init__(
        self,
        output: Output,
        rel: str,
        info: Mapping[str, Any],
        *,
        lease: float = DEFAULT_LEASE_SECONDS,
        now: Clock = _utc_now,
    ) -> None:
        self.output = output
        self.rel = rel
        self.info = dict(info)
        self.lease = lease
        self.released = False
        self.lost = False
        """True once a renewal found the lock taken over: this run must not commit again."""
        self._now = now
        # Held around a commit (:meth:`held`) and around renewal and release, so that a lock
        # released from another thread (a fast stop) never goes while a commit is under way.
        self._guard = threading.RLock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def location(self) -> str:
        """Where the lock file is, for messages."""
        return self.output.describe(self.rel)

    @property
    def expires_at(self) -> datetime | None:
        """When this lease expires unless renewed."""
        return lease_expiry(self.info)

    def renew(self) -> bool:
        """Push the expiry one lease ahead if the lock is still ours; False (and :attr:`lost`)
        if another run took it over, False without change once released."""
        with self._guard:
            if self.released or self.lost:
                return False
            current = _parse_lock(self.output.read_bytes(self.rel))
            if current is None or current.get("token") != self.info.get("token"):
                self.lost = True
                log.error(
                    "lock %s is no longer held by this run (its lease expired and another run "
                    "took it over): %s stops before its next commit",
                    self.location,
                    self.info.get("module", self.rel),
                )
                return False
            now = self._now()
            self.info["renewed_at"] = now.isoformat()
            self.info["expires_at"] = (now + timedelta(seconds=self.lease)).isoformat()
            self.output.write_bytes_atomic(self.rel, _payload(self.info))
            return True

    def keep_renewed(self, *, wait: Callable[[float], bool] | None = None) -> None:
        """Renew the lease every third of a lease on a background thread until released.

        ``wait(seconds)`` returns True to stop (default: this lock's stop event); tests inject it.
        """
        if self._renewer is not None:
            return
        interval = self.lease / RENEWALS_PER_LEASE
        pause = wait or self._stop.wait

        def loop() -> None:
            while not pause(interval):
                try:
                    if not self.renew():
                        return
                except Exception as exc:
                    # A store that failed once (a network blip) gets another try next interval;
                    # the lease outlasts two missed renewals. Never a traceback from this thread.
                    log.warning("could not renew lock %s: %s", self.location, exc)

        self._renewer = threading.Thread(
            target=loop, name=f"lease-{self.info.get('module', '')}", daemon=True
        )
        self._renewer.start()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock steady for a commit; :class:`LockError` if it was lost or released."""
        with self._guard:
            if self.lost or self.released:
                raise LockError(
                    f"the lock {self.location} is no longer held by this run; nothing more is "
                    "committed (a rerun resumes from the last commit)"
                )
            yield

    def release(self) -> None:
        """Stop renewing and remove the lock file if it is still ours (idempotent, any thread)."""
        self._stop.set()
        with self._guard:
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


def read_lock(output: Output, rel: str) -> dict[str, Any] | None:
    """What the lock file ``rel`` says (``{}`` if unreadable), or None when there is none."""
    return _parse_lock(output.read_bytes(rel))


def acquire_lock(
    output: Output,
    rel: str,
    owner_info: Mapping[str, Any],
    now: Clock | None = None,
    *,
    lease: float = DEFAULT_LEASE_SECONDS,
) -> Lock:
    """Take the lock file ``rel`` (a clean relative path) in ``output``, or raise LockError.

    See :meth:`Output.acquire_lock`.
    """
    clock = now or _utc_now
    started = clock()
    info = {
        **owner_info,
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "started_at": started.isoformat(),
        "renewed_at": started.isoformat(),
        "expires_at": (started + timedelta(seconds=lease)).isoformat(),
        "lease_seconds": lease,
        "token": uuid.uuid4().hex,
    }
    payload = _payload(info)
    for _ in range(3):
        if output._create_exclusive(rel, payload):
            held = _parse_lock(output.read_bytes(rel))
            if held is not None and held.get("token") == info["token"]:
                return Lock(output, rel, info, lease=lease, now=clock)
            # A store without exclusive create let another process overwrite our lock.
            raise _held_error(output, rel, held or {}, owner_info)
        held = _parse_lock(output.read_bytes(rel))
        if held is None:
            continue  # released between our attempt and the read: try again
        why = _stale_because(output, rel, held, clock())
        if why is None:
            raise _held_error(output, rel, held, owner_info)
        log.warning("taking over the lock %s: %s", output.describe(rel), why)
        break_lock(output, rel, held)
    raise LockError(f"could not take the lock {output.describe(rel)}: it keeps changing")


def _stale_because(output: Output, rel: str, held: Mapping[str, Any], now: datetime) -> str | None:
    """Why the lock ``held`` may be taken over, or None while its holder may be alive."""
    if not held:
        age = output._age_seconds(rel)
        if age is not None and age > UNREADABLE_LOCK_GRACE_SECONDS:
            return f"the lock file has been unreadable for {age:.0f} s"
        return None
    holder = _holder(held)
    expires = lease_expiry(held)
    if expires is not None and now >= expires:
        return f"the lease of {holder} expired at {expires.isoformat()}"
    if held.get("hostname") != socket.gethostname():
        # Another host: only its lease tells whether it lives (an old lock file has none).
        return None
    pid = held.get("pid")
    if isinstance(pid, int) and not pid_alive(pid):
        return f"{holder} is not running (a stale lock)"
    return None


def break_lock(output: Output, rel: str, held: Mapping[str, Any]) -> bool:
    """Remove the lock ``rel`` if it still holds ``held``; True if this call removed it.

    Two processes may find the same expired lock: only the one that creates the ``.break`` file
    removes it, and only if it still holds the same content, so a fresh lock is never lost.
    """
    breaker = rel + ".break"
    if not output._create_exclusive(breaker, b"{}"):
        age = output._age_seconds(breaker)
        if age is not None and age > UNREADABLE_LOCK_GRACE_SECONDS:
            output.delete(breaker)
        return False
    try:
        if _parse_lock(output.read_bytes(rel)) != held:
            return False
        output.delete(rel)
        return True
    finally:
        output.delete(breaker)


def _holder(held: Mapping[str, Any]) -> str:
    return (
        f"pid {held.get('pid', '?')} on {held.get('hostname', '?')} "
        f"(run {held.get('run_id', '?')}, since {held.get('started_at', '?')})"
    )


def describe_holder(held: Mapping[str, Any], now: datetime | None = None) -> str:
    """Who holds a lock and until when, in one line (for messages and ``zoho-crm unlock``)."""
    if not held:
        return "a process that is still writing the lock file (it cannot be read yet)"
    text = _holder(held)
    expires = lease_expiry(held)
    if expires is None:
        return text + ", no lease (written by an older version)"
    state = "expired" if (now or _utc_now()) >= expires else "lease until"
    return f"{text}, {state} {expires.isoformat()}"


def _held_error(
    output: Output, rel: str, held: Mapping[str, Any], owner_info: Mapping[str, Any]
) -> LockError:
    module = owner_info.get("module") or held.get("module") or rel
    who = describe_holder(held)
    if lease_expiry(held) is not None:
        after = (
            "The holder renews its lease while it runs; if that run is gone, the first run "
            "after the lease expires takes the lock over, or remove it now with "
            f"`zoho-crm unlock {output.describe('')} --module {module}`."
        )
    else:
        after = (
            f"If that run is gone, remove the lock with `zoho-crm unlock "
            f"{output.describe('')} --module {module}` (or delete the lock file)."
        )
    return LockError(
        f"{module} is being extracted into this output by {who}; lock file "
        f"{output.describe(rel)}. {after}"
    )
