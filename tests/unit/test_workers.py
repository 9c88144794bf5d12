"""How many modules a run reads at once (``connector.run.workers``)."""

from __future__ import annotations

import pytest

from connector.run.workers import MAX_WORKERS, pool_size


@pytest.mark.parametrize(
    ("requested", "default", "modules", "size"),
    [
        (None, 4, 12, 4),  # the settings' default
        (2, 4, 12, 2),  # --workers wins
        (8, 4, 3, 3),  # no more threads than modules
        (25, 4, 30, MAX_WORKERS),  # Zoho's limit of concurrent calls
        (None, 40, 30, MAX_WORKERS),
        (4, 4, 0, 1),  # no module: still a valid pool size
    ],
)
def test_pool_size(requested: int | None, default: int, modules: int, size: int) -> None:
    assert pool_size(requested, default, modules) == size


def test_the_workers_knob_refuses_more_than_zoho_serves_at_once() -> None:
    from pydantic import ValidationError

    from connector.config import Tuning

    assert Tuning.model_fields["workers"].metadata[-1].le == MAX_WORKERS
    Tuning(workers=MAX_WORKERS)
    with pytest.raises(ValidationError):
        Tuning(workers=MAX_WORKERS + 1)
