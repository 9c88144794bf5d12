"""Which reader a module's job reads with: the planner's rules (:mod:`connector.run.planner`)
applied to the module, its state and what Zoho answers, and the budget.

* A full load (or a module read in full every run) with ``APIType=Bulk``: the cheapest of the
  readers the settings allow, priced with a COQL count (1 credit) unless the last full load shows
  the module is large (:func:`~connector.run.planner.full_choice`). The manifest gets the reason
  and each reader's price.
* An incremental run with ``APIType=Bulk``: a COQL probe (LIMIT 200, 1 credit) that is the read
  when it holds every change; past it, a count and the cheaper of COQL and Bulk Read.
* A module with Bulk jobs an earlier run paid for (and Zoho may still serve) is read by Bulk
  Read taking them: 2 credits a job, no count, no probe.
* ``--max-credits``: a Bulk read is paid in full before it can commit anything, so it starts only
  when all of it fits in what is left, and then holds those credits
  (:meth:`~connector.zoho.meter.CreditMeter.hold`): no other module's call can strand the paid
  job. When it does not fit, a reader that commits as it goes (COQL, Records) reads instead, so
  a rerun with the same budget always gets further; when not even one page of that fits, the
  module does not start and its line says the least it needs (:class:`OverBudget`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from connector.errors import AuthError, BudgetExceeded, FatalAPIError, ZohoAPIError
from connector.lake.schema import ModuleSchema
from connector.readers import coql_count, coql_probe
from connector.readers.base import BULK, COQL
from connector.run.planner import (
    ReaderChoice,
    Shape,
    allowed_readers,
    cheapest_incremental,
    full_choice,
    full_read_credits,
    least_credits,
    resume_choice,
    static_choice,
)
from connector.zoho.limits import COQL_MAX_LIMIT
from connector.zoho.quirks import coql_refused
from connector.zoho.scopes import bulk_allowed, coql_allowed

if TYPE_CHECKING:
    from connector.run.module_job import ModuleJob

__all__ = ["OverBudget", "ReaderChooser"]


class OverBudget(BudgetExceeded):
    """A module not started: no read of it can land anything within what is left of the budget
    (the other modules go on: a smaller one may fit)."""


class ReaderChooser:
    """Chooses the reader of one module's job (the job's state and report are read and noted)."""

    def __init__(self, job: ModuleJob, schema: ModuleSchema) -> None:
        self.job = job
        self.schema = schema

    def choose(self, since: datetime | None) -> tuple[ReaderChoice, pa.RecordBatch | None]:
        """The reader, and the rows a COQL probe already read when that probe was the read;
        with ``--max-credits``, a reader whose read can land something within what is left."""
        choice, first = self._pick(since)
        if first is None and not self.job.users:
            choice = self._fit_budget(choice)
        return choice, first

    def _fit_budget(self, choice: ReaderChoice) -> ReaderChoice:
        """``choice``, or a reader that commits as it goes when a Bulk read (paid in full before
        it commits anything) does not fit in what is left of the budget; :class:`OverBudget`
        when no read can land anything. A Bulk read that fits holds its credits, so that no
        other module's call can strand the job once it is paid for."""
        meter = self.job.run.client.meter
        left = meter.left()
        if left is None:
            return choice
        shape = Shape.of(self.schema)
        rows = choice.rows if choice.rows is not None else (self.job.known_rows or 0)
        need = least_credits(choice.reader, rows, shape, resumed=choice.resumes)
        if need <= left:
            if choice.reader == BULK:
                meter.hold(need)
            return choice
        if choice.reader == BULK:
            ordered = [
                reader
                for reader in self._readers()
                if reader != BULK and least_credits(reader, rows, shape) <= left
            ]
            if ordered:
                # Rows unknown (no count): rank them by their rate per row.
                ranked = rows or 10 * COQL_MAX_LIMIT
                best = min(ordered, key=lambda r: full_read_credits(r, ranked, shape))
                return ReaderChoice(
                    best,
                    f"{choice.reason}; a Bulk read needs {need} credits and {left} are left of "
                    f"the budget: {best}, which commits as it goes",
                    fallback=choice.fallback,
                    rows=choice.rows,
                )
        raise OverBudget(
            f"not started: its cheapest read ({choice.reader}) needs at least {need} credits "
            f"and {left} are left of the budget"
        )

    def _readers(self) -> tuple[str, ...]:
        """The readers the settings allow for the module (the planner's rules)."""
        return allowed_readers(self.job.target.meta, **self._options())

    def _options(self) -> dict[str, Any]:
        """What the planner's rules need to know of the settings, the token and the module."""
        settings, scopes = self.job.run.settings, self.job.run.client.tokens.granted_scopes
        return {
            "api_type": settings.api_type.value,
            "use_coql": settings.use_coql,
            "coql_ok": coql_allowed(settings.use_coql, scopes),
            "bulk_ok": bulk_allowed(scopes),
            "coql_refused": [
                *coql_refused(self.job.name, frozenset(self.schema.names)),
                *self.job.learned_refused,
            ],
        }

    def _pick(self, since: datetime | None) -> tuple[ReaderChoice, pa.RecordBatch | None]:
        """The reader, and the rows a COQL probe already read when that probe was the read."""
        job, schema = self.job, self.schema
        run, meta = job.run, job.target.meta
        if job.users:
            return ReaderChoice("users", "the Users API (GET users?type=AllUsers)"), None
        resume = self._resume(since)
        if resume is not None:
            job.report.reader_prices = dict(resume.prices)
            return resume, None
        options = self._options()
        choice = static_choice(meta, incremental=since is not None, **options)
        priced = run.settings.tuning.price_readers
        if since is None and priced:
            choice = self._choose_full(choice, allowed_readers(meta, **options))
            job.report.reader_prices = dict(choice.prices)
            return choice, None
        if since is None:
            return choice, None
        if not choice.probe:
            readers = allowed_readers(meta, **options)
            if priced and len(readers) > 1 and BULK not in readers:
                # COQL or Records, each at a fixed rate per row: the cheaper one, no count.
                shape = Shape.of(schema)
                choice = full_choice(choice, readers, shape, count=None, what="incremental")
            return choice, None
        try:
            probe = coql_probe(run.client, schema, since)
        except AuthError as exc:
            # The COQL scope turned out to be missing: Bulk reads everything anyway.
            job.report.warnings.append(f"COQL probe refused ({exc}); reading with Bulk")
            return ReaderChoice(BULK, "APIType=Bulk, incremental (COQL refused)"), None
        except ZohoAPIError as exc:
            if job._coql_refused(exc, schema) is None:
                raise
            return self._pick(since)
        if not probe.more_records:
            reason = f"APIType=Bulk, incremental: {probe.rows} changes fit one COQL page"
            rows = probe.table
            first = pa.RecordBatch.from_arrays(
                [column.combine_chunks() for column in rows.columns], schema=rows.schema
            )
            return ReaderChoice(COQL, reason), first
        count = coql_count(run.client, job.name, since)
        return replace(cheapest_incremental(count, len(schema.arrow)), rows=count), None

    def _resume(self, since: datetime | None) -> ReaderChoice | None:
        """Bulk Read when an earlier run paid for jobs of this very read that Zoho may still
        serve (:mod:`connector.lake.bulk_jobs`): their status and download cost 2 credits a
        job, less than any other read, so nothing is counted or probed."""
        readers = self._readers()
        if BULK not in readers:
            return None
        paid = self.job.paid_jobs(self.schema, since)
        if not paid:
            return None
        return resume_choice(paid, Shape.of(self.schema), readers)

    def _choose_full(self, static: ReaderChoice, readers: tuple[str, ...]) -> ReaderChoice:
        """The cheapest reader of a full read (:func:`~connector.run.planner.full_choice`),
        counting the rows with COQL (1 credit) when that decides it."""
        job = self.job
        client = job.run.client

        def count() -> int:
            return coql_count(client, job.name, None)

        try:
            return full_choice(
                static,
                readers,
                Shape.of(self.schema),
                count=count if COQL in readers else None,
                known_rows=job.known_rows,
                what="read in full every run" if job.full_each_run else "full load",
            )
        except AuthError as exc:
            # The COQL scope turned out to be missing: the settings' reader reads everything.
            job.report.warnings.append(f"COQL count refused ({exc}); reading with {static.reader}")
            return static
        except FatalAPIError as exc:
            # A refusal of the module is a skip (ModuleUnavailable); one of a column, a re-choice.
            if job._coql_refused(exc, self.schema) is None:
                raise
            return self._pick(None)[0]
