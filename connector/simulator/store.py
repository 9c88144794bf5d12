"""The simulated org's records: generated base rows + a mutation overlay + deletions + a clock.

Base rows come from ``generator.py`` on demand (aligned chunks, a small LRU cache per column).
Inserted and updated rows live in an overlay of canonical Python values; updated and deleted base
rows are hidden by index. Reads take an immutable snapshot of the overlay under the lock, then work
without it, so the multi-threaded server sees consistent data.

Paging over a million rows stays cheap because base ``Modified_Time`` and ``id`` are monotone in
the base index: ``_bounds`` turns lower/upper bounds on them (in a top-level AND, in every branch
of an OR, or alone) into an index range, so a keyset page only generates the chunk it needs.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connector.simulator.generator import ModuleGen, OrgGenerator
from connector.simulator.orgdef import OrgDef, SimField, SimModule, SimUser, load_orgdef
from connector.simulator.query import (
    And,
    Comparison,
    Expr,
    Not,
    Or,
    QueryError,
    category,
    comparisons,
    convert_literal,
    evaluate,
    parse_datetime_literal,
)

CHUNK_ROWS = 32_768
CACHE_ENTRIES = 160
# Zoho keeps recycle-bin entries 60 days and permanent deletions 120 days (zoho-api.md §5).
RECYCLE_RETENTION = timedelta(days=60)
PERMANENT_RETENTION = timedelta(days=120)
SYSTEM_FIELDS = frozenset({"id", "Created_Time", "Modified_Time", "Created_By", "Modified_By"})
# Converted leads keep their row with this flag set (zoho-api.md §11).
CONVERTED = "Converted__s"


def hides_converted(meta: SimModule) -> bool:
    """Whether the module's reads leave converted records out unless asked (Leads)."""
    return CONVERTED in meta.field_map


def with_converted(meta: SimModule, where: Expr | None, converted: str = "false") -> Expr | None:
    """``where`` as a read of ``meta`` sees it once converted records are hidden.

    ``converted`` is the Records API parameter: ``false`` (Zoho's default: only records not
    converted), ``true`` (only converted ones) or ``both``. COQL and Bulk Read pass ``false``: by
    assumption (their docs are silent) they hide converted leads like the Records API, unless the
    query itself names ``Converted__s`` (then it decides). Other modules are not affected.
    """
    if not hides_converted(meta) or converted == "both":
        return where
    if where is not None and any(
        meta.find_field(c.field) is meta.field_map[CONVERTED] for c in comparisons(where)
    ):
        return where
    flag = Comparison(CONVERTED, "=", "true" if converted == "true" else "false")
    return flag if where is None else And((where, flag))


@dataclass(frozen=True)
class DeletedRecord:
    """One entry of ``GET /crm/v8/{Module}/deleted``."""

    id: str
    display_name: str | None
    type: str
    deleted_time: datetime
    deleted_by: SimUser | None
    created_by: SimUser | None


@dataclass(frozen=True)
class _Snapshot:
    version: int
    overlay: pa.Table  # current inserted/updated rows, sorted by id, every field
    overlay_index: np.ndarray  # id-space index of each overlay row
    hidden: np.ndarray  # sorted base indices replaced by the overlay or deleted


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _bad_value(f: SimField) -> QueryError:
    """Zoho's answer to a value that does not fit the field's type."""
    return QueryError(
        "INVALID_DATA",
        "invalid data",
        {"api_name": f.api_name, "expected_data_type": f.data_type},
    )


