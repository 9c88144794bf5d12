"""A partition's rows handed, as they come, to the thread that writes its Parquet file.

With ordered input (:class:`~connector.lake.writer.DatasetWriter` with ``ordered=True``) the
partition being read is the only one still growing. Its rows go to one background write as they
come, which turns them into row groups as they fill: no spill to a scratch run, no copy of the
whole partition in memory, and the memory held does not grow with the partition.

The feeding side waits while the rows handed over and not yet taken by the write pass a byte bound,
so a slow disk slows the reader instead of filling memory; the write holds at most one row group
besides. It waits only while the queue holds rows, which the write always comes back for, and
never once the write has ended (finished, failed or abandoned).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait

import pyarrow as pa


class StreamAbandoned(Exception):
    """Raised in the writing thread when the writer is aborted with a stream open."""


class PartitionStream:
    """Batches of one partition, in time order, from the writer's caller to one file's write."""

    def __init__(self, key: str, number: int, limit: int) -> None:
        """``key`` is the partition's value and ``number`` its sort key; ``limit`` the bytes
        queued (handed over and not yet taken) past which :meth:`feed` waits."""
        self.key = key
        self.number = number
        self.limit = limit
        self.future: Future[None] | None = None
        """The write's, once it is started."""
        self.last_time: int | None = None
        """Sort time (epoch microseconds) of the last row handed over, to keep the file sorted."""
        self._cond = threading.Condition()
        self._queue: deque[tuple[pa.RecordBatch, int]] = deque()
        self._queued = 0
        self._closed = False
        self._abandoned = False
        self._stopped = False  # the writing side ended (finished, failed or abandoned)

    def start(
        self,
        write: Callable[[str, Iterator[pa.RecordBatch]], None],
        *,
        after: Future[None] | None = None,
    ) -> None:
        """Run ``write(key, batches)`` on a thread of its own, its outcome in :attr:`future`,
        once the write ``after`` (the stream before) has ended: one stream's row groups are
        encoded at a time, as the memory bound assumes.

        Not a pool's thread: the write waits for rows, so it must never hold a thread others
        wait for. A daemon: a writer dropped without commit or abort cannot keep the process
        from exiting (its scratch file is swept by the next run)."""
        future: Future[None] = Future()

        def run() -> None:
            try:
                if after is not None:
                    wait([after])  # its failure is raised where its future is collected
                write(self.key, self.batches())
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(None)
            finally:
                self.stopped()

        self.future = future
        threading.Thread(target=run, name=f"parquet-stream-{self.key}", daemon=True).start()

    def takes(self, key: str, first_time: int) -> bool:
        """Whether rows of partition ``key`` from ``first_time`` on keep this file sorted."""
        return key == self.key and (self.last_time is None or first_time >= self.last_time)

    def feed(self, table: pa.Table, nbytes: int, last_time: int) -> None:
        """Hand ``table``'s rows (``nbytes`` by the writer's estimate) to the write, after waiting
        while more than ``limit`` bytes are queued. Returns at once if the writing side has
        stopped: its failure is the future's to raise."""
        batches = table.to_batches()
        with self._cond:
            while self._queued > self.limit and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return
            rows = max(1, table.num_rows)
            for batch in batches:
                share = nbytes * batch.num_rows // rows
                self._queue.append((batch, share))
                self._queued += share
            self.last_time = last_time
            self._cond.notify_all()

    @property
    def queued(self) -> int:
        """Bytes handed over and not yet taken by the write."""
        with self._cond:
            return self._queued

    def close(self) -> None:
        """No more rows: the write finishes the file with what it was given."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def abandon(self) -> None:
        """Stop the write: it removes its unfinished file and ends with :class:`StreamAbandoned`."""
        with self._cond:
            self._abandoned = True
            self._queue.clear()
            self._cond.notify_all()

    def stopped(self) -> None:
        """The writing side ended, one way or another: a waiting feeder returns."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The writing side's view: the rows in the order handed over, until :meth:`close`."""
        while True:
            with self._cond:
                while not self._queue and not self._closed and not self._abandoned:
                    self._cond.wait()
                if self._abandoned:
                    raise StreamAbandoned(f"partition {self.key}: the write was abandoned")
                if not self._queue:
                    return
                batch, share = self._queue.popleft()
                self._queued -= share
                self._cond.notify_all()
            yield batch
