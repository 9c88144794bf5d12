"""The live edge: rows modified at or after the watermark's cap are left for the next run."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa

T0 = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)


def test_rows_at_or_after_the_cap_are_deferred_rows_without_time_kept() -> None:
    from connector.run.sync import _defer_live_edge

    utc_us = pa.timestamp("us", tz="UTC")
    cap = T0
    times = [
        T0 - timedelta(seconds=1),
        T0,
        None,
        T0 + timedelta(seconds=3),
        T0 - timedelta(0, 0, 1),
    ]
    batch = pa.RecordBatch.from_arrays(
        [pa.array(["a", "b", "c", "d", "e"]), pa.array(times, utc_us)], ["id", "Modified_Time"]
    )
    kept, deferred = _defer_live_edge(batch, cap)
    assert kept.column("id").to_pylist() == ["a", "c", "e"] and deferred == 2
    assert _defer_live_edge(batch, None) == (batch, 0)
    older = batch.filter(pa.array([True, False, True, False, True]))
    same, none = _defer_live_edge(older, cap)
    assert same is older and none == 0