# Client values as canonical values, by the field's value type; each raises ValueError (or
# TypeError) for a value that does not fit. Lookups need the org and live on ModuleStore; any
# other type is kept as text.
def _integer(f: SimField, value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("not a whole number")
    return int(value)


def _double(f: SimField, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("a boolean for a number")
    return float(value)


def _currency(f: SimField, value: Any) -> str:
    if isinstance(value, bool):
        raise ValueError("a boolean for an amount")
    places = int(f.decimal_place if f.decimal_place is not None else 2)
    amount = Decimal(str(value)).quantize(Decimal(1).scaleb(-places))
    return f"{amount:f}"


def _bigint(f: SimField, value: Any) -> str:
    return str(int(str(value)))


def _boolean(f: SimField, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise ValueError("a boolean is true or false")


def _date(f: SimField, value: Any) -> date:
    if isinstance(value, datetime):
        raise ValueError("a datetime for a date")
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _datetime(f: SimField, value: Any) -> datetime:
    parsed = value if isinstance(value, datetime) else parse_datetime_literal(str(value))
    if parsed.tzinfo is None:
        raise ValueError("a datetime needs an offset")
    return parsed.astimezone(timezone.utc).replace(microsecond=0)


def _multiselect(f: SimField, value: Any) -> list[str] | None:
    items = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    return items or None


_COERCE: dict[str, Callable[[SimField, Any], Any]] = {
    "integer": _integer,
    "long": _integer,
    "double": _double,
    "percent": _double,
    "currency": _currency,
    "bigint": _bigint,
    "boolean": _boolean,
    "date": _date,
    "datetime": _datetime,
    "multiselectpicklist": _multiselect,
}


class ModuleStore:
    """One module's records (see docs/simulator.md for the contract)."""

    def __init__(self, org: Org, gen: ModuleGen) -> None:
        self.org = org
        self.meta: SimModule = gen.meta
        self._gen = gen
        self._lock = threading.RLock()
        self._rows: dict[str, dict[str, Any]] = {}
        self._row_index: dict[str, int] = {}
        self._hidden: set[int] = set()
        self._deleted_log: list[DeletedRecord] = []
        self._next_index = gen.size
        self._version = 0
        self._shuffles = 0
        self._snap: _Snapshot | None = None
        self._cache: OrderedDict[tuple[int, str], pa.Array] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.schema = pa.schema([pa.field(f.api_name, f.arrow_type) for f in self.meta.fields])

    # ---- basics ---------------------------------------------------------------------------
    @property
    def base_size(self) -> int:
        """How many base (generated) records the module started with."""
        return self._gen.size

    @property
    def generator(self) -> ModuleGen:
        """The base-row generator."""
        return self._gen

    def _field(self, name: str) -> SimField:
        f = self.meta.find_field(name)
        if f is None:
            raise QueryError(
                "INVALID_QUERY",
                f"invalid column {name}",
                {"column_name": name, "reason": "column name is invalid"},
            )
        return f

    def _snapshot(self) -> _Snapshot:
        with self._lock:
            snap = self._snap
            if snap is None or snap.version != self._version:
                ids = sorted(self._rows)
                overlay = pa.Table.from_pylist([self._rows[i] for i in ids], schema=self.schema)
                index = np.array([self._row_index[i] for i in ids], dtype=np.int64)
                hidden = np.array(sorted(self._hidden), dtype=np.int64)
                snap = _Snapshot(self._version, overlay, index, hidden)
                self._snap = snap
            return snap

    # ---- base windows ---------------------------------------------------------------------
    def _chunk_column(self, chunk: int, name: str) -> pa.Array:
        key = (chunk, name)
        with self._cache_lock:
            arr = self._cache.get(key)
            if arr is not None:
                self._cache.move_to_end(key)
                return arr
        start = chunk * CHUNK_ROWS
        stop = min(start + CHUNK_ROWS, self._gen.size)
        arr = self._gen.column(name, np.arange(start, stop, dtype=np.int64))
        with self._cache_lock:
            self._cache[key] = arr
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return arr

    def _window(self, start: int, stop: int, names: Sequence[str]) -> pa.Table:
        """Base rows [start, stop) within one aligned chunk, from the cache."""
        chunk = start // CHUNK_ROWS
        offset = start - chunk * CHUNK_ROWS
        arrays = [self._chunk_column(chunk, n).slice(offset, stop - start) for n in names]
        return pa.Table.from_arrays(arrays, names=list(names))

    def _chunks(self, lo: int, hi: int, reverse: bool = False) -> Iterator[tuple[int, int]]:
        if hi <= lo:
            return
        first, last = lo // CHUNK_ROWS, (hi - 1) // CHUNK_ROWS
        order = range(last, first - 1, -1) if reverse else range(first, last + 1)
        for k in order:
            yield max(lo, k * CHUNK_ROWS), min(hi, (k + 1) * CHUNK_ROWS)

    # ---- bounds from the filter -----------------------------------------------------------
    def _bounds(self, expr: Expr | None) -> tuple[int, int]:
        lo, hi = self._bounds_of(expr) if expr is not None else (0, self._gen.size)
        lo = max(0, min(lo, self._gen.size))
        hi = max(lo, min(hi, self._gen.size))
        return lo, hi

    def _bounds_of(self, expr: Expr) -> tuple[int, int]:
        size = self._gen.size
        if isinstance(expr, And):
            parts = [self._bounds_of(i) for i in expr.items]
            return max(p[0] for p in parts), min(p[1] for p in parts)
        if isinstance(expr, Or):
            parts = [self._bounds_of(i) for i in expr.items]
            return min(p[0] for p in parts), max(p[1] for p in parts)
        if isinstance(expr, Not):
            return 0, size
        f = self.meta.find_field(expr.field)
        if f is None or f.api_name not in ("id", "Modified_Time"):
            return 0, size
        op = expr.op
        if op in ("!=", "not in", "not between", "is null", "is not null", "like", "not like"):
            return 0, size
        if op in ("between", "in"):
            values = [convert_literal(f, v) for v in expr.value]
            low, high = min(values), max(values)
        else:
            value = convert_literal(f, expr.value)
            low = value if op in ("=", ">", ">=") else None
            high = value if op in ("=", "<", "<=") else None
            if op == ">":
                low = value + 1
            if op == "<":
                high = value - 1
        g = self._gen
        if f.api_name == "id":
            lo = g.first_index_with_id_at_least(int(low)) if low is not None else 0
            hi = g.end_index_with_id_at_most(int(high)) if high is not None else size
        else:
            lo = g.first_index_modified_at_least(int(low)) if low is not None else 0
            hi = g.end_index_modified_at_most(int(high)) if high is not None else size
        return lo, hi

    # ---- scanning -------------------------------------------------------------------------
    def _where_names(self, where: Expr | None) -> list[str]:
        if where is None:
            return []
        names: list[str] = []
        for leaf in comparisons(where):
            name = self._field(leaf.field).api_name
            if name not in names:
                names.append(name)
        return names

    def _scan(
        self,
        snap: _Snapshot,
        where: Expr | None,
        lo: int,
        hi: int,
        need: int | None,
        reverse: bool = False,
    ) -> np.ndarray:
        """Indices of matching, visible base rows in [lo, hi), in index order (or reversed),
        stopping once ``need`` are found."""
        names = self._where_names(where)
        found: list[np.ndarray] = []
        count = 0
        for a, b in self._chunks(lo, hi, reverse):
            idx = np.arange(a, b, dtype=np.int64)
            keep = np.ones(b - a, dtype=bool)
            h0, h1 = np.searchsorted(snap.hidden, [a, b])
            if h1 > h0:
                keep[snap.hidden[h0:h1] - a] = False
            if where is not None:
                window = self._window(a, b, names)
                mask = evaluate(where, window, self.meta.field_map)
                keep &= np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
            sel = idx[keep]
            if reverse:
                sel = sel[::-1]
            found.append(sel)
            count += len(sel)
            if need is not None and count >= need:
                break
        if not found:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate(found)

    def _overlay_matches(self, snap: _Snapshot, where: Expr | None) -> tuple[pa.Table, np.ndarray]:
        overlay, index = snap.overlay, snap.overlay_index
        if where is None or overlay.num_rows == 0:
            return overlay, index
        mask = evaluate(where, overlay, self.meta.field_map)
        keep = np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
        return overlay.filter(mask), index[keep]

    # ---- ordering -------------------------------------------------------------------------
    def _order(self, order_by: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        keys: list[tuple[str, str]] = []
        for name, direction in order_by:
            d = str(direction).lower()
            if d not in ("asc", "desc"):
                raise QueryError("INVALID_QUERY", f"invalid sort order {direction}")
            field_name = self._field(name).api_name
            if all(field_name != k for k, _ in keys):
                keys.append((field_name, d))
        # Zoho promises no order among rows that tie on every sort key, so the simulator never
        # breaks ties by id: a query whose keys do not include `id` gets its ties shuffled
        # (`_tie_breaker`), afresh on every call. With no key at all, rows come in id order.
        return keys or [("id", "asc")]

    @staticmethod
    def _streamable(keys: list[tuple[str, str]]) -> str | None:
        names = [k for k, _ in keys]
        dirs = {d for _, d in keys}
        if len(dirs) == 1 and names in (["id"], ["Modified_Time", "id"], ["Modified_Time"]):
            return dirs.pop()
        return None

    def _tie_breaker(self, rows: int) -> pa.Array:
        """A random rank per row, the last sort key of a query whose keys leave ties.

        Seeded by the org's seed, the module and this store's count of such calls, so a failing
        test replays the same orders; every call draws a new one, as two calls to Zoho may
        order ties differently (docs/simulator.md, Assumptions).
        """
        with self._lock:
            self._shuffles += 1
            call = self._shuffles
        module = zlib.crc32(self.meta.api_name.encode())
        rng = np.random.default_rng([self.org.seed, module, call])
        return pa.array(rng.permutation(rows), type=pa.int64())

    def _tie_group(
        self,
        snap: _Snapshot,
        where: Expr | None,
        base_idx: np.ndarray,
        need: int,
        bounds: tuple[int, int],
        direction: str,
    ) -> np.ndarray:
        """The base rows a page of ``need`` rows ordered by ``Modified_Time`` alone must sort.

        The first ``need`` rows found are not enough when ties are shuffled: every row tied with
        the last of them may take its place, so the whole tie group is scanned too.
        """
        if need == 0 or len(base_idx) < need:
            return base_idx
        last = int(self._gen.modified_seconds(base_idx[need - 1 : need])[0])
        lo, hi = bounds
        if direction == "asc":
            hi = min(hi, self._gen.end_index_modified_at_most(last))
        else:
            lo = max(lo, self._gen.first_index_modified_at_least(last))
        return self._scan(snap, where, lo, hi, None, reverse=direction == "desc")

    def _sort_column(self, column: pa.ChunkedArray | pa.Array, f: SimField) -> Any:
        t = f.value_type
        cat = category(f)
        if cat == "lookup":
            return pc.struct_field(column, "id")
        if cat == "multiselect":
            return pc.binary_join(column, ";")
        if t == "currency":
            return pc.cast(column, pa.float64())
        if t == "bigint" and f.api_name != "id":
            return pc.cast(column, pa.int64())
        return column

    # ---- reads ----------------------------------------------------------------------------
    def select(
        self,
        columns: Sequence[str],
        *,
        where: Expr | None = None,
        order_by: Sequence[tuple[str, str]] = (("id", "asc"),),
        offset: int = 0,
        limit: int | None = None,
    ) -> pa.Table:
        """Matching current rows, ordered (nulls last; rows tied on every key in a new random
        order on each call unless a key is ``id``), sliced by offset/limit;
        ``columns`` come back in the order asked, by their canonical names."""
        snap = self._snapshot()
        cols = [self._field(c).api_name for c in columns]
        keys = self._order(order_by)
        offset = max(0, int(offset))
        need = None if limit is None else offset + max(0, int(limit))
        lo, hi = self._bounds(where)
        direction = self._streamable(keys)
        base_idx = self._scan(
            snap, where, lo, hi, need if direction else None, reverse=direction == "desc"
        )
        ov, _ = self._overlay_matches(snap, where)
        shuffled = all(name != "id" for name, _ in keys)
        if direction and need is not None:
            if shuffled:
                base_idx = self._tie_group(snap, where, base_idx, need, (lo, hi), direction)
            else:
                base_idx = base_idx[:need]
        key_names = [k for k, _ in keys]
        base_keys = self._gen.rows(base_idx, key_names)
        n_base = base_keys.num_rows
        sort_arrays: list[Any] = []
        sort_spec: list[tuple[str, str, str]] = []
        for i, (name, d) in enumerate(keys):
            f = self.meta.field(name)
            both = pa.chunked_array(
                [*base_keys.column(name).chunks, *ov.column(name).chunks],
                type=f.arrow_type,
            )
            sort_arrays.append(self._sort_column(both, f))
            sort_spec.append((f"k{i}", "ascending" if d == "asc" else "descending", "at_end"))
        if shuffled:
            sort_arrays.append(self._tie_breaker(n_base + ov.num_rows))
            sort_spec.append((f"k{len(keys)}", "ascending", "at_end"))
        sort_table = pa.Table.from_arrays(
            sort_arrays, names=[f"k{i}" for i in range(len(sort_arrays))]
        )
        order = pc.sort_indices(sort_table, sort_keys=sort_spec)
        order_np = np.asarray(order.to_numpy(), dtype=np.int64)
        end = len(order_np) if need is None else need
        chosen = order_np[offset:end]
        from_base = chosen < n_base
        base_part = self._gen.rows(base_idx[chosen[from_base]], cols)
        ov_part = ov.take(pa.array(chosen[~from_base] - n_base, type=pa.int64())).select(cols)
        merged = pa.concat_tables([base_part, ov_part.cast(base_part.schema)])
        # Put the rows back in sorted order: base rows first in merged, then overlay rows.
        position = np.empty(len(chosen), dtype=np.int64)
        position[np.nonzero(from_base)[0]] = np.arange(int(from_base.sum()))
        position[np.nonzero(~from_base)[0]] = int(from_base.sum()) + np.arange(
            int((~from_base).sum())
        )
        return merged.take(pa.array(position, type=pa.int64())).combine_chunks()

    def count(self, where: Expr | None = None) -> int:
        """How many current records match."""
        snap = self._snapshot()
        if where is None:
            return self._gen.size - len(snap.hidden) + snap.overlay.num_rows
        lo, hi = self._bounds(where)
        base = len(self._scan(snap, where, lo, hi, None))
        ov, _ = self._overlay_matches(snap, where)
        return base + ov.num_rows

    def iter_tables(
        self,
        columns: Sequence[str],
        *,
        where: Expr | None = None,
        chunk_rows: int = 50_000,
    ) -> Iterator[pa.Table]:
        """Every matching record once, in id order, in tables of about ``chunk_rows`` rows.
        The data is the snapshot taken when this is called (not when iteration starts)."""
        snap = self._snapshot()
        cols = [self._field(c).api_name for c in columns]
        if "id" not in cols:
            raise QueryError("INVALID_QUERY", "iter_tables needs the id column")
        lo, hi = self._bounds(where)
        ov, ov_index = self._overlay_matches(snap, where)
        return self._iterate(snap, cols, where, lo, hi, ov, ov_index, max(1, chunk_rows))

    def _iterate(
        self,
        snap: _Snapshot,
        cols: list[str],
        where: Expr | None,
        lo: int,
        hi: int,
        ov: pa.Table,
        ov_index: np.ndarray,
        chunk_rows: int,
    ) -> Iterator[pa.Table]:
        ov = ov.select(cols)
        where_names = self._where_names(where)
        gen_names = cols + [n for n in where_names if n not in cols]
        pos = int(np.searchsorted(ov_index, lo))
        if pos:
            yield ov.slice(0, pos)
        start = lo
        while start < hi:
            stop = min(hi, start + chunk_rows)
            table = self._gen.generate(start, stop, gen_names)
            keep = np.ones(stop - start, dtype=bool)
            h0, h1 = np.searchsorted(snap.hidden, [start, stop])
            if h1 > h0:
                keep[snap.hidden[h0:h1] - start] = False
            if where is not None:
                mask = evaluate(where, table, self.meta.field_map)
                keep &= np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
            part = table.filter(pa.array(keep)).select(cols)
            nxt = int(np.searchsorted(ov_index, stop))
            if nxt > pos:
                extra = ov.slice(pos, nxt - pos).cast(part.schema)
                part = pa.concat_tables([part, extra])
                part = part.take(pc.sort_indices(part, sort_keys=[("id", "ascending")]))
                pos = nxt
            if part.num_rows:
                yield part.combine_chunks()
            start = stop
        if pos < ov.num_rows:
            yield ov.slice(pos)

    def get(self, record_id: str) -> dict[str, Any] | None:
        """One current record as canonical Python values, or None."""
        with self._lock:
            row = self._rows.get(str(record_id))
            if row is not None:
                return dict(row)
            index = self._gen.index_of_id(str(record_id))
            if index is None or index >= self._gen.size or index in self._hidden:
                return None
        return dict(self._gen.rows(np.array([index]), None).to_pylist()[0])

    def current_ids(self) -> list[str]:
        """Ids of every current record, in id order (O(N); for tests)."""
        return [str(v) for v in self.select(["id"]).column("id").to_pylist()]

    def current_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Every current record, in id order (O(N); for tests)."""
        names = list(columns) if columns is not None else [f.api_name for f in self.meta.fields]
        return self.select(names)

    # ---- writes ---------------------------------------------------------------------------
    def _now(self) -> datetime:
        return self.org.clock().astimezone(timezone.utc).replace(microsecond=0)

    def _actor(self, by: str | None) -> SimUser:
        if by is not None:
            user = self.org.user(by)
            if user is None:
                raise QueryError("INVALID_DATA", "invalid user", {"api_name": "Owner", "id": by})
            return user
        return self.org.users[0]

    @staticmethod
    def _owner_value(user: SimUser) -> dict[str, str]:
        return {"id": user.id, "name": user.full_name, "email": user.email}

    def _coerce(self, f: SimField, value: Any) -> Any:
        if value is None:
            return None
        t = f.value_type
        try:
            if t in ("lookup", "userlookup"):
                return self._lookup_value(f, value)
            if t == "ownerlookup":
                return self._owner_of(value)
            coerce = _COERCE.get(t)
            if coerce is not None:
                return coerce(f, value)
        except (ValueError, TypeError, InvalidOperation):
            raise _bad_value(f) from None
        if isinstance(value, (dict, list)):
            raise _bad_value(f)
        text = str(value)
        return text if text != "" else None  # Zoho stores an empty value as null

    def _owner_of(self, value: Any) -> dict[str, str]:
        user_id = value.get("id") if isinstance(value, Mapping) else value
        user = self.org.user(str(user_id))
        if user is None:
            raise ValueError("unknown user")
        return self._owner_value(user)

    def _lookup_value(self, f: SimField, value: Any) -> dict[str, str | None]:
        target_id = value.get("id") if isinstance(value, Mapping) else value
        target = self.org.module(str(f.lookup_module))
        record = target.get(str(target_id))
        if record is None:
            raise QueryError(
                "INVALID_DATA",
                "the related id given seems to be invalid",
                {"api_name": f.api_name, "id": str(target_id)},
            )
        display = target.meta.display_field or "id"
        name = record.get(display)
        return {"id": str(target_id), "name": None if name is None else str(name)}

    def _coerce_values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Client values as canonical values. Runs before the module lock is taken, because a
        lookup reads another module (taking its lock) and lock order must never cycle."""
        out: dict[str, Any] = {}
        for key, value in values.items():
            f = self.meta.find_field(str(key))
            if f is None:
                raise QueryError(
                    "INVALID_DATA",
                    "invalid data",
                    {"api_name": str(key), "reason": "unknown field"},
                )
            # Zoho ignores system and auto-number fields on write; subform-like values are not
            # kept by the simulator. Other read-only fields may be set (tests use that).
            if f.api_name in SYSTEM_FIELDS or f.data_type == "autonumber" or not f.list_readable:
                continue
            out[f.api_name] = self._coerce(f, value)
        return out

    def _apply(self, row: dict[str, Any], coerced: Mapping[str, Any]) -> None:
        row.update(coerced)
        for f in self.meta.fields:
            if f.sim.get("gen") == "concat":
                parts = [row.get(name) for name in f.sim.get("of", [])]
                joined = " ".join(str(p) for p in parts if p is not None)
                row[f.api_name] = joined or None
        for f in self.meta.fields:
            if f.system_mandatory and row.get(f.api_name) is None:
                raise QueryError(
                    "MANDATORY_NOT_FOUND", "required field not found", {"api_name": f.api_name}
                )

    def insert(self, values: Mapping[str, Any], *, by: str | None = None) -> str:
        """Create a record; returns its new id (larger than every existing id)."""
        user = self._actor(by)
        coerced = self._coerce_values(values)
        with self._lock:
            now = self._now()
            index = self._next_index
            record_id = self._gen.id_of(index)
            row: dict[str, Any] = {f.api_name: None for f in self.meta.fields}
            for f in self.meta.fields:
                if f.value_type == "boolean":
                    row[f.api_name] = False  # Zoho's checkbox default
                if f.data_type == "autonumber":
                    auto = f.raw.get("auto_number") or {}
                    number = int(auto.get("start_number", 1)) + index
                    row[f.api_name] = f"{auto.get('prefix', '')}{number}{auto.get('suffix', '')}"
            if "Owner" in self.meta.field_map:
                row["Owner"] = self._owner_value(user)
            self._apply(row, coerced)
            row.update(
                id=record_id,
                Created_Time=now,
                Modified_Time=now,
                Created_By=self._owner_value(user),
                Modified_By=self._owner_value(user),
            )
            row = {k: v for k, v in row.items() if k in self.meta.field_map}
            self._next_index += 1
            self._rows[record_id] = row
            self._row_index[record_id] = index
            self._version += 1
            return record_id

    def update(self, record_id: str, values: Mapping[str, Any], *, by: str | None = None) -> None:
        """Change a record; stamps Modified_Time with the clock and Modified_By."""
        user = self._actor(by)
        coerced = self._coerce_values(values)
        with self._lock:
            current = self.get(record_id)
            if current is None:
                raise QueryError(
                    "INVALID_DATA", "the id given seems to be invalid", {"id": str(record_id)}
                )
            row = dict(current)
            self._apply(row, coerced)
            row["Modified_Time"] = self._now()
            if "Modified_By" in row:
                row["Modified_By"] = self._owner_value(user)
            index = self._row_index.get(str(record_id))
            if index is None:
                index = self._gen.index_of_id(str(record_id))
                assert index is not None
                self._hidden.add(index)
                self._row_index[str(record_id)] = index
            self._rows[str(record_id)] = row
            self._version += 1

    def delete(self, record_id: str, *, permanent: bool = False, by: str | None = None) -> None:
        """Delete a record (to the recycle bin, or permanently) and log it."""
        user = self._actor(by)
        record_id = str(record_id)
        with self._lock:
            now = self._now()
            current = self.get(record_id)
            if current is None:
                for i, entry in enumerate(self._deleted_log):
                    if entry.id == record_id and entry.type == "recycle" and permanent:
                        # Emptying it from the recycle bin makes it a permanent deletion.
                        self._deleted_log[i] = DeletedRecord(
                            entry.id, entry.display_name, "permanent", now, user, entry.created_by
                        )
                        self._version += 1
                        return
                raise QueryError(
                    "INVALID_DATA", "the id given seems to be invalid", {"id": record_id}
                )
            if record_id in self._rows:
                del self._rows[record_id]
                index = self._row_index.pop(record_id)
                if index < self._gen.size:
                    self._hidden.add(index)
            else:
                base_index = self._gen.index_of_id(record_id)
                assert base_index is not None
                self._hidden.add(base_index)
            display = self.meta.display_field or "id"
            name = current.get(display)
            creator = current.get("Created_By") or {}
            self._deleted_log.append(
                DeletedRecord(
                    id=record_id,
                    display_name=None if name is None else str(name),
                    type="permanent" if permanent else "recycle",
                    deleted_time=now,
                    deleted_by=user,
                    created_by=self.org.user(str(creator.get("id"))) if creator else None,
                )
            )
            self._version += 1

    def deleted(self, *, kind: str = "all", since: datetime | None = None) -> list[DeletedRecord]:
        """Deleted records, newest first; ``kind`` is all, recycle or permanent."""
        if kind not in ("all", "recycle", "permanent"):
            raise QueryError("PATTERN_NOT_MATCHED", "invalid type", {"param_name": "type"})
        now = self._now()
        with self._lock:
            entries = list(self._deleted_log)
        out = []
        for position, entry in enumerate(entries):
            keep_for = RECYCLE_RETENTION if entry.type == "recycle" else PERMANENT_RETENTION
            if entry.deleted_time < now - keep_for:
                continue
            if kind != "all" and entry.type != kind:
                continue
            if since is not None and entry.deleted_time < since:
                continue
            out.append((entry.deleted_time, position, entry))
        out.sort(key=lambda t: (t[0], t[1]), reverse=True)
        return [e for _, _, e in out]


class Org:
    """The whole simulated org."""

    def __init__(
        self,
        orgdef: OrgDef,
        *,
        seed: int = 7,
        records: int = 1000,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.orgdef = orgdef
        self.seed = seed
        self.records = records
        self.clock: Callable[[], datetime] = clock or _utc_now
        self.users: list[SimUser] = list(orgdef.users)
        self.time_zone: str = orgdef.time_zone
        self.offset: timedelta = orgdef.offset
        self.info: dict[str, Any] = {
            k: v for k, v in orgdef.org.items() if not k.startswith("sim_")
        }
        self.generator = OrgGenerator(orgdef, seed=seed, records=records)
        self.modules: dict[str, ModuleStore] = {
            m.api_name: ModuleStore(self, self.generator.module(m.api_name)) for m in orgdef.modules
        }
        self._users_by_id = {u.id: u for u in self.users}

    @classmethod
    def build(
        cls,
        *,
        seed: int = 7,
        records: int = 1000,
        fixture: Path | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> Org:
        """An org from the fixture, with ``records`` Leads and the other modules scaled."""
        return cls(load_orgdef(fixture), seed=seed, records=records, clock=clock)

    def module(self, api_name: str) -> ModuleStore:
        """The module named exactly ``api_name``; KeyError if unknown."""
        return self.modules[api_name]

    def find_module(self, name: str) -> ModuleStore | None:
        """The module named ``name``, case-insensitively (as Zoho resolves URL paths)."""
        if name in self.modules:
            return self.modules[name]
        lowered = name.lower()
        for api_name, store in self.modules.items():
            if api_name.lower() == lowered:
                return store
        return None

    def user(self, user_id: str) -> SimUser | None:
        """A user by id."""
        return self._users_by_id.get(str(user_id))

    def org_json(self) -> dict[str, Any]:
        """The org as the single element of ``GET /crm/v8/org``'s ``org`` list."""
        return dict(self.info)
