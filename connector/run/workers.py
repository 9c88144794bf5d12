"""How many modules a run reads at once.

Apart from the run itself so the command line can name the allowed range without importing the run
(and Arrow with it) before it parses its options.
"""

from __future__ import annotations

# Zoho allows 10 concurrent heavy calls (COQL among them) per org, whatever the edition.
MAX_WORKERS = 10


def pool_size(requested: int | None, default: int, modules: int) -> int:
    """The worker threads for ``modules`` modules: ``requested`` (else ``default``), at most
    :data:`MAX_WORKERS` and the number of modules, at least 1."""
    return max(1, min(requested or default, MAX_WORKERS, modules or 1))
