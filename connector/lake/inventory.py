"""What an output holds, per module: rows, files and bytes, watermark, last run (``zoho-crm state``).

Files and bytes come from listing the module's two datasets (``DIR/<Module>/`` and
``DIR/_deleted/<Module>/``), so they are what a reader of the output finds, whatever the state
says. Rows come from the run manifests, which record the rows of every file a run put in place;
a file no manifest describes (its run was killed before writing one) is counted from its Parquet
footer. The watermark and reader come from the module's committed state; the last run and its
status from the newest manifest that names the module.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow.parquet as pq

from connector.errors import ConfigError
from connector.lake.manifest import RunRecord, read_runs
from connector.lake.output import Output
from connector.lake.state import STATE_DIR, ModuleState, StateStore, data_dirs


@dataclass(frozen=True)
class DatasetSize:
    """The Parquet files of one dataset directory: how many, their rows and bytes."""

    files: int = 0
    rows: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class ModuleSummary:
    """One module of an output, as ``zoho-crm state`` shows it."""

    module: str
    records: DatasetSize
    tombstones: DatasetSize
    watermark: str | None
    deleted_watermark: str | None
    reader: str | None
    updated_at: str | None
    last_run_id: str | None
    last_run_started_at: str | None
    last_run_status: str | None
    last_run_error: str | None

    def to_dict(self) -> dict[str, Any]:
        """The facts as a JSON-ready dict (what ``state --json`` prints per module)."""
        return {
            "module": self.module,
            "rows": self.records.rows,
            "files": self.records.files,
            "bytes": self.records.bytes,
            "tombstones": self.tombstones.rows,
            "tombstone_files": self.tombstones.files,
            "tombstone_bytes": self.tombstones.bytes,
            "watermark": self.watermark,
            "deleted_watermark": self.deleted_watermark,
            "reader": self.reader,
            "state_updated_at": self.updated_at,
            "last_run_id": self.last_run_id,
            "last_run_started_at": self.last_run_started_at,
            "last_run_status": self.last_run_status,
            "last_run_error": self.last_run_error,
        }


def state_modules(output: Output) -> list[str]:
    """The modules with a committed state in ``output``, sorted."""
    names = (posixpath.basename(p) for p in output.list_files(STATE_DIR, ".json"))
    return sorted(n.removesuffix(".json") for n in names if "/" not in n)


def pick_module(name: str, known: Sequence[str], where: str) -> str:
    """``name`` as spelled in ``known`` (exact, else the one case-insensitive match).

    Raises :class:`ConfigError` listing the modules ``where`` holds.
    """
    if name in known:
        return name
    folded = [k for k in known if k.casefold() == name.casefold()]
    if len(folded) == 1:
        return folded[0]
    raise ConfigError(f"no module {name!r} in {where}; modules there: {', '.join(known)}")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


class Inventory:
    """Reads what one output holds; build it once, ask for each module."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.output = Output.open(url)
        self.store = StateStore(self.output)
        fs, root = fsspec.core.url_to_fs(url)
        self.fs: Any = fs
        self.root = str(root).rstrip("/") or "/"
        self.runs: list[RunRecord] = read_runs(self.output)
        self._file_rows: dict[str, int] = {}
        # Oldest first, so a path a later manifest describes again takes its latest figure.
        for run in reversed(self.runs):
            for outcome in run.modules:
                self._file_rows.update(outcome.files)

    def summary(self, module: str) -> ModuleSummary:
        """The summary of ``module`` (its state may be empty when it has none)."""
        state: ModuleState = self.store.load(module)
        records, tombstones = (self._dataset(rel) for rel in data_dirs(module))
        last = next(
            (
                (run, outcome)
                for run in self.runs
                for outcome in run.modules
                if outcome.module == module
            ),
            None,
        )
        return ModuleSummary(
            module=module,
            records=records,
            tombstones=tombstones,
            watermark=_iso(state.watermark),
            deleted_watermark=_iso(state.deleted_watermark),
            reader=state.reader,
            updated_at=_iso(state.updated_at),
            last_run_id=last[0].run_id if last else state.last_run_id,
            last_run_started_at=last[0].started_at if last else None,
            last_run_status=last[1].status if last else None,
            last_run_error=last[1].error if last else None,
        )

    def _dataset(self, rel_dir: str) -> DatasetSize:
        """Files, rows and bytes of the Parquet files a dataset reader finds under ``rel_dir``."""
        base = posixpath.join(self.root, rel_dir)
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return DatasetSize()
        files = rows = size = 0
        for path, info in sorted(found.items()):
            rel = posixpath.relpath(str(path), base)
            # Dataset readers skip names starting with "_" or "."; so does this count.
            if not rel.endswith(".parquet") or any(p[:1] in "_." for p in rel.split("/")):
                continue
            files += 1
            size += int(info.get("size") or 0)
            known = self._file_rows.get(f"{rel_dir}/{rel}")
            rows += known if known is not None else self._footer_rows(str(path))
        return DatasetSize(files, rows, size)

    def _footer_rows(self, path: str) -> int:
        with self.fs.open(path, "rb") as handle:
            return int(pq.ParquetFile(handle).metadata.num_rows)
