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
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
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
)
from connector.lake.manifest import (
    STATUS_FAILED,
    STATUS_LOCKED,
    STATUS_NOT_RUN,
    STATUS_OK,
    STATUS_SKIPPED,
    STATUS_STOPPED_BUDGET,
    STATUS_STOPPED_CREDITS,
    ModuleReport,
    RunManifest,
    new_run_id,
)
from connector.lake.output import Output
from connector.lake.state import StateStore
from connector.redact import redact
from connector.run.catalog import Discovery, Target, discover_run
from connector.run.credits import CreditAttribution
from connector.run.module_job import ModuleJob, OverBudget, RunContext, Stopped
from connector.run.progress import Progress
from connector.run.workers import pool_size
from connector.zoho.http import CreditMeter, ZohoClient

__all__ = ["connection_summary", "run_extract"]

log = logging.getLogger(__name__)


def _run_module(run: RunContext, target: Target, report: ModuleReport) -> None:
    """Run one module in a worker thread; record the outcome in ``report`` (never raises
    a :class:`ConnectorError`)."""
    name = target.meta.api_name
    run.attribution.bind(name)
    try:
        if run.stop.is_set():
            report.status = run.stop_status or STATUS_NOT_RUN
            report.error = "not started: the run was stopping"
            return
        if target.error is not None:
            raise target.error
        with run.store.lock(name, run.run_id):
            crashpoint("sync_locked")
            job = ModuleJob(run, target, report)
            job.execute()
        crashpoint("sync_module_done")
        report.status = STATUS_OK
    except LockError as exc:
        report.status, report.error = STATUS_LOCKED, str(exc)
    except CreditsExhausted as exc:
        report.status, report.error = STATUS_STOPPED_CREDITS, str(exc)
        run.request_stop(STATUS_STOPPED_CREDITS)
    except OverBudget as exc:
        # This module's least read does not fit what is left; a smaller module's may.
        report.status, report.error = STATUS_STOPPED_BUDGET, str(exc)
    except BudgetExceeded as exc:
        report.status, report.error = STATUS_STOPPED_BUDGET, str(exc)
        run.request_stop(STATUS_STOPPED_BUDGET)
    except Stopped:
        report.status = run.stop_status or STATUS_STOPPED_CREDITS
        report.error = "stopped: the run was stopping"
    except ModuleUnavailable as exc:
        report.status, report.error = STATUS_SKIPPED, f"not available: {exc}"
        report.reason = f"skipped: Zoho refuses the module ({exc.code or 'no data'})"
    except ConnectorError as exc:
        report.status, report.error = STATUS_FAILED, str(exc)
    except Exception as exc:
        # A bug or a surprise inside one module fails that module only; the traceback is in the
        # debug log and the manifest keeps the error, never hidden.
        log.debug("%s: unexpected error", name, exc_info=True)
        report.status = STATUS_FAILED
        report.error = f"unexpected error: {type(exc).__name__}: {exc}"
    finally:
        # Credits a Bulk read held and did not spend go back to the budget.
        run.client.meter.drop_hold()
        spend = run.attribution.of(name)
        report.credits, report.calls = spend.credits, spend.calls
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
) -> RunManifest:
    """Extract ``modules`` (default: every extractable module) into ``output``; one run.

    Returns the run manifest (also written to ``output/_runs/<run_id>.json``); its ``exit_code``
    is 0 when every module succeeded (unavailable modules are skipped and reported), 1 when a
    module failed, 4 when credits or the ``max_credits`` budget stopped the run, 5 when a module
    was locked by another extract. A :class:`ConfigError` (unknown module) or an
    :class:`AuthError` before any module started propagates; so do unexpected exceptions.
    """
    started = datetime.now(timezone.utc)
    run_id = new_run_id(started)
    own_client = client is None
    client = client or ZohoClient(settings)
    progress = progress or Progress()
    meter = client.meter
    previous_budget = meter.budget
    if max_credits is not None:
        meter.budget = meter.total + max_credits
    attribution = CreditAttribution(meter)
    attribution.install()
    out = Output.open(output)
    manifest = RunManifest(
        run_id=run_id, started_at=started, output=str(output), max_credits=max_credits
    )
    start = _Reading.of(meter)
    failure: BaseException | None = None
    try:
        attribution.bind(None)
        found = _discover(client, modules, manifest)
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
        )
        n_workers = pool_size(workers, settings.tuning.workers, len(targets))
        reports = manifest.modules[: len(targets)]
        if max_credits is not None:
            targets, reports, n_workers = _budget_order(run.store, targets, reports)
        _run_modules(run, targets, reports, n_workers)
        if run.stop_status is not None:
            manifest.status = run.stop_status
    except BaseException as exc:
        # The manifest is written whatever happened; the error still goes up to the caller.
        failure = exc
        raise
    finally:
        attribution.uninstall()
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
        crashpoint("sync_before_manifest")
        manifest.write(out)
    return manifest


def _exit_code_of(exc: BaseException | None) -> int:
    """The exit code an error that stopped the whole run gives (1 when it is not ours)."""
    return exc.exit_code if isinstance(exc, ConnectorError) else 1


def _discover(
    client: ZohoClient, modules: Sequence[str] | None, manifest: RunManifest
) -> Discovery:
    """The run's modules; none when credits or the budget ran out first (the manifest says so)."""
    try:
        found = discover_run(client, modules)
        crashpoint("sync_discovered")
    except CreditsExhausted as exc:
        manifest.status, manifest.message = STATUS_STOPPED_CREDITS, str(exc)
        return Discovery([])
    except BudgetExceeded as exc:
        manifest.status, manifest.message = STATUS_STOPPED_BUDGET, str(exc)
        return Discovery([])
    return found


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
) -> None:
    """Run every module's job on ``workers`` threads, each filling in its report."""
    if not targets:
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="extract") as pool:
        futures = [
            pool.submit(_run_module, run, t, r) for t, r in zip(targets, reports, strict=True)
        ]
        for future in futures:
            future.result()


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
