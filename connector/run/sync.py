"""One extract run: discover → plan → read → write → commit state → run manifest.

:func:`run_extract` discovers the modules (:func:`connector.run.catalog.discover`), runs one
:class:`~connector.run.module_job.ModuleJob` per module on a pool of worker threads, each while
holding the module's lock, turns each job's outcome into the module's report, and writes the run
manifest (``DIR/_runs/<run_id>.json``). What one module's job does, and how its writes stay safe
under crashes, stops and changes during the read, is told in :mod:`connector.run.module_job`.

Decisions:

* **Stops.** Daily credits spent (``CreditsExhausted``) or ``--max-credits`` reached
  (``BudgetExceeded``) stop every module: no module starts reading after that, ordered readers
  commit what they have, unordered ones drop it. Committed state stays, so a rerun resumes.
* **Credits per module.** The client's credit meter is shared (one budget for the run); the
  manifest splits what it billed by module (:mod:`connector.run.credits`), and reports what
  discovery spent as the run's own.
* **Workers.** At most :data:`~connector.run.workers.MAX_WORKERS` modules are read at once, and
  no more than there are modules; under ``--max-credits`` one at a time, the module read to the
  end longest ago first (:func:`_budget_order`), so that each rerun with the same budget gets
  further. A module whose least read does not fit what is left does not start
  (:mod:`connector.run.choosing`).
* **Signals.** With a :class:`~connector.run.workers.StopSignal` (the CLI's SIGINT and SIGTERM
  handlers set it), the first signal stops the run like a credit stop: no module starts, the
  credit meter refuses every new call, calls in flight finish and their modules stop at their
  next batch (ordered readers commit what they hold, as at a checkpoint; unordered ones drop
  it), locks are released, and the manifest says ``stopped: signal`` with exit 130 (SIGINT) or
  143 (SIGTERM). A second signal stops waiting for calls in flight: their locks are released
  (never during a commit) and the manifest written at once; the caller must then end the
  process (the abandoned threads are still in their calls).
* **Leases.** Each module's lock is a lease renewed in the background while the module runs
  (:meth:`~connector.lake.locks.Lock.keep_renewed`); a lease lost to another run stops the
  module before its next commit.
* **The output** is checked before the first call (:meth:`Output.check_writable`): a location
  that cannot take a file costs nothing. A write that fails mid-run for lack of space (or a
  quota, or an I/O error) stops the run (exit 7) after the module's uncommitted files are
  removed; what is committed stays, and a rerun resumes.
* **Zoho unreachable** once a call's retries are spent (:class:`ZohoUnreachable`) stops the run
  too (exit 6): the other modules would only fail the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from connector.config import Settings
from connector.crashpoints import crashpoint
from connector.errors import (
    BudgetExceeded,
    ConnectorError,
    CreditsExhausted,
    LockError,
    ModuleUnavailable,
    OutputWriteError,
    StopRequested,
    ZohoUnreachable,
)
from connector.lake.manifest import (
    STATUS_FAILED,
    STATUS_LOCKED,
    STATUS_NOT_RUN,
    STATUS_OK,
    STATUS_OUTPUT_FAILED,
    STATUS_SKIPPED,
    STATUS_STOPPED_BUDGET,
    STATUS_STOPPED_CREDITS,
    STATUS_STOPPED_SIGNAL,
    STATUS_UNREACHABLE,
    ModuleReport,
    RunManifest,
    new_run_id,
)
from connector.lake.memory import use_lean_pool
from connector.lake.output import Output, write_failure
from connector.lake.state import StateStore
from connector.redact import redact
from connector.run.catalog import Discovery, Target, discover_run, known_modules
from connector.run.credits import CreditAttribution
from connector.run.module_job import ModuleJob, OverBudget, RunContext
from connector.run.progress import Progress
from connector.run.workers import Abandon, StopSignal, pool_size
from connector.zoho.http import CreditMeter, ZohoClient
from connector.zoho.metadata import ModuleMeta

__all__ = ["connection_summary", "run_extract"]

log = logging.getLogger(__name__)

# Errors that stop the whole run, with the status the run and the module get.
_RUN_STOPPERS: tuple[tuple[type[ConnectorError], str], ...] = (
    (CreditsExhausted, STATUS_STOPPED_CREDITS),
    (BudgetExceeded, STATUS_STOPPED_BUDGET),
    (ZohoUnreachable, STATUS_UNREACHABLE),
    (OutputWriteError, STATUS_OUTPUT_FAILED),
)
# The exit code of a run stopped by one of them (credits and budget: the manifest's own rule).
_STOP_EXIT_CODES = {
    STATUS_UNREACHABLE: ZohoUnreachable.exit_code,
    STATUS_OUTPUT_FAILED: OutputWriteError.exit_code,
}
# How long the run waits for its modules before it looks at a signal again (a safety net: the
# second signal interrupts the wait itself).
_WAIT_SLICE = 1.0


def _locked_job(run: RunContext, target: Target, report: ModuleReport) -> None:
    """Take the module's lease, keep it renewed, run the job; release it whatever happens."""
    name = target.meta.api_name
    with run.store.lock(name, run.run_id, lease=run.settings.tuning.lock_lease_seconds) as lock:
        run.leases[name] = lock
        lock.keep_renewed()
        try:
            crashpoint("sync_locked")
            ModuleJob(run, target, report).execute()
        except OSError as exc:
            failure = write_failure(exc, run.output.describe(""))
            if failure is None:
                raise
            # Files placed but not yet covered by the state are removed now, not by the next
            # run: nothing partial stays visible. Removing frees space; it may still fail.
            with contextlib.suppress(OSError, ConnectorError):
                run.store.recover(name)
            raise failure from None
        finally:
            run.leases.pop(name, None)


