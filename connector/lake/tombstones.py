"""Every module's tombstone dataset holds at least one file, if only one of no rows.

A module without deletions (after its first full load, after ``--full-refresh``, whose new
generation drops the old tombstones, or simply never deleted from) would otherwise have no file
under ``DIR/_deleted/<Module>/``, and SQL that reads it fails: DuckDB's ``read_parquet`` refuses
a pattern that matches nothing, so the README's "table as it is now" would break exactly when
there is nothing to subtract. The file sits in a partition folder of the module's layout, like
every tombstone file (a file outside those folders breaks DuckDB's hive partitioning), has the
tombstone schema and no rows, and is committed like any other: placed, then listed in the
module's state (a crash in between leaves an uncommitted file that the next run's recover
removes).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow.parquet as pq

from connector.lake import layout
from connector.lake.manifest import FileEntry
from connector.lake.schema import TOMBSTONE_SCHEMA
from connector.lake.state import DELETED_DIR, TOMBSTONE_TIME, ModuleState, StateStore
from connector.lake.writer import part_file_name

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def empty_tombstones(store: StateStore, state: ModuleState, run_id: str) -> list[FileEntry]:
    """Place an empty tombstone file and commit ``state`` listing it, when ``state`` covers none.

    Call it after ``state`` is committed with the run's data. The file goes in the partition (of
    the module's granularity) of the deletion watermark, "nothing deleted up to here" (now
    before any). Returns the
    file placed, or ``[]`` when the module already has a tombstone file.
    """
    output = store.output
    rel_dir = f"{DELETED_DIR}/{state.module}"
    if any(state.covers(path) for path in output.list_files(rel_dir, ".parquet")):
        return []
    when = (state.deleted_watermark or datetime.now(timezone.utc)).astimezone(timezone.utc)
    granularity = state.partition_by or layout.LEGACY_GRANULARITY
    micros = np.array([(when - _EPOCH) // _US], dtype=np.int64)
    key = int(layout.partition_keys(micros, np.array([True]), granularity)[0])
    value = layout.partition_value(key, granularity)
    key_name = layout.folder_key(layout.day_key(TOMBSTONE_TIME), granularity)
    folder = layout.partition_folder(rel_dir, key_name, value)
    seq = 0
    while output.exists(rel := f"{folder}/{part_file_name(run_id, seq)}"):
        seq += 1
    tmp = output.tmp_path(f"{rel_dir}/empty-{run_id}.parquet")
    pq.write_table(TOMBSTONE_SCHEMA.empty_table(), tmp, compression="snappy")
    size = tmp.stat().st_size
    output.write_file_atomic(rel, tmp)
    state.record_files(run_id, [rel])
    store.commit(state)
    return [FileEntry(rel, 0, size)]
