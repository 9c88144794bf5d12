"""How the command line sets up its process before Arrow loads: the allocator Arrow uses, the C
library's allocator settings, and pandas kept out of Arrow's way.

Both are chosen once per process, when Arrow is first imported, so :func:`prepare_process` runs
first thing in ``zoho-crm``'s entry point (the command line imports Arrow only once it has parsed
its options). A program that calls :func:`connector.run.sync.run_extract` itself gets jemalloc as
pyarrow's default pool when the run starts (:func:`connector.lake.memory.use_lean_pool`, which
keeps whatever this chose), and keeps pandas unless it calls :func:`prepare_process` before
importing Arrow.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

# Arrow reads its allocator from this variable once, when it is first imported.
ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"
# glibc's mallopt() parameters (malloc.h) and the values set; a user's MALLOC_* variable wins.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
GLIBC_MALLOC_SETTINGS = {
    M_ARENA_MAX: ("MALLOC_ARENA_MAX", 2),
    M_MMAP_THRESHOLD: ("MALLOC_MMAP_THRESHOLD_", 128 << 10),
    M_TRIM_THRESHOLD: ("MALLOC_TRIM_THRESHOLD_", 128 << 10),
}


def prepare_process() -> None:
    """Choose Arrow's allocator (:func:`prefer_jemalloc`), bound the C library's
    (:func:`tame_glibc_malloc`) and keep pandas out (:func:`keep_pandas_out`)."""
    prefer_jemalloc()
    tame_glibc_malloc()
    keep_pandas_out()


def tame_glibc_malloc(environ: Mapping[str, str] = os.environ) -> list[str]:
    """Have glibc's malloc give freed memory back, for what does not come from Arrow's pool
    (Python's large buffers, the ZIP and HTTP layers); the names of the settings made.

    By default glibc raises its mmap threshold each time a large block is freed (so later large
    blocks stay in the heap once freed) and gives every thread an arena of its own (up to 8 per
    core). A Bulk read of a 300-field module holds 180-250 MB of RSS beside the 20-50 MB in
    Arrow's pool; with two arenas and fixed 128 KiB mmap and trim thresholds it peaked 25 MB
    lower (249-258 MB against 225-232 MB at 100,000 rows) in the same time. Only on glibc, and
    each setting only when the user did not set its ``MALLOC_*`` variable.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return []  # not glibc (macOS, Windows, musl)
    made = []
    for parameter, (variable, value) in GLIBC_MALLOC_SETTINGS.items():
        if variable not in environ and mallopt(parameter, value) == 1:
            made.append(variable)
    return made


def prefer_jemalloc(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Have Arrow allocate from jemalloc in this process, unless the user chose an allocator;
    True when this set it.

    Arrow's default allocator, mimalloc, keeps what each thread freed for that thread: a run's
    workers, prefetch and writer threads each hold pages of their own. Four modules read at
    once by four workers peaked at 328-350 MB, where one worker peaks at ~220 MB; with jemalloc,
    which hands freed memory back within a second, 237-244 MB, and one module of 100,000 rows
    read by Bulk or COQL 186-216 MB instead of 238-272 MB, for the same CPU time. Only on
    Linux, whose pyarrow wheels carry jemalloc (elsewhere Arrow would print a warning and keep
    its default).
    """
    if ARROW_POOL_VARIABLE in environ or not sys.platform.startswith("linux"):
        return False
    if "pyarrow" in sys.modules:
        return False  # too late: the allocator is chosen
    environ[ARROW_POOL_VARIABLE] = "jemalloc"
    return True


class _PandasKeptOut:
    """An import finder that answers "not installed" for pandas (see :func:`keep_pandas_out`)."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        """Refuse pandas and its submodules; leave every other module to the next finder."""
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"no module named {name!r} (kept out)", name=name)


def keep_pandas_out(
    modules: Mapping[str, Any] = sys.modules, finders: list[Any] = sys.meta_path
) -> bool:
    """Keep Arrow from importing pandas in this process (the command line never uses it); True
    when this did.

    On its first conversion of a Python value (``pa.scalar``, ``pa.array``) Arrow imports pandas
    to recognise pandas objects among the values: 0.3-0.5 s of CPU and ~35 MB of memory for
    every run, held up front by the first page each module reads (with four workers, by the
    four of them at once). Refused by an import finder, it reads as "pandas is not installed",
    which Arrow supports (a ``None`` in ``sys.modules`` would not do: Arrow's compiled import
    takes it for the module). Nothing of the connector converts to or from pandas; users load
    the output with it in their own processes.
    """
    if "pandas" in modules or any(isinstance(f, _PandasKeptOut) for f in finders):
        return False  # already loaded (leave it) or already kept out
    finders.insert(0, _PandasKeptOut())
    return True
