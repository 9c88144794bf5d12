"""How many modules a run reads at once, and how a run is asked to stop from outside.

Apart from the run itself so the command line can name the allowed range, and install its
signal handlers, without importing the run (and Arrow with it) before it parses its options.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from connector.lake.manifest import STATUS_STOPPED_SIGNAL

if TYPE_CHECKING:
    from connector.lake.locks import Lock

T = TypeVar("T")
R = TypeVar("R")

# Zoho allows 10 concurrent heavy calls (COQL among them) per org, whatever the edition.
MAX_WORKERS = 10


def pool_size(requested: int | None, default: int, modules: int) -> int:
    """The worker threads for ``modules`` modules: ``requested`` (else ``default``), at most
    :data:`MAX_WORKERS` and the number of modules, at least 1."""
    return max(1, min(requested or default, MAX_WORKERS, modules or 1))


def map_at_once(function: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``[function(item) for item in items]``, with up to ``workers`` items at once.

    The results come in the order of ``items``; when calls fail, the first failing item's error
    is raised, as a loop would raise it, once every call has ended (the calls already made are
    counted, whoever made them). An interruption of the wait itself (a second signal's
    :class:`Abandon`) goes up at once, leaving the calls in flight to their threads. Each call
    runs in a fresh context on its thread: ``function`` sets what it needs (such as the module
    its credits are billed to) itself.
    """
    if workers <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    pool = ThreadPoolExecutor(min(workers, len(items)), thread_name_prefix="plan")
    futures: list[Future[R]] = []
    try:
        futures = [pool.submit(function, item) for item in items]
        for future in futures:
            future.exception()  # waits; the errors are raised in order below
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return [future.result() for future in futures]


class Abandon(BaseException):
    """Raised in the main thread by a second signal while it waits: stop waiting for calls in
    flight. A ``BaseException`` so that no ``except Exception`` on the way swallows it."""


class StopSignal:
    """A stop asked for from outside the run (SIGINT, SIGTERM), set from a signal handler.

    A signal handler runs between two bytecodes of the main thread, which may hold any lock at
    that moment, so :meth:`request` takes none: it sets plain attributes, which the run reads
    before each module and each paid call (:attr:`requested`). A second signal asks the run to
    stop waiting for the calls in flight (:attr:`abandon`); while the main thread is in a wait
    marked :attr:`interruptible`, the handler raises :class:`Abandon` there at once.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.count = 0
        self.interruptible = False

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.count > 0

    @property
    def abandon(self) -> bool:
        """Whether a second signal asked to stop without waiting for calls in flight."""
        return self.count > 1

    @property
    def exit_code(self) -> int:
        """The shell's code for the first signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + (self.signum or signal.SIGINT)

    @property
    def name(self) -> str:
        """The first signal's name (``SIGINT``, ``SIGTERM``)."""
        return signal.Signals(self.signum or signal.SIGINT).name

    def request(self, signum: int) -> int:
        """Note a signal (lock-free; safe in a signal handler); return how many came so far.

        Then call :meth:`interrupt`: a handler says what it does in between, once the count is
        right (a second signal may run its handler inside the first one's).
        """
        if self.signum is None:
            self.signum = signum
        self.count += 1
        return self.count

    def interrupt(self) -> None:
        """Raise :class:`Abandon` after a second signal while the main thread waits in an
        interruptible place; otherwise do nothing (the run sees :attr:`abandon` itself)."""
        if self.count > 1 and self.interruptible:
            self.interruptible = False
            raise Abandon


@dataclass(kw_only=True)
class RunStops:
    """How one run stops: its stop event and status, the signal it listens to, its leases.

    Credits, the budget or a signal stop every module (:meth:`request_stop`); each module checks
    :meth:`stopping` before each batch, and commits only while its lease holds
    (:meth:`holding`).
    """

    stop: threading.Event = field(default_factory=threading.Event)
    stop_status: str | None = None
    stop_lock: threading.Lock = field(default_factory=threading.Lock)
    signal: StopSignal | None = None
    """A stop asked for from outside (SIGINT, SIGTERM), if the caller listens for one."""
    leases: dict[str, Lock] = field(default_factory=dict)
    """The module locks held right now, by module."""

    def request_stop(self, status: str) -> None:
        """Stop every module (the first status asked for is the run's)."""
        with self.stop_lock:
            if self.stop_status is None:
                self.stop_status = status
            self.stop.set()

    def stopping(self) -> bool:
        """Whether the run is stopping (a signal counts from the moment it arrived)."""
        if self.signal is not None and self.signal.requested and not self.stop.is_set():
            self.request_stop(STATUS_STOPPED_SIGNAL)
        return self.stop.is_set()

    @contextlib.contextmanager
    def holding(self, module: str) -> Iterator[None]:
        """Keep ``module``'s lease steady around a commit; :class:`LockError` if it is gone."""
        lease = self.leases.get(module)
        if lease is None:
            yield
            return
        with lease.held():
            yield