def _record_failure(run: RunContext, report: ModuleReport, exc: Exception) -> None:
    """Put what stopped a module in its report; stop the run when the error stops them all."""
    if isinstance(exc, OverBudget):
        # This module's least read does not fit what is left; a smaller module's may.
        report.status, report.error = STATUS_STOPPED_BUDGET, str(exc)
        return
    for kind, status in _RUN_STOPPERS:
        if isinstance(exc, kind):
            report.status, report.error = status, str(exc)
            run.request_stop(status)
            return
    if isinstance(exc, LockError):
        report.status, report.error = STATUS_LOCKED, str(exc)
    elif isinstance(exc, StopRequested):
        report.status = run.stop_status or STATUS_STOPPED_SIGNAL
        report.error = "stopped: the run was stopping"
    elif isinstance(exc, ModuleUnavailable):
        report.status, report.error = STATUS_SKIPPED, f"not available: {exc}"
        report.reason = f"skipped: Zoho refuses the module ({exc.code or 'no data'})"
    elif isinstance(exc, ConnectorError):
        report.status, report.error = STATUS_FAILED, str(exc)
    else:
        # A bug or a surprise inside one module fails that module only; the traceback is in the
        # debug log and the manifest keeps the error, never hidden.
        log.debug("%s: unexpected error", report.module, exc_info=exc)
        report.status = STATUS_FAILED
        report.error = f"unexpected error: {type(exc).__name__}: {exc}"


def _run_module(run: RunContext, target: Target, report: ModuleReport) -> None:
    """Run one module in a worker thread; record the outcome in ``report`` (never raises
    a :class:`ConnectorError`)."""
    name = target.meta.api_name
    run.attribution.bind(name)
    started = time.monotonic()
    try:
        if run.stopping():
            report.status = run.stop_status or STATUS_NOT_RUN
            report.error = "not started: the run was stopping"
            return
        if target.error is not None:
            raise target.error
        _locked_job(run, target, report)
        crashpoint("sync_module_done")
        report.status = STATUS_OK
    except Exception as exc:
        _record_failure(run, report, exc)
    finally:
        # Credits a Bulk read held and did not spend go back to the budget.
        run.client.meter.drop_hold()
        spend = run.attribution.of(name)
        report.credits, report.calls = spend.credits, spend.calls
        report.duration_s = round(time.monotonic() - started, 3)
        run.attribution.bind(None)
        # The last line of the module in the log shows what its line in the summary table shows.
        run.progress.update(name, rows=report.rows, credits=spend.total)
        run.progress.finish_module(name, report.status)
        if report.error:
            log.warning("%s: %s", name, report.error)


