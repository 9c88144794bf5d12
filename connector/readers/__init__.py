"""Readers: three ways to read a module into Arrow batches (Bulk, COQL, Records) and tombstones."""

from __future__ import annotations

from connector.readers.base import READER_NAMES, Reader, ReaderStats, make_reader
from connector.readers.coql import ProbeResult, coql_count, coql_probe
from connector.readers.deleted import read_deleted

__all__ = [
    "READER_NAMES",
    "ProbeResult",
    "Reader",
    "ReaderStats",
    "coql_count",
    "coql_probe",
    "make_reader",
    "read_deleted",
]
