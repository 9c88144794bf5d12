"""How many modules a run reads at once (``connector.run.workers``)."""

from __future__ import annotations

import platform
from typing import Any

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


def test_map_at_once_runs_the_items_together_and_keeps_their_order() -> None:
    import threading

    from connector.run.workers import map_at_once

    # Each call waits for the other two: one after another, the barrier would break.
    barrier = threading.Barrier(3, timeout=30)

    def meet(item: int) -> tuple[int, str]:
        barrier.wait()
        return item * 10, threading.current_thread().name

    results = map_at_once(meet, [1, 2, 3], 3)
    assert [value for value, _ in results] == [10, 20, 30]
    assert all(name.startswith("plan") for _, name in results)


def test_map_at_once_raises_the_first_items_error_as_a_loop_would() -> None:
    import threading

    from connector.run.workers import map_at_once

    called: list[int] = []
    lock = threading.Lock()

    def fail_on_odd(item: int) -> int:
        with lock:
            called.append(item)
        if item % 2:
            raise ValueError(f"item {item}")
        return item

    with pytest.raises(ValueError, match="item 1"):
        map_at_once(fail_on_odd, [0, 1, 2, 3], 4)
    assert sorted(called) == [0, 1, 2, 3]  # every call made ended before the error went up
    # One worker: a plain loop on this thread, which stops at the first error.
    called.clear()
    with pytest.raises(ValueError, match="item 1"):
        map_at_once(fail_on_odd, [0, 1, 2, 3], 1)
    assert called == [0, 1]


def test_jemalloc_is_chosen_before_arrow_loads_unless_the_user_chose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from connector.run.process import ARROW_POOL_VARIABLE, prefer_jemalloc

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delitem(sys.modules, "pyarrow", raising=False)
    environ: dict[str, str] = {}
    assert prefer_jemalloc(environ) and environ == {ARROW_POOL_VARIABLE: "jemalloc"}
    mine = {ARROW_POOL_VARIABLE: "system"}
    assert not prefer_jemalloc(mine) and mine == {ARROW_POOL_VARIABLE: "system"}
    monkeypatch.setattr(sys, "platform", "darwin")  # wheels without jemalloc: Arrow would warn
    other: dict[str, str] = {}
    assert not prefer_jemalloc(other) and other == {}


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_glibc_malloc_is_bounded_unless_the_user_set_its_variable() -> None:
    from connector.run.process import tame_glibc_malloc

    assert tame_glibc_malloc({}) == [
        "MALLOC_ARENA_MAX",
        "MALLOC_MMAP_THRESHOLD_",
        "MALLOC_TRIM_THRESHOLD_",
    ]
    assert tame_glibc_malloc({"MALLOC_ARENA_MAX": "8"}) == [
        "MALLOC_MMAP_THRESHOLD_",
        "MALLOC_TRIM_THRESHOLD_",
    ]


def test_a_c_library_without_mallopt_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    from connector.run.process import tame_glibc_malloc

    def missing(name: str) -> object:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert tame_glibc_malloc({}) == []


def test_jemalloc_is_not_asked_for_once_arrow_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import pyarrow  # noqa: F401

    from connector.run.process import prefer_jemalloc

    monkeypatch.setattr(sys, "platform", "linux")
    environ: dict[str, str] = {}
    assert not prefer_jemalloc(environ) and environ == {}


def test_pandas_is_kept_out_of_arrow_unless_already_loaded() -> None:
    import importlib.util

    from connector.run.process import keep_pandas_out

    finders: list[Any] = []
    assert keep_pandas_out({}, finders) and len(finders) == 1
    assert not keep_pandas_out({}, finders) and len(finders) == 1  # once is enough
    for name in ("pandas", "pandas.core"):
        with pytest.raises(ModuleNotFoundError, match="kept out"):
            finders[0].find_spec(name)
    assert finders[0].find_spec("pyarrow") is None  # every other module: the next finder's
    assert importlib.util.find_spec("pyarrow") is not None
    assert not keep_pandas_out({"pandas": object()}, [])  # loaded already: left alone
