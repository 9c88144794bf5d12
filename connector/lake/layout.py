"""Partition granularity: how a dataset's files are grouped into hive folders.

A dataset (a module's records, or its tombstones) is partitioned by the UTC date of one
timestamp column (``Modified_Time``, ``deleted_time``) at one granularity, recorded in the
module's state and never mixed within a dataset:

=========  ==============================================  ========================================
``day``    ``<Module>/modified_date=2024-06-05/part-…``     the layout of every dataset written
                                                            before granularity became a setting
``month``  ``<Module>/modified_month=2024-06/part-…``       the default for new datasets
``year``   ``<Module>/modified_year=2024/part-…``
``none``   ``<Module>/part-…``                              files directly in the module's folder
=========  ==============================================  ========================================

The folder key is the column's stem with the granularity's suffix: ``deleted_time`` gives
``deleted_date`` / ``deleted_month`` / ``deleted_year``, ``Action_Performed_Time`` gives
``action_performed_month``. Rows with no time go to ``<key>=__HIVE_DEFAULT_PARTITION__``, as
hive writers do. Month keys (``2024-06``) read as strings and year keys as integers in every
hive-aware reader; both sort in time order as text.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

import numpy as np

from connector.config import PARTITION_BY_CHOICES
from connector.errors import ConfigError
from connector.lake.output import Output
from connector.lake.state import STATE_DIR, StateStore

DAY, MONTH, YEAR, NONE = PARTITION_BY_CHOICES
GRANULARITIES: tuple[str, ...] = PARTITION_BY_CHOICES
DEFAULT_GRANULARITY = MONTH
"""What a new dataset gets when no granularity is asked for."""
LEGACY_GRANULARITY = DAY
"""What a dataset whose state records no granularity has: every dataset written before it was
recorded is daily."""
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
NULL_KEY = int(np.iinfo(np.int64).max)
"""The partition key of rows with no time: the greatest, so they sort into a partition of their
own, after every other."""
_US_PER_DAY = 86_400_000_000
_SUFFIX = {DAY: "date", MONTH: "month", YEAR: "year"}


def check_granularity(value: str) -> str:
    """``value`` if it is a granularity, else :class:`ConfigError` naming the choices."""
    if value not in GRANULARITIES:
        raise ConfigError(
            f"partition granularity {value!r} is not valid: use one of {', '.join(GRANULARITIES)}"
        )
    return value


def folder_key(day_key: str, granularity: str) -> str | None:
    """The hive key of a dataset's folders: ``day_key`` (``modified_date``) for ``day``, the same
    stem with ``_month`` or ``_year`` for those, None for ``none`` (no folders)."""
    check_granularity(granularity)
    if granularity == NONE:
        return None
    stem = day_key[: -len("_date")] if day_key.endswith("_date") else day_key
    return f"{stem}_{_SUFFIX[granularity]}"


def partition_keys(micros: np.ndarray, valid: np.ndarray, granularity: str) -> np.ndarray:
    """One int64 key per row (UTC microseconds since the epoch): days, months or years since
    1970, all zero for ``none``; :data:`NULL_KEY` where ``valid`` is false (not for ``none``,
    whose one partition holds every row). Keys grow with time."""
    if granularity == NONE:
        return np.zeros(len(micros), dtype=np.int64)
    if granularity == DAY:
        keys = np.floor_divide(micros, _US_PER_DAY)
    else:
        unit = "M" if granularity == MONTH else "Y"
        keys = micros.astype("datetime64[us]").astype(f"datetime64[{unit}]").astype(np.int64)
    return np.where(valid, keys, NULL_KEY)


def partition_value(key: int, granularity: str) -> str:
    """The folder value of a key from :func:`partition_keys`: ``2024-06-05``, ``2024-06``,
    ``2024``; empty for ``none``."""
    if granularity == NONE:
        return ""
    if key == NULL_KEY:
        return NULL_PARTITION
    unit = {DAY: "datetime64[D]", MONTH: "datetime64[M]", YEAR: "datetime64[Y]"}[granularity]
    return str(np.array([key], dtype=np.int64).astype(unit)[0])


def partition_folder(rel_dir: str, key_name: str | None, value: str) -> str:
    """The folder of one partition, relative to the output: ``<rel_dir>/<key>=<value>``, or
    ``rel_dir`` itself when the dataset has no folders."""
    return rel_dir if key_name is None else f"{rel_dir}/{key_name}={value}"


def resolve_granularity(
    module: str,
    recorded: str | None,
    *,
    has_data: bool,
    requested: str | None,
    replacing: bool,
) -> str:
    """The granularity a run writes ``module`` with.

    A new dataset, or one a run replaces whole (``--full-refresh``), takes ``requested`` (month
    when None). An existing dataset keeps its own (``recorded``; daily when its state predates
    the setting); asking for another is a :class:`ConfigError` that says how to convert, since
    one dataset never mixes layouts.
    """
    if requested is not None:
        check_granularity(requested)
    current = recorded or LEGACY_GRANULARITY
    if not has_data:
        return requested or DEFAULT_GRANULARITY
    if requested is None or requested == current:
        return current
    if replacing:
        return requested
    raise ConfigError(
        f"{module} is partitioned by {current} in this output, not {requested}: run "
        f"`zoho-crm compact DIR --module {module} --partition-by {requested}` to rewrite its files "
        f"locally (no credits), or extract with --full-refresh --partition-by {requested}, or "
        f"drop --partition-by to keep {current}"
    )


def day_key(column: str) -> str:
    """The daily hive key of a timestamp column: ``Modified_Time`` -> ``modified_date``,
    ``Action_Performed_Time`` -> ``action_performed_date``, ``deleted_time`` -> ``deleted_date``."""
    base = column.lower()
    return (base[: -len("_time")] if base.endswith("_time") else base) + "_date"


def refuse_mixed_layouts(output: Output, modules: Sequence[str] | None, requested: str) -> None:
    """Before an extract that asks for ``requested``: :class:`ConfigError` (saying how to convert)
    if a module it would append to holds data at another granularity. ``modules`` None means
    every module with a state in ``output``; names match case-insensitively."""
    store = StateStore(output)
    stored = [posixpath.basename(p)[: -len(".json")] for p in output.list_files(STATE_DIR, ".json")]
    wanted = None if modules is None else {m.casefold() for m in modules}
    for name in sorted(stored):
        if wanted is not None and name.casefold() not in wanted:
            continue
        state = store.load(name)
        resolve_granularity(
            name,
            state.partition_by,
            has_data=state.watermark is not None or bool(state.committed_runs),
            requested=requested,
            replacing=False,
        )
