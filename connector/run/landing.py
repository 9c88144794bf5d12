"""One module's write loop: dedupe, write, commit, for records and tombstones alike.

A read's batches land in a :class:`Sink` (a writer, a watermark tracker, the state each commit
writes); :class:`Landing` drains them: rows already held are dropped, rows from the second that
is not over yet are deferred, the rest are written, and each commit places the files before the
state that lists them is written, so a crash at any point loses nothing and never advances a
watermark past data that was not written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc

from connector.crashpoints import crashpoint
from connector.errors import BudgetExceeded, CreditsExhausted, RetriableAPIError, StopRequested
from connector.lake.manifest import FileEntry, ModuleReport
from connector.lake.raw_values import RAW_VALUES, unfit_counts
from connector.lake.state import ModuleState, WatermarkTracker, dedupe_against_watermark
from connector.lake.writer import DatasetWriter, WrittenFile


def _entries(files: Iterable[WrittenFile]) -> list[FileEntry]:
    return [FileEntry(f.path, f.rows, f.bytes) for f in files]


def defer_live_edge(
    batch: pa.RecordBatch, cap: datetime | None, *, time_column: str = "Modified_Time"
) -> tuple[pa.RecordBatch, int]:
    """(the rows of ``batch`` modified before ``cap``, how many rows were left out).

    Zoho's ``Modified_Time`` has whole seconds: a version written from a second that is not over
    yet could be followed by another in the same second, with the same ``(id, Modified_Time)``,
    which the next run would then drop as already written. Rows with no time are kept (there is
    nothing to defer them to).
    """
    if cap is None or batch.num_rows == 0:
        return batch, 0
    times = batch.column(time_column)
    bound = pa.scalar(cap.astimezone(timezone.utc), type=times.type)
    keep = pc.fill_null(pc.less(times, bound), True)
    kept = pc.sum(keep.cast(pa.int64())).as_py() or 0
    if kept == batch.num_rows:
        return batch, 0
    return batch.filter(keep), batch.num_rows - kept


@dataclass
class Sink:
    """Where one read's batches land (records or tombstones), and what each commit records."""

    writer: DatasetWriter
    tracker: WatermarkTracker
    base: ModuleState
    """The state the read started from: rows it already holds are dropped."""
    state: ModuleState
    """The state each commit writes."""
    written_point: str
    committed_point: str
    landed: Callable[[list[FileEntry], int], None]
    """Adds the files and rows of a commit to the module's report."""
    defer_cap: datetime | None = None
    """Records only: rows modified at or after it are left for the next run."""
    pending: int = 0
    pending_unfit: Counter[str] = field(default_factory=Counter)
    """Per field, the values written since the last commit that are kept in ``$raw_values``."""


class Landing:
    """Drains batches into sinks and commits them, for one module."""

    def __init__(
        self,
        *,
        run_id: str,
        report: ModuleReport,
        check_stop: Callable[[], None],
        commit_state: Callable[[ModuleState], None],
        holding: Callable[[], AbstractContextManager[None]],
    ) -> None:
        self._run_id = run_id
        self.report = report
        self._check_stop = check_stop
        """Raises when the run stops (a signal, a lost lease) before the next batch is written."""
        self._commit_state = commit_state
        self._holding = holding
        """Keeps the module's lease steady around a commit."""

    def drain(
        self, batches: Iterable[pa.RecordBatch], sink: Sink, *, checkpoint_rows: int | None
    ) -> None:
        """Dedupe, write and commit ``batches`` into ``sink``: records and tombstones alike.

        With ``checkpoint_rows`` (ordered input only: what is written is then always a consistent
        prefix) it commits every that many rows, and commits what it has when the run stops or
        the read fails in a way worth a restart; without, it commits once, at the end, and drops
        what it wrote on any failure.
        """
        time_column = sink.tracker.time_column
        try:
            for batch in batches:
                self._check_stop()
                batch = dedupe_against_watermark(batch, sink.base, time_column=time_column)
                batch, deferred = defer_live_edge(batch, sink.defer_cap)
                self.report.deferred_rows += deferred
                if batch.num_rows == 0:
                    continue
                sink.writer.write(batch)
                crashpoint(sink.written_point)
                sink.tracker.observe(batch)
                sink.pending += batch.num_rows
                if RAW_VALUES in batch.schema.names:
                    sink.pending_unfit.update(unfit_counts(batch.column(RAW_VALUES)))
                if checkpoint_rows is not None and sink.pending >= checkpoint_rows:
                    self.commit(sink)
                    self.report.checkpoints += 1
                    crashpoint("sync_checkpoint_done")
        except (StopRequested, CreditsExhausted, BudgetExceeded, RetriableAPIError):
            if checkpoint_rows is not None:
                self.commit(sink)
            else:
                sink.writer.abort()
            raise
        except BaseException:
            sink.writer.abort()
            raise
        self.commit(sink)

    def commit(self, sink: Sink) -> None:
        """Place the files written so far, then commit the state that lists them."""
        with self._holding():
            files = sink.writer.commit()
            crashpoint(sink.committed_point)
            sink.state.record_files(self._run_id, [f.path for f in files])
            sink.tracker.apply(sink.state)
            self._commit_state(sink.state)
        sink.landed(_entries(files), sink.pending)
        sink.pending = 0
        self._note_unfit(sink.pending_unfit)
        sink.pending_unfit.clear()

    def _note_unfit(self, counts: Counter[str]) -> None:
        """Count the committed values kept in ``$raw_values``; warn once per field."""
        unfit = self.report.unfit_values
        for name, count in sorted(counts.items()):
            if name not in unfit:
                self.report.warnings.append(
                    f"{name}: values that do not fit the column exactly are kept as Zoho's text "
                    f"in {RAW_VALUES} (the column holds null there)"
                )
            unfit[name] = unfit.get(name, 0) + count
