"""Logging for the ``connector`` namespace: text or JSON lines, secrets always masked.

In JSON mode every line the CLI writes on stderr is one object: log records (with their ``fields``
and ``facts`` as top-level keys, such as ``event``, ``module``, ``rows``, ``credits``, ``run_id``), records of
other libraries and Python warnings, and the error line (:func:`json_line`). :func:`counted` words
the counts shown to users ("1 row", "2 rows").
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Literal, TextIO

from connector.redact import RedactingFilter, redact

_MARK = "_connector_handler"
# A record's ``extra={"facts": {...}}``: what its message already says in words, as keys for JSON
# logs (``event``, ``module``, ``rows``, ``credits``, ...); text lines leave them out, unlike
# ``extra={"fields": {...}}``, which both formats show.
FACTS = "facts"


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` and ``noun`` in agreement, thousands separated: "1 page", "2,000 pages"."""
    word = noun if count == 1 else (plural or noun + "s")
    return f"{count:,} {word}"


def json_line(
    message: str, *, level: str = "INFO", logger: str = "connector.cli", **fields: Any
) -> str:
    """One masked JSON object, shaped like a JSON log record (for lines written without logging)."""
    payload = _payload(datetime.now(timezone.utc), level, logger, message, fields)
    return redact(json.dumps(payload, default=str, ensure_ascii=False))


def _payload(
    stamp: datetime, level: str, logger: str, message: str, fields: Mapping[str, Any] | None
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": level,
        "logger": logger,
        "message": message,
    }
    for key, value in (fields or {}).items():
        payload.setdefault(str(key), value)
    return payload


class _TextFormatter(logging.Formatter):
    """``time level logger: message key=value …``, masked."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            text += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        return redact(text)


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC ISO), level, logger, message, then the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, tz=timezone.utc)
        merged: dict[str, Any] = {}
        for extra in ("fields", FACTS):
            found = getattr(record, extra, None)
            if isinstance(found, dict):
                merged.update(found)
        payload = _payload(stamp, record.levelname, record.name, record.getMessage(), merged)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, default=str, ensure_ascii=False))


class _NotConnector(logging.Filter):
    """Records of other libraries only: the connector's own have their handler already."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "connector" or record.name.startswith("connector."))


def configure_logging(
    level: str = "INFO",
    fmt: Literal["text", "json"] = "text",
    stream: TextIO | None = None,
) -> None:
    """Send the ``connector`` loggers to ``stream`` (stderr by default) with one masked handler.

    In JSON mode the warnings of other libraries and of Python (``warnings.warn``) are written as
    JSON too, so that no plain line slips onto stderr between the objects. Calling it again
    replaces the handlers it installed before instead of adding more.
    """
    target = stream if stream is not None else sys.stderr
    logger = logging.getLogger("connector")
    root = logging.getLogger()
    for owner in (logger, root):
        for handler in list(owner.handlers):
            if getattr(handler, _MARK, False):
                owner.removeHandler(handler)
    logger.addHandler(_handler(target, fmt))
    logger.setLevel(level.upper())
    logging.captureWarnings(fmt == "json")
    if fmt == "json":
        # Without a handler of its own, a library's warning would reach stderr as a bare line.
        others = _handler(target, fmt)
        others.setLevel(logging.WARNING)
        others.addFilter(_NotConnector())
        root.addHandler(others)


def _handler(stream: TextIO, fmt: Literal["text", "json"]) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    setattr(handler, _MARK, True)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    return handler
