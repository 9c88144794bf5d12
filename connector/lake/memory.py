"""Which allocator Arrow's buffers come from, for an extract's peak memory.

pyarrow's wheels allocate from mimalloc by default. An extract allocates and frees buffers of
every size on several threads at once (the CSV parser's, the Parquet writers', the reader's own),
and mimalloc keeps much of what is freed: measured on the same extracts, peak RSS was 20-25 %
lower with Arrow's bundled jemalloc (a Bulk read of a 300-field module: 397 MB with mimalloc,
315 MB with jemalloc; the Arrow pool itself never held more than ~175 MB of either), for the same
CPU time. The process's choice is left alone when ``ARROW_DEFAULT_MEMORY_POOL`` names one.
"""

from __future__ import annotations

import logging
import os

import pyarrow as pa

log = logging.getLogger(__name__)

POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


def use_lean_pool() -> str:
    """Make jemalloc Arrow's default pool when pyarrow has it and nobody chose another;
    return the name of the pool in use."""
    if not os.environ.get(POOL_VARIABLE):
        try:
            pa.set_memory_pool(pa.jemalloc_memory_pool())
        except NotImplementedError:
            log.debug("pyarrow is built without jemalloc; keeping its default pool")
    return str(pa.default_memory_pool().backend_name)
