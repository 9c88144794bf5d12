"""Arrow's allocator for an extract: jemalloc unless the process already chose one."""

from __future__ import annotations

import pyarrow as pa
import pytest

from connector.lake import memory


def test_jemalloc_is_chosen_when_nobody_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen: list[pa.MemoryPool] = []
    monkeypatch.delenv(memory.POOL_VARIABLE, raising=False)
    monkeypatch.setattr(pa, "set_memory_pool", chosen.append)
    memory.use_lean_pool()
    try:
        pa.jemalloc_memory_pool()
    except NotImplementedError:
        assert chosen == []
    else:
        assert [pool.backend_name for pool in chosen] == ["jemalloc"]


def test_a_pool_named_in_the_environment_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen: list[pa.MemoryPool] = []
    monkeypatch.setenv(memory.POOL_VARIABLE, "system")
    monkeypatch.setattr(pa, "set_memory_pool", chosen.append)
    assert memory.use_lean_pool() == pa.default_memory_pool().backend_name
    assert chosen == []
