"""The writer's merge of sorted sources: every row once, in time order, ties in source order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from connector.lake.spill import Source, merge_in_passes, merge_sorted, sort_whole

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


def _in_passes(
    spec: list[list[list[int]]], tmp_path: Path, budget: int, held: int
) -> Iterator[pa.RecordBatch]:
    names = iter(range(1000))
    return merge_in_passes(
        [Source(source, held) for source in _sources(spec)],
        "Modified_Time",
        budget=budget,
        scratch=lambda: tmp_path / f"merge-{next(names)}.arrow",
        chunk_rows=2,
        row_bytes=1,
    )


def _rows(batches: Iterator[pa.RecordBatch]) -> list[tuple[int, str]]:
    table = pa.Table.from_batches(list(batches))
    times = table.column("Modified_Time").cast(pa.int64()).to_pylist()
    return list(zip(times, table.column("id").to_pylist(), strict=True))


# Twenty sources that interleave, with ties across them: each holds "10 bytes" at once.
MANY = [[[t, t + 20, t + 20], [t + 40]] for t in range(20)] + [[[5, 25, 45]]]


@pytest.mark.parametrize(("budget", "passes"), [(1_000, False), (30, True), (1, True)])
def test_a_merge_in_passes_gives_every_row_once_in_time_order(
    tmp_path: Path, budget: int, passes: bool
) -> None:
    merged = _in_passes(MANY, tmp_path, budget, held=10)
    first = next(merged)
    made = sorted(tmp_path.iterdir())
    assert bool(made) == passes  # sources holding more than the budget are merged first
    assert _rows(iter([first, *merged])) == _expected(MANY)
    assert not list(tmp_path.iterdir())  # the scratch runs are removed at the end


def test_a_merge_in_passes_left_early_removes_its_scratch_runs(tmp_path: Path) -> None:
    merged = _in_passes(MANY, tmp_path, budget=30, held=10)
    next(merged)
    assert list(tmp_path.iterdir())
    merged.close()
    assert not list(tmp_path.iterdir())