def connection_summary(settings: Settings, client: ZohoClient) -> dict[str, Any]:
    """What the manifest says about the connection: no secret, no client id."""
    return {
        "region": settings.region.value,
        "instance_type": settings.instance_type.value,
        "api_type": settings.api_type.value,
        "use_coql": settings.use_coql,
        "api_version": settings.api_version,
        "api_domain": client.api_domain,
    }


def run_extract(
    settings: Settings,
    output: str,
    *,
    modules: Sequence[str] | None = None,
    full_refresh: bool = False,
    workers: int | None = None,
    max_credits: int | None = None,
    progress: Progress | None = None,
    client: ZohoClient | None = None,
    checkpoint_rows: int | None = None,
    sleep: Callable[[float], None] | None = None,
    stop: StopSignal | None = None,
) -> RunManifest:
    """Extract ``modules`` (default: every extractable module) into ``output``; one run.

    Returns the run manifest (also written to ``output/_runs/<run_id>.json``); its ``exit_code``
    is 0 when every module succeeded (unavailable modules are skipped and reported), 1 when a
    module failed, 4 when credits or the ``max_credits`` budget stopped the run, 5 when a module
    was locked by another extract, 6 when Zoho could not be reached, 7 when writing the output
    failed (no space left), 130 or 143 when ``stop`` was signalled (SIGINT, SIGTERM). An output
    that cannot take a file is a :class:`ConfigError` before anything is spent; that, an unknown
    module or an :class:`AuthError` before any module started propagates; so do unexpected
    exceptions.
    """
    use_lean_pool()  # Arrow's buffers from jemalloc: a lower peak RSS (connector.lake.memory)
    started = datetime.now(timezone.utc)
    run_id = new_run_id(started)
    out = Output.open(output)
    # Before the first call: an output that cannot take a file must cost nothing.
    out.check_writable()
    own_client = client is None
    client = client or ZohoClient(settings)
    progress = progress or Progress()
    meter = client.meter
    previous_budget = meter.budget
    if max_credits is not None:
        meter.budget = meter.total + max_credits
    attribution = CreditAttribution(meter)
    attribution.install()
    if stop is not None:
        meter.stopping = lambda: stop.requested
    manifest = RunManifest(
        run_id=run_id, started_at=started, output=str(output), max_credits=max_credits
    )
    start = _Reading.of(meter)
    failure: BaseException | None = None
    stop_status: str | None = None
    try:
        attribution.bind(None)
        # The named modules' fields calls go at once, like their reads (one at a time under a
        # budget, as the reads then go: see _budget_order).
        at_once = pool_size(workers, settings.tuning.workers, len(modules or ()))
        if max_credits is not None:
            at_once = 1
        known = known_modules(StateStore(out), modules)
        found = _discover(client, modules, known, manifest, stop, at_once)
        targets = found.targets
        manifest.connection = connection_summary(settings, client)
        manifest.modules = [ModuleReport(t.meta.api_name) for t in targets]
        manifest.modules.extend(
            ModuleReport(
                meta.api_name,
                status=STATUS_SKIPPED,
                reason=f"skipped: {why}",
                error=f"skipped: {why}",
            )
            for meta, why in found.skipped
        )
        run = RunContext(
            settings=settings,
            client=client,
            output=out,
            store=StateStore(out),
            run_id=run_id,
            full_refresh=full_refresh,
            progress=progress,
            attribution=attribution,
            checkpoint_rows=max(
                1,
                checkpoint_rows if checkpoint_rows is not None else settings.tuning.checkpoint_rows,
            ),
            sleep=sleep,
            signal=stop,
        )
        n_workers = pool_size(workers, settings.tuning.workers, len(targets))
        reports = manifest.modules[: len(targets)]
        if max_credits is not None:
            targets, reports, n_workers = _budget_order(run.store, targets, reports)
        for report in _run_modules(run, targets, reports, n_workers):
            index = next(i for i, m in enumerate(manifest.modules) if m is report)
            manifest.modules[index] = _abandoned(report)
        stop_status = run.stop_status
        if stop_status is not None:
            manifest.status = stop_status
    except BaseException as exc:
        # The manifest is written whatever happened; the error still goes up to the caller.
        failure = exc
        raise
    finally:
        attribution.uninstall()
        meter.stopping = None
        if max_credits is not None:
            meter.budget = previous_budget
        progress.close()
        start.spent(meter, manifest)
        manifest.discovery_credits = attribution.of(None).credits
        if own_client:
            client.close()
        manifest.finish()
        if failure is not None:
            manifest.status, manifest.exit_code = STATUS_FAILED, _exit_code_of(failure)
            manifest.message = redact(f"the run stopped: {type(failure).__name__}: {failure}")
        _settle_stop(manifest, stop_status or manifest.status, stop)
        crashpoint("sync_before_manifest")
        _write_manifest(manifest, out)
    return manifest


