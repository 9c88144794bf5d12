"""PartitionStream: rows handed to a background write, bounded, never leaving anyone waiting."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pyarrow as pa
import pytest

from connector.lake.stream import PartitionStream, StreamAbandoned


def table(first: int, rows: int) -> pa.Table:
    return pa.table({"n": list(range(first, first + rows))})


def test_the_write_gets_every_row_in_order_until_close() -> None:
    stream = PartitionStream("2024-06", 1, limit=1 << 20)
    stream.feed(table(0, 3), 30, last_time=3)
    stream.feed(table(3, 2), 20, last_time=5)
    stream.close()
    got = pa.Table.from_batches(list(stream.batches()))
    assert got.column("n").to_pylist() == [0, 1, 2, 3, 4]
    assert stream.queued == 0 and stream.last_time == 5


def test_a_feeder_over_the_bound_goes_on_once_the_write_takes_rows() -> None:
    stream = PartitionStream("2024-06", 1, limit=10)
    stream.feed(table(0, 2), 20, last_time=2)  # 20 bytes queued: over the bound
    fed = threading.Event()

    def feeder() -> None:
        stream.feed(table(2, 1), 10, last_time=3)
        fed.set()

    thread = threading.Thread(target=feeder)
    thread.start()
    rows = stream.batches()
    next(rows)  # the write takes the first batch: the queue is back under the bound
    thread.join(timeout=30)
    assert fed.is_set() and not thread.is_alive()
    stream.close()
    assert [b.num_rows for b in rows] == [1]


def test_a_feeder_never_waits_on_a_write_that_stopped() -> None:
    stream = PartitionStream("2024-06", 1, limit=0)
    stream.feed(table(0, 1), 10, last_time=1)
    stream.stopped()  # the write failed
    stream.feed(table(1, 1), 10, last_time=2)  # returns at once; the rows go nowhere
    assert stream.queued == 10


def test_an_abandoned_stream_ends_its_write_with_an_error() -> None:
    stream = PartitionStream("2024-06", 1, limit=1 << 20)
    stream.feed(table(0, 3), 30, last_time=3)
    stream.abandon()
    with pytest.raises(StreamAbandoned):
        list(stream.batches())


def test_a_file_takes_only_its_partition_from_its_last_row_on() -> None:
    stream = PartitionStream("2024-06", 1, limit=1 << 20)
    assert stream.takes("2024-06", 0)
    stream.feed(table(0, 1), 10, last_time=100)
    assert stream.takes("2024-06", 100)
    assert not stream.takes("2024-06", 99)
    assert not stream.takes("2024-07", 200)


def test_the_write_runs_on_a_daemon_thread_and_reports_its_outcome() -> None:
    stream = PartitionStream("2024-06", 1, limit=1 << 20)
    seen: list[tuple[str, int]] = []

    def write(key: str, batches: Iterator[pa.RecordBatch]) -> None:
        seen.append((key, sum(batch.num_rows for batch in batches)))

    stream.start(write)
    # It waits for rows until close: alive, and a daemon (never keeps the process from exiting).
    threads = [t for t in threading.enumerate() if t.name == "parquet-stream-2024-06"]
    assert threads and all(t.daemon for t in threads)
    stream.feed(table(0, 3), 30, last_time=3)
    stream.close()
    assert stream.future is not None and stream.future.result(timeout=30) is None
    assert seen == [("2024-06", 3)]


def test_a_write_that_fails_reports_its_error_and_releases_the_feeder() -> None:
    stream = PartitionStream("2024-06", 1, limit=0)

    def write(key: str, batches: Iterator[pa.RecordBatch]) -> None:
        raise OSError("disk full")

    stream.feed(table(0, 1), 10, last_time=1)  # queued, over the bound of 0
    stream.start(write)
    assert stream.future is not None
    with pytest.raises(OSError, match="disk full"):
        stream.future.result(timeout=30)
    stream.feed(table(1, 1), 10, last_time=2)  # over the bound, but the write has ended


def test_a_stream_writes_only_once_the_one_before_has_ended() -> None:
    # One stream's row groups are encoded at a time: the memory bound counts on it.
    events: list[str] = []
    release = threading.Event()
    first = PartitionStream("2024-06", 1, limit=1 << 20)
    second = PartitionStream("2024-07", 2, limit=1 << 20)

    def slow(key: str, batches: Iterator[pa.RecordBatch]) -> None:
        release.wait(30)
        list(batches)
        events.append(f"{key} ended")

    def quick(key: str, batches: Iterator[pa.RecordBatch]) -> None:
        events.append(f"{key} started")
        list(batches)

    first.start(slow)
    first.close()
    second.start(quick, after=first.future)
    second.close()
    release.set()
    assert first.future is not None and second.future is not None
    second.future.result(timeout=30)
    assert events == ["2024-06 ended", "2024-07 started"]
