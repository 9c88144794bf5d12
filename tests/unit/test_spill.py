"""The writer's merge of sorted sources: every row once, in time order, ties in source order."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest

from connector.lake.spill import merge_sorted, sort_whole

TS = pa.timestamp("us", tz="UTC")


def _batch(times: list[int], tag: str) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "id": [f"{tag}{i}" for i in range(len(times))],
            "Modified_Time": pa.array(times, pa.int64()).cast(TS),
        }
    )


def _sources(spec: list[list[list[int]]]) -> list[Iterator[pa.RecordBatch]]:
    return [
        iter([_batch(times, f"s{n}b{k}-") for k, times in enumerate(batches)])
        for n, batches in enumerate(spec)
    ]


def _expected(spec: list[list[list[int]]]) -> list[tuple[int, str]]:
    rows = [
        (t, f"s{n}b{k}-{i}")
        for n, batches in enumerate(spec)
        for k, times in enumerate(batches)
        for i, t in enumerate(times)
    ]
    # Python's sort is stable: ties keep the order of the sources, as the merge promises.
    return sorted(rows, key=lambda row: row[0])


CASES = {
    # Ordered input: each source's rows all precede the next source's (spilled runs, then the
    # rows still buffered), some batches meeting at one time.
    "apart": [[[1, 2, 3], [4, 5]], [[5, 6, 7]], [[8], [9, 10]]],
    # Unordered input: the sources interleave.
    "interleaved": [[[1, 4, 7], [9]], [[2, 3, 8]], [[0, 5], [6, 10]]],
    # One source ahead of the others for a while, then interleaving.
    "mixed": [[[1, 2], [3, 9]], [[4, 5], [6, 7]], [[8, 10]]],
}


@pytest.mark.parametrize("merge", [merge_sorted, sort_whole])
@pytest.mark.parametrize("name", sorted(CASES))
def test_merge_gives_every_row_once_in_time_order(merge, name: str) -> None:
    spec = CASES[name]
    table = pa.Table.from_batches(list(merge(_sources(spec), "Modified_Time")))
    times = table.column("Modified_Time").cast(pa.int64()).to_pylist()
    assert list(zip(times, table.column("id").to_pylist(), strict=True)) == _expected(spec)
