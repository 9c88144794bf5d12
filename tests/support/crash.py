"""Crashing a run in-process: an exception no handler in the connector catches."""

from __future__ import annotations

from typing import Any

import pytest


class Crash(BaseException):
    """Stands for the process dying: nothing in the connector handles it."""


def crash_at(monkeypatch: pytest.MonkeyPatch, cls: type, method: str, n: int, after: bool) -> None:
    """Make the ``n``-th call of ``cls.method`` crash before (or right after) it does its work."""
    original = getattr(cls, method)
    calls = [0]

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == n and not after:
            raise Crash(f"{method} #{n}")
        result = original(self, *args, **kwargs)
        if calls[0] == n and after:
            raise Crash(f"after {method} #{n}")
        return result

    monkeypatch.setattr(cls, method, wrapper)