def _settle_stop(manifest: RunManifest, status: str, stop: StopSignal | None) -> None:
    """The run's status, exit code and message when a signal, the network or the disk stopped
    it (the manifest settles credits, budget, locks and failures itself)."""
    if stop is not None and stop.requested:
        manifest.status, manifest.exit_code = STATUS_STOPPED_SIGNAL, stop.exit_code
        manifest.message = (
            f"stopped by {stop.name}: committed data and state are kept, and a rerun resumes "
            "from them"
        )
    elif status in _STOP_EXIT_CODES and manifest.exit_code in (0, 1):
        manifest.status, manifest.exit_code = status, _STOP_EXIT_CODES[status]
        errors = [m.error for m in manifest.modules if m.status == status and m.error]
        manifest.message = errors[0] if errors else manifest.message


def _write_manifest(manifest: RunManifest, out: Output) -> None:
    """Write the manifest; a full disk here too is an :class:`OutputWriteError` (exit 7)."""
    try:
        manifest.write(out)
    except OSError as exc:
        failure = write_failure(exc, out.describe(""))
        if failure is None:
            raise
        raise failure from None


def _exit_code_of(exc: BaseException | None) -> int:
    """The exit code an error that stopped the whole run gives (1 when it is not ours)."""
    return exc.exit_code if isinstance(exc, ConnectorError) else 1


def _discover(
    client: ZohoClient,
    modules: Sequence[str] | None,
    known: Mapping[str, ModuleMeta],
    manifest: RunManifest,
    stop: StopSignal | None,
    workers: int,
) -> Discovery:
    """The run's modules (their fields fetched ``workers`` at once); none when credits or the
    budget ran out first, or a signal came (the manifest says so)."""
    try:
        # Discovery's calls run on this thread or are waited for here: a second signal may
        # interrupt them.
        with _interruptible(stop):
            found = discover_run(client, modules, known, workers=workers)
        crashpoint("sync_discovered")
    except (StopRequested, Abandon):
        manifest.status = STATUS_STOPPED_SIGNAL
        return Discovery([])
    except CreditsExhausted as exc:
        manifest.status, manifest.message = STATUS_STOPPED_CREDITS, str(exc)
        return Discovery([])
    except BudgetExceeded as exc:
        manifest.status, manifest.message = STATUS_STOPPED_BUDGET, str(exc)
        return Discovery([])
    return found


