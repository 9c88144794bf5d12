"""The reader factory (``connector.readers.make_reader``): everything a reader needs is an argument."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from support.fakezoho import FakeZoho, by_id, expected, make_records, make_schema, read_all, tuning

from connector.readers import make_reader


def test_bulk_downloads_into_the_scratch_dir_given_and_waits_with_the_sleep_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Path] = []
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*args: Any, **kwargs: Any) -> str:
        path = real_mkdtemp(*args, **kwargs)
        made.append(Path(path))
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    schema = make_schema()
    fake = FakeZoho(make_records(50))
    waits: list[float] = []
    reader = make_reader("bulk", fake, tuning(), sleep=waits.append, scratch_dir=tmp_path)  # type: ignore[arg-type]
    assert by_id(read_all(reader, schema)).equals(expected(fake, schema))
    assert made and all(path.parent == tmp_path for path in made)
    assert list(tmp_path.iterdir()) == []  # the scratch files are gone
    assert waits == [1.0, 2.0]  # the polls waited through the given sleep


@pytest.mark.parametrize("name", ["coql", "records"])
def test_readers_that_download_nothing_take_a_scratch_dir_and_leave_it_alone(
    name: str, tmp_path: Path
) -> None:
    schema = make_schema()
    fake = FakeZoho(make_records(30))
    reader = make_reader(name, fake, tuning(), scratch_dir=tmp_path)  # type: ignore[arg-type]
    assert reader.name == name
    assert by_id(read_all(reader, schema)).equals(expected(fake, schema))
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_reader_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown reader 'odbc'; expected one of bulk, coql"):
        make_reader("odbc", FakeZoho([]), tuning())  # type: ignore[arg-type]
