"""Logging setup: one masked handler, text or JSON lines, idempotent."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from connector.logging_setup import configure_logging
from connector.redact import register_secret

SECRET = "very-secret-token-value-123"


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    logger = logging.getLogger("connector")
    root = logging.getLogger()
    handlers, level, root_handlers = list(logger.handlers), logger.level, list(root.handlers)
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    root.handlers[:] = root_handlers
    logging.captureWarnings(False)


def test_json_lines_with_fields_and_masking() -> None:
    register_secret(SECRET)
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream)
    logging.getLogger("connector.test").info(
        "token is %s", SECRET, extra={"fields": {"module": "Leads", "rows": 5, "note": SECRET}}
    )
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "INFO"
    assert record["logger"] == "connector.test"
    assert record["message"] == "token is ***"
    assert record["module"] == "Leads" and record["rows"] == 5
    assert record["note"] == "***"
    assert record["time"].endswith("Z") and "T" in record["time"]
    assert SECRET not in stream.getvalue()


def test_text_format_and_level() -> None:
    register_secret(SECRET)
    stream = io.StringIO()
    configure_logging("WARNING", "text", stream)
    log = logging.getLogger("connector.test")
    log.info("hidden")
    log.warning("refresh failed for %s", SECRET, extra={"fields": {"module": "Deals"}})
    text = stream.getvalue()
    assert "hidden" not in text
    assert "WARNING connector.test: refresh failed for ***" in text
    assert "module=Deals" in text
    assert SECRET not in text


def test_idempotent() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "text", stream)
    configure_logging("INFO", "text", stream)
    logging.getLogger("connector.test").warning("once")
    assert stream.getvalue().count("once") == 1
    marked = [
        h
        for h in logging.getLogger("connector").handlers
        if getattr(h, "_connector_handler", False)
    ]
    assert len(marked) == 1


def test_json_mode_writes_other_libraries_warnings_and_python_warnings_as_json() -> None:
    import warnings

    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    logging.getLogger("urllib3.connectionpool").warning("pool is full, discarding %s", SECRET)
    logging.getLogger("urllib3.connectionpool").info("below WARNING: not shown")
    logging.getLogger("connector.test").info(
        "own record", extra={"facts": {"event": "x", "rows": 1}}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old API", DeprecationWarning, stacklevel=1)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["logger"] for r in records] == [
        "urllib3.connectionpool",
        "connector.test",
        "py.warnings",
    ]
    assert records[0]["message"] == "pool is full, discarding ***"
    assert (records[1]["event"], records[1]["rows"]) == ("x", 1)
    assert "old API" in records[2]["message"]


def test_facts_are_json_keys_but_not_repeated_in_text_lines() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "text", stream)
    logging.getLogger("connector.test").info("Leads: 1 row", extra={"facts": {"rows": 1}})
    assert stream.getvalue().rstrip().endswith("connector.test: Leads: 1 row")
    # Text mode leaves other libraries to Python's defaults, as before.
    assert not [h for h in logging.getLogger().handlers if getattr(h, "_connector_handler", False)]