@contextlib.contextmanager
def _interruptible(stop: StopSignal | None) -> Iterator[None]:
    """While inside, a second signal raises :class:`Abandon` here (see :class:`StopSignal`)."""
    if stop is None:
        yield
        return
    if stop.abandon:
        raise Abandon
    stop.interruptible = True
    try:
        yield
    finally:
        stop.interruptible = False


def _budget_order(
    store: StateStore, targets: Sequence[Target], reports: Sequence[ModuleReport]
) -> tuple[list[Target], list[ModuleReport], int]:
    """Under ``--max-credits``: the modules one at a time, the one read to the end longest ago
    (or never) first.

    Spread over workers at once, a small budget pays every module's fields call and count and
    may leave none enough to land a page; one at a time, the first gets what is left, and a
    module that a budget stopped goes first until it completes, so a rerun with the same budget
    always gets further.
    """
    oldest = datetime.min.replace(tzinfo=timezone.utc)

    def committed(pair: tuple[Target, ModuleReport]) -> datetime:
        try:
            return store.load(pair[0].meta.api_name).completed_at or oldest
        except ConnectorError:
            return oldest  # the module's own job reports a bad state file

    pairs = sorted(zip(targets, reports, strict=True), key=committed)
    return [t for t, _ in pairs], [r for _, r in pairs], 1


def _run_modules(
    run: RunContext, targets: Sequence[Target], reports: Sequence[ModuleReport], workers: int
) -> list[ModuleReport]:
    """Run every module's job on ``workers`` threads, each filling in its report.

    Returns the reports of the modules abandoned in flight by a second signal (their locks
    released, their threads left in their calls), usually none.
    """
    if not targets:
        return []
    pool = ThreadPoolExecutor(workers, thread_name_prefix="extract")
    futures: dict[Future[None], int] = {
        pool.submit(_run_module, run, t, r): i
        for i, (t, r) in enumerate(zip(targets, reports, strict=True))
    }
    pending = set(futures)
    try:
        while pending:
            with _interruptible(run.signal):
                done, pending = wait(
                    pending,
                    timeout=None if run.signal is None else _WAIT_SLICE,
                    return_when=FIRST_COMPLETED,
                )
            for future in done:
                future.result()
            run.stopping()  # a signal that came meanwhile stops the modules not started
    except Abandon:
        pool.shutdown(wait=False, cancel_futures=True)
        for lease in list(run.leases.values()):
            lease.release()  # waits for a commit under way, never cuts one
        return [reports[futures[f]] for f in futures if not f.done()]
    pool.shutdown()
    return []


def _abandoned(report: ModuleReport) -> ModuleReport:
    """A copy of a report its worker thread may still touch, marked as abandoned."""
    copy = dataclasses.replace(report)
    for spec in dataclasses.fields(copy):
        value = getattr(copy, spec.name)
        if isinstance(value, (list, dict)):
            setattr(copy, spec.name, type(value)(value))
    copy.status = STATUS_STOPPED_SIGNAL
    copy.error = (
        "stopped at once by a second signal while a call was in flight; what it had not "
        "committed is read again by the next run"
    )
    return copy


@dataclass(frozen=True)
class _Reading:
    """The shared meter's counters when the run started: the manifest reports what it added."""

    calls: int
    by_kind: dict[str, int]
    token_refreshes: int

    @classmethod
    def of(cls, meter: CreditMeter) -> _Reading:
        return cls(meter.calls, meter.by_kind, meter.token_refreshes)

    def spent(self, meter: CreditMeter, manifest: RunManifest) -> None:
        """Fill in the manifest's credits by kind, calls and token refreshes since this reading."""
        manifest.credits = {
            k: v - self.by_kind.get(k, 0)
            for k, v in meter.by_kind.items()
            if v - self.by_kind.get(k, 0)
        }
        manifest.calls = meter.calls - self.calls
        manifest.token_refreshes = meter.token_refreshes - self.token_refreshes
