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
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


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
