"""Deterministic, lazy, columnar generation of a module's base records.

A base record is a pure function of (seed, module, index): every value comes from a 64-bit hash of
(seed, module, field, purpose) mixed with the record index, so any set of rows can be generated on
its own, in any order, with numpy and pyarrow and no per-row Python. ``ModuleGen.rows(idx)`` takes
an arbitrary index array; ``generate(start, stop)`` is the contiguous special case.

Base ``Modified_Time`` is non-decreasing in the index: records are dealt into one-second "slots" of
1 to 5 records, and the slots are spread over [BASE_START, BASE_END). Ids increase with the index
too, so a lower bound on either can be turned into a first index by binary search.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connector.simulator.orgdef import (
    LOOKUP_TYPE,
    OWNER_TYPE,
    OrgDef,
    SimField,
    SimModule,
    load_orgdef,
)
from connector.simulator.words import (
    ASCII_FIRST,
    ASCII_LAST,
    CITIES,
    COMPANY_HEADS,
    COMPANY_TAILS,
    COUNTRIES,
    DEAL_TAILS,
    DEPARTMENTS,
    DOMAINS,
    FIRST_NAMES,
    JOB_TITLES,
    LAST_NAMES,
    NASTY,
    PARAGRAPH_SEPARATORS,
    SENTENCES,
    STATES,
    STREETS,
    TASK_SUBJECTS,
    TIME_RANGES,
    VESSELS,
    WEB_TLDS,
    WEB_WORDS,
)

BASE_START = datetime(2021, 1, 1, tzinfo=timezone.utc)
BASE_END = datetime(2026, 6, 30, tzinfo=timezone.utc)
_BASE_START_S = int(BASE_START.timestamp())
_BASE_END_S = int(BASE_END.timestamp())
_EPOCH_DAY_2021 = 18628  # 2021-01-01 as days since 1970-01-01

ID_ROOT = 5_725_767_000_000_000_000
ID_MODULE_SPAN = 10_000_000_000_000  # 1e13 ids per module: plenty for any index, stays 19 digits
ID_STEP = 8
_ID_SKIP = 1_000_000

_U64 = np.uint64


def _salt(*parts: object) -> int:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x + _U64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


class _Hasher:
    """Hash streams for one (seed, module, field)."""

    def __init__(self, seed: int, module: str, field: str) -> None:
        self.prefix = (seed, module, field)

    def h(self, purpose: str, idx: np.ndarray) -> np.ndarray:
        salt = _U64(_salt(*self.prefix, purpose))
        return _mix(idx.astype(np.uint64) * _U64(0xD1B54A32D192ED03) ^ salt)

    def u(self, purpose: str, idx: np.ndarray) -> np.ndarray:
        """Uniform floats in [0, 1)."""
        return (self.h(purpose, idx) >> _U64(11)).astype(np.float64) * (1.0 / (1 << 53))

    def pick(self, purpose: str, idx: np.ndarray, n: int) -> np.ndarray:
        return (self.h(purpose, idx) % _U64(n)).astype(np.int64)


def _take(vocab: Sequence[str], choice: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    indices = pa.array(choice, type=pa.int32(), mask=mask)
    return pa.array(list(vocab), type=pa.string()).take(indices)


def _digits(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(pc.cast(pa.array(values, type=pa.int64()), pa.string()), width, "0")


def _join(*parts: pa.Array | str, sep: str = "") -> pa.Array:
    arrays = [p for p in parts]
    return pc.binary_join_element_wise(*arrays, sep)


class ModuleGen:
    """Generator of one module's base records."""

    def __init__(self, org: OrgGenerator, meta: SimModule, ordinal: int, size: int) -> None:
        self.org = org
        self.meta = meta
        self.size = size
        self.seed = org.seed
        self.id_base = ID_ROOT + ordinal * ID_MODULE_SPAN + _ID_SKIP
        self._build_slots()

    # ---- ids -------------------------------------------------------------------------------
    def id_numbers(self, idx: np.ndarray) -> np.ndarray:
        """The numeric ids of the records at ``idx`` (valid for any index, also past ``size``)."""
        idx = np.asarray(idx, dtype=np.int64)
        jitter = 1 + _Hasher(self.seed, self.meta.api_name, "id").pick("jitter", idx, ID_STEP - 1)
        return self.id_base + idx * ID_STEP + jitter

    def id_strings(self, idx: np.ndarray) -> pa.Array:
        """Ids as 19-digit strings."""
        return pc.cast(pa.array(self.id_numbers(idx), type=pa.int64()), pa.string())

    def id_of(self, index: int) -> str:
        """The id of one record index."""
        return str(int(self.id_numbers(np.array([index]))[0]))

    def index_of_id(self, record_id: str) -> int | None:
        """The index whose id is exactly ``record_id`` (any index >= 0), else None."""
        try:
            value = int(record_id)
        except (TypeError, ValueError):
            return None
        index = (value - self.id_base) // ID_STEP
        if index < 0 or int(self.id_numbers(np.array([index]))[0]) != value:
            return None
        return int(index)

    def first_index_with_id_at_least(self, value: int) -> int:
        """Smallest base index whose id >= value (``size`` if none)."""
        index = (value - self.id_base - ID_STEP) // ID_STEP
        index = min(max(index, 0), self.size)
        while index < self.size and int(self.id_numbers(np.array([index]))[0]) < value:
            index += 1
        return index

    def end_index_with_id_at_most(self, value: int) -> int:
        """One past the largest base index whose id <= value (0 if none)."""
        index = (value - self.id_base) // ID_STEP + 1
        index = min(max(index, 0), self.size)
        while index > 0 and int(self.id_numbers(np.array([index - 1]))[0]) > value:
            index -= 1
        return index

    # ---- time ------------------------------------------------------------------------------
    def _build_slots(self) -> None:
        hasher = _Hasher(self.seed, self.meta.api_name, "Modified_Time")
        n = self.size
        counts = 1 + hasher.pick("per_second", np.arange(max(n, 1), dtype=np.int64), 5)
        cum = np.cumsum(counts)
        nslots = int(np.searchsorted(cum, n, side="left")) + 1 if n else 0
        cum = cum[:nslots]
        self._slot_end = cum  # exclusive end index of each slot
        self._slot_first = cum - counts[:nslots]
        span = _BASE_END_S - _BASE_START_S - 86_400
        if nslots:
            steps = np.arange(nslots, dtype=np.int64)
            self._slot_time = _BASE_START_S + (steps * span) // max(nslots, 1)
        else:
            self._slot_time = np.zeros(0, dtype=np.int64)

    def modified_seconds(self, idx: np.ndarray) -> np.ndarray:
        """Base Modified_Time of each index as epoch seconds (non-decreasing in the index)."""
        slots = np.searchsorted(self._slot_end, np.asarray(idx, dtype=np.int64), side="right")
        slots = np.minimum(slots, max(len(self._slot_time) - 1, 0))
        return self._slot_time[slots] if len(self._slot_time) else np.zeros(len(idx), np.int64)

    def first_index_modified_at_least(self, seconds: int) -> int:
        """Smallest base index whose Modified_Time >= ``seconds`` (``size`` if none)."""
        slot = int(np.searchsorted(self._slot_time, seconds, side="left"))
        if slot >= len(self._slot_time):
            return self.size
        return int(min(self._slot_first[slot], self.size))

    def end_index_modified_at_most(self, seconds: int) -> int:
        """One past the largest base index whose Modified_Time <= ``seconds``."""
        slot = int(np.searchsorted(self._slot_time, seconds, side="right"))
        if slot == 0:
            return 0
        return int(min(self._slot_end[slot - 1], self.size))

    # ---- rows ------------------------------------------------------------------------------
    def generate(self, start: int, stop: int, columns: Sequence[str] | None = None) -> pa.Table:
        """Base rows [start, stop) as a table of canonical columns."""
        return self.rows(np.arange(start, max(start, stop), dtype=np.int64), columns)

    def rows(self, idx: np.ndarray, columns: Sequence[str] | None = None) -> pa.Table:
        """The base rows at the given indices (any order, repeats allowed)."""
        idx = np.asarray(idx, dtype=np.int64)
        names = list(columns) if columns is not None else [f.api_name for f in self.meta.fields]
        arrays = [self.column(name, idx) for name in names]
        fields = [pa.field(n, self.meta.field(n).arrow_type) for n in names]
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

    def column(self, name: str, idx: np.ndarray) -> pa.Array:
        """One canonical column for the given indices."""
        f = self.meta.field(name)
        return _FieldGen(self, f).values(np.asarray(idx, dtype=np.int64))


class _FieldGen:
    """Values of one field."""

    def __init__(self, module: ModuleGen, f: SimField) -> None:
        self.m = module
        self.f = f
        self.hs = _Hasher(module.seed, module.meta.api_name, f.api_name)
        self.sim = f.sim
        default_null = (
            0.0
            if (f.system_mandatory or f.api_name == "id" or f.data_type == "autonumber")
            else 0.1
        )
        self.null_rate = float(self.sim.get("null_rate", default_null))

    def nulls(self, idx: np.ndarray) -> np.ndarray | None:
        if self.null_rate <= 0 or len(idx) == 0:
            return None
        return self.hs.u("null", idx) < self.null_rate

    def values(self, idx: np.ndarray) -> pa.Array:
        f = self.f
        gen = self.sim.get("gen")
        typ = f.value_type
        if self.sim.get("unreadable") or not f.list_readable:
            return pa.nulls(len(idx), type=f.arrow_type)
        if gen == "id" or f.api_name == "id":
            return self.m.id_strings(idx)
        if gen == "modified_time":
            return pa.array(self.m.modified_seconds(idx), type=pa.timestamp("s", tz="UTC"))
        if gen == "created_time":
            return self._created(idx)
        if typ == "ownerlookup":
            return self._owner(idx)
        if typ == "lookup":
            return self._lookup(idx)
        if gen == "concat":
            return self._concat(idx)
        make = _JSON_ARRAYS.get(str(gen))
        arr = make(self, idx) if make is not None else self._typed(idx, typ, gen)
        mask = self.nulls(idx)
        if mask is not None and mask.any():
            arr = pc.if_else(pa.array(mask), pa.nulls(len(idx), type=arr.type), arr)
        return arr

    # ---- per type ----------------------------------------------------------------------
    def _typed(self, idx: np.ndarray, typ: str, gen: str | None) -> pa.Array:
        if typ == "integer" or typ == "long":
            return self._int(idx)
        if typ in ("double",):
            return self._float(idx)
        if typ == "percent":
            return pa.array(np.round(self.hs.u("v", idx) * 100.0, 2), type=pa.float64())
        if typ == "currency":
            return self._money(idx)
        if typ == "boolean":
            true_rate = float(self.sim.get("true_rate", 0.35))
            return pa.array(self.hs.u("v", idx) < true_rate, type=pa.bool_())
        if typ == "date":
            return self._date(idx)
        if typ == "datetime":
            span = _BASE_END_S - _BASE_START_S
            secs = _BASE_START_S + (self.hs.h("v", idx) % _U64(span)).astype(np.int64)
            return pa.array(secs, type=pa.timestamp("s", tz="UTC"))
        if typ == "multiselectpicklist":
            return self._multi(idx)
        if typ == "picklist":
            values = self.f.pick_list_values or ("-None-",)
            return _take(values, self.hs.pick("v", idx, len(values)))
        if typ == "autonumber":
            auto = self.f.raw.get("auto_number") or {}
            start = int(auto.get("start_number", 1))
            num = pc.cast(pa.array(idx + start, type=pa.int64()), pa.string())
            return _join(str(auto.get("prefix", "")), num, str(auto.get("suffix", "")))
        if typ == "bigint":
            width = 6 + self.hs.pick("w", idx, 13)
            mod = (10 ** width.astype(np.float64)).astype(np.uint64)
            vals = (self.hs.h("v", idx) % mod).astype(np.int64) + 10 ** (width - 1)
            return pc.cast(pa.array(vals, type=pa.int64()), pa.string())
        return self._text(idx, gen or typ)

    def _int(self, idx: np.ndarray) -> pa.Array:
        lo = int(self.sim.get("min", -1000))
        hi = int(self.sim.get("max", 100000))
        vals = lo + (self.hs.h("v", idx) % _U64(hi - lo + 1)).astype(np.int64)
        big_rate = float(self.sim.get("big_rate", 0.0))
        if big_rate:
            big = self.hs.u("big", idx) < big_rate
            magnitude = 1_000_000_000 + (self.hs.h("bigv", idx) % _U64(1_147_483_647)).astype(
                np.int64
            )
            sign = np.where(self.hs.u("sign", idx) < 0.5, -1, 1)
            vals = np.where(big, sign * magnitude, vals)
        return pa.array(vals, type=pa.int64())

    def _float(self, idx: np.ndarray) -> pa.Array:
        lo = float(self.sim.get("min", -1000.0))
        hi = float(self.sim.get("max", 1000000.0))
        vals = np.round(lo + self.hs.u("v", idx) * (hi - lo), 3)
        return pa.array(vals, type=pa.float64())

    def _money(self, idx: np.ndarray) -> pa.Array:
        dp = int(self.f.decimal_place if self.f.decimal_place is not None else 2)
        scale = 10**dp
        hi = int(self.sim.get("max", 10_000_000)) * scale
        raw = (self.hs.h("v", idx) % _U64(hi)).astype(np.int64)
        # Round amounts are common in real data: a third of values have no fraction.
        raw = np.where(self.hs.u("round", idx) < 0.33, (raw // scale) * scale, raw)
        negative = self.hs.u("neg", idx) < float(self.sim.get("negative_rate", 0.0))
        units = pc.cast(pa.array(raw // scale, type=pa.int64()), pa.string())
        text = _join(units, _digits(raw % scale, dp), sep=".") if dp else units
        return pc.if_else(pa.array(negative), _join("-", text), text)

    def _date(self, idx: np.ndarray) -> pa.Array:
        y0 = int(self.sim.get("min_year", 1990))
        y1 = int(self.sim.get("max_year", 2030))
        first = (datetime(y0, 1, 1) - datetime(1970, 1, 1)).days
        last = (datetime(y1, 12, 31) - datetime(1970, 1, 1)).days
        days = first + (self.hs.h("v", idx) % _U64(last - first + 1)).astype(np.int64)
        return pa.array(days.astype(np.int32), type=pa.date32())

    def _multi(self, idx: np.ndarray) -> pa.Array:
        options = list(self.f.pick_list_values) or ["-None-"]
        k = len(options)
        h = self.hs.h("v", idx)
        # Each option chosen with probability ~1/4 (two hash bits per option).
        bits = np.stack([((h >> _U64(2 * j)) & _U64(3)) == 0 for j in range(k)], axis=1).reshape(
            len(idx), k
        )
        counts = bits.sum(axis=1)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        chosen = np.nonzero(bits.reshape(-1))[0] % k
        values = _take(options, chosen)
        mask = counts == 0  # no option chosen: Zoho shows an empty multiselect as null
        return pa.ListArray.from_arrays(
            pa.array(offsets, type=pa.int32()), values, mask=pa.array(mask)
        )

    def _created(self, idx: np.ndarray) -> pa.Array:
        modified = self.m.modified_seconds(idx)
        never_edited = self.hs.u("same", idx) < 0.35
        delta = (self.hs.h("delta", idx) % _U64(400 * 86_400)).astype(np.int64)
        created = np.where(
            never_edited, modified, np.maximum(modified - delta, _BASE_START_S - 2 * 365 * 86_400)
        )
        return pa.array(created, type=pa.timestamp("s", tz="UTC"))

    def _owner(self, idx: np.ndarray) -> pa.Array:
        everyone = self.m.org.orgdef.record_users or self.m.org.orgdef.users
        # A creator may have left since (a disabled user); owners and editors are active users.
        users = (
            everyone if self.sim.get("gen") == "created_by" else [u for u in everyone if u.active]
        )
        # Zoho weights: the admin owns more records than the reps.
        choice = self.hs.pick("v", idx, len(users) + 2) % len(users)
        mask = self.nulls(idx)
        ids = _take([u.id for u in users], choice, mask)
        names = _take([u.full_name for u in users], choice, mask)
        emails = _take([u.email for u in users], choice, mask)
        return pa.StructArray.from_arrays(
            [ids, names, emails],
            fields=list(OWNER_TYPE),
            mask=None if mask is None else pa.array(mask),
        )

    def _lookup(self, idx: np.ndarray) -> pa.Array:
        target = self.m.org.module(str(self.f.lookup_module))
        mask = self.nulls(idx)
        if target.size == 0:
            return pa.nulls(len(idx), type=LOOKUP_TYPE)
        ref = (self.hs.h("v", idx) % _U64(target.size)).astype(np.int64)
        ids = target.id_strings(ref)
        display = target.meta.display_field or "id"
        names = target.column(display, ref)
        if names.type != pa.string():
            names = pc.cast(names, pa.string())
        return pa.StructArray.from_arrays(
            [ids, names], fields=list(LOOKUP_TYPE), mask=None if mask is None else pa.array(mask)
        )

    def _participants(self, idx: np.ndarray) -> pa.Array:
        """Events' Participants: compact JSON arrays of 1-3 invitees (contacts, users, emails)."""
        users = self.m.org.orgdef.record_users or self.m.org.orgdef.users
        contacts = self.m.org.module("Contacts")
        counts = 1 + self.hs.pick("n", idx, 3)
        values = []
        for row, n in enumerate(counts):
            people: list[dict[str, Any]] = []
            for k in range(int(n)):
                h = int(self.hs.h(f"p{k}", idx[row : row + 1])[0])
                kind = ("contact", "user", "email")[h % 3]
                if kind == "contact" and contacts.size:
                    ref = contacts.id_of(h % contacts.size)
                    people.append({"type": "contact", "participant": ref, "name": None})
                elif kind == "user":
                    user = users[h % len(users)]
                    people.append({"type": "user", "participant": user.id, "name": user.full_name})
                else:
                    mail = (
                        f"{ASCII_FIRST[h % len(ASCII_FIRST)].lower()}@{DOMAINS[h % len(DOMAINS)]}"
                    )
                    people.append({"type": "email", "participant": mail, "Email": mail})
                people[-1].update(invited=bool(h & 8), status="not_known")
            values.append(_json_text(people))
        return pa.array(values, type=pa.string())

    def _line_items(self, idx: np.ndarray) -> pa.Array:
        """Quotes' Product_Details: compact JSON arrays of 1-4 line items."""
        counts = 1 + self.hs.pick("n", idx, 4)
        values = []
        for row, n in enumerate(counts):
            items: list[dict[str, Any]] = []
            for k in range(int(n)):
                h = int(self.hs.h(f"l{k}", idx[row : row + 1])[0])
                quantity = 1 + h % 20
                cents = 100 + (h >> 8) % 500_000
                items.append(
                    {
                        "id": str(5725767000000930001 + int(idx[row]) * 8 + k),
                        "product": {
                            "name": VESSELS[(h >> 3) % len(VESSELS)],
                            "id": str(5725767000000940001 + (h >> 5) % 997),
                        },
                        "quantity": quantity,
                        "list_price": cents / 100,
                        "total": cents * quantity / 100,
                        "product_description": SENTENCES[(h >> 7) % len(SENTENCES)]
                        if h & 16
                        else None,
                    }
                )
            values.append(_json_text(items))
        return pa.array(values, type=pa.string())

    def _concat(self, idx: np.ndarray) -> pa.Array:
        parts = [self.m.column(name, idx) for name in self.sim.get("of", [])]
        return pc.binary_join_element_wise(*parts, " ", null_handling="skip")

    def _text(self, idx: np.ndarray, gen: str) -> pa.Array:
        hs = self.hs
        make = _TEXT.get(gen, _DEFAULT_TEXT)
        arr = make(hs, idx, self.sim)
        if gen in _NASTY_OK:
            nasty = hs.u("nasty", idx) < float(self.sim.get("nasty_rate", 0.04))
            if nasty.any():
                arr = pc.if_else(pa.array(nasty), _take(NASTY, hs.pick("nv", idx, len(NASTY))), arr)
        long_rate = float(self.sim.get("long_rate", 0.0))
        if long_rate:
            longs = hs.u("long", idx) < long_rate
            if longs.any():
                texts = [
                    _long_text(int(i), int(h))
                    for i, h in zip(idx[longs], hs.h("lv", idx[longs]), strict=True)
                ]
                arr = pc.replace_with_mask(arr, pa.array(longs), pa.array(texts, type=pa.string()))
        return arr


def _json_text(value: Any) -> str:
    """Compact JSON text, as the store keeps a jsonarray value (render.py sends it parsed)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# A field's "gen" setting -> the values of a jsonarray field (kept as compact JSON text).
_JSON_ARRAYS: dict[str, Callable[[_FieldGen, np.ndarray], pa.Array]] = {
    "participants": _FieldGen._participants,
    "line_items": _FieldGen._line_items,
}


# ---- text generators: (hashes of the field, indices, the field's "sim" settings) -> strings ----
_TextMaker = Callable[[_Hasher, np.ndarray, Mapping[str, Any]], pa.Array]


def _one_of(vocab: Sequence[str]) -> _TextMaker:
    """A word from ``vocab``."""

    def make(hs: _Hasher, idx: np.ndarray, sim: Mapping[str, Any]) -> pa.Array:
        return _take(vocab, hs.pick("v", idx, len(vocab)))

    return make


def _pair(heads: Sequence[str], tails: Sequence[str], sep: str) -> _TextMaker:
    """A word from ``heads`` and one from ``tails``, joined by ``sep``."""

    def make(hs: _Hasher, idx: np.ndarray, sim: Mapping[str, Any]) -> pa.Array:
        return _join(
            _take(heads, hs.pick("a", idx, len(heads))),
            _take(tails, hs.pick("b", idx, len(tails))),
            sep=sep,
        )

    return make


def _email(hs: _Hasher, idx: np.ndarray, sim: Mapping[str, Any]) -> pa.Array:
    number = pc.if_else(
        pa.array(hs.u("numq", idx) < 0.5),
        pc.cast(pa.array(hs.pick("num", idx, 100)), pa.string()),
        pa.array([""] * len(idx), type=pa.string()),
    )
    return _join(
        _take(ASCII_FIRST, hs.pick("a", idx, len(ASCII_FIRST))),
        ".",
        _take(ASCII_LAST, hs.pick("b", idx, len(ASCII_LAST))),
        number,
        "@",
        _take(DOMAINS, hs.pick("d", idx, len(DOMAINS))),
    )


def _phone(hs: _Hasher, idx: np.ndarray, sim: Mapping[str, Any]) -> pa.Array:
    india = hs.u("cc", idx) < 0.7
    a = _digits(70000 + hs.pick("a", idx, 29999), 5)
    b = _digits(hs.pick("b", idx, 100000), 5)
    us = _join("+1 (415) 555-", _digits(hs.pick("c", idx, 10000), 4))
    return pc.if_else(pa.array(india), _join("+91 ", a, " ", b), us)


def _website(hs: _Hasher, idx: np.ndarray, sim: Mapping[str, Any]) -> pa.Array:
    slug = _take(ASCII_LAST, hs.pick("a", idx, len(ASCII_LAST)))
    tld = _take(WEB_TLDS, hs.pick("t", idx, len(WEB_TLDS)))
    kind = _take(WEB_WORDS, hs.pick("k", idx, len(WEB_WORDS)))
    return _join("https://www.", slug, "-", kind, ".", tld)


def _street(hs: _Hasher, idx: np.ndarray, sim: Mapping[str, Any]) -> pa.Array:
    return _join(
        pc.cast(pa.array(1 + hs.pick("n", idx, 400)), pa.string()),
        _take(STREETS, hs.pick("v", idx, len(STREETS))),
        sep=" ",
    )


def _zip(hs: _Hasher, idx: np.ndarray, sim: Mapping[str, Any]) -> pa.Array:
    return _digits(100000 + hs.pick("v", idx, 899999), 6)


def _code(hs: _Hasher, idx: np.ndarray, sim: Mapping[str, Any]) -> pa.Array:
    return _join(str(sim.get("prefix", "")), _digits(hs.pick("v", idx, 100_000_000), 8))


def _paragraph(hs: _Hasher, idx: np.ndarray, sim: Mapping[str, Any]) -> pa.Array:
    seps = _take(PARAGRAPH_SEPARATORS, hs.pick("sep", idx, len(PARAGRAPH_SEPARATORS)))
    return pc.binary_join_element_wise(
        _take(SENTENCES, hs.pick("a", idx, len(SENTENCES))),
        _take(SENTENCES, hs.pick("b", idx, len(SENTENCES))),
        _take(SENTENCES, hs.pick("c", idx, len(SENTENCES))),
        seps,
    )


def _rich_text(hs: _Hasher, idx: np.ndarray, sim: Mapping[str, Any]) -> pa.Array:
    """A paragraph as rich text (HTML), as Zoho stores a rich-text multi-line field."""
    return _join(
        "<p><b>",
        _take(SENTENCES, hs.pick("t", idx, len(SENTENCES))),
        "</b> ",
        _paragraph(hs, idx, sim),
        "</p>",
    )


def _alarm(hs: _Hasher, idx: np.ndarray, sim: Mapping[str, Any]) -> pa.Array:
    """An ALARM value (a Task's reminder) as compact JSON text: ``{"ALARM": "FREQ=…"}``."""
    action = _take(("EMAIL", "POPUP", "EMAILANDPOPUP"), hs.pick("a", idx, 3))
    minutes = pc.cast(pa.array(5 * (1 + hs.pick("m", idx, 24))), pa.string())
    return _join('{"ALARM":"FREQ=NONE;ACTION=', action, ";TRIGGER=-PT", minutes, 'M"}')


def _rrule(hs: _Hasher, idx: np.ndarray, sim: Mapping[str, Any]) -> pa.Array:
    """An RRULE value (a recurring Task) as compact JSON text: ``{"RRULE": "FREQ=…"}``."""
    freq = _take(("DAILY", "WEEKLY", "MONTHLY", "YEARLY"), hs.pick("f", idx, 4))
    interval = pc.cast(pa.array(1 + hs.pick("i", idx, 4)), pa.string())
    days = (_EPOCH_DAY_2021 + hs.pick("d", idx, 1500)).astype(np.int32)
    start = pc.cast(pa.array(days, type=pa.date32()), pa.string())
    return _join('{"RRULE":"FREQ=', freq, ";INTERVAL=", interval, ";DTSTART=", start, '"}')


# A text field's "gen" setting (or its data type) -> how its values are made.
_TEXT: dict[str, _TextMaker] = {
    "first_name": _one_of(FIRST_NAMES),
    "last_name": _one_of(LAST_NAMES),
    "company": _pair(COMPANY_HEADS, COMPANY_TAILS, " "),
    "job_title": _one_of(JOB_TITLES),
    "department": _one_of(DEPARTMENTS),
    "email": _email,
    "phone": _phone,
    "website": _website,
    "street": _street,
    "city": _one_of(CITIES),
    "state": _one_of(STATES),
    "country": _one_of(COUNTRIES),
    "zip": _zip,
    "code": _code,
    "deal_name": _pair(COMPANY_HEADS, DEAL_TAILS, " - "),
    "task_subject": _one_of(TASK_SUBJECTS),
    "vessel": _one_of(VESSELS),
    "time_range": _one_of(TIME_RANGES),
    "paragraph": _paragraph,
    "textarea": _paragraph,
    "rich_text": _rich_text,
    "alarm": _alarm,
    "rrule": _rrule,
}
_DEFAULT_TEXT = _one_of(SENTENCES)  # sentence, text and anything unknown
# Kinds of text that sometimes hold a NASTY value instead (nasty_rate, 4% by default).
_NASTY_OK = frozenset(
    {
        "text",
        "textarea",
        "sentence",
        "paragraph",
        "company",
        "street",
        "last_name",
        "first_name",
        "city",
        "job_title",
        "deal_name",
    }
)


def _long_text(index: int, h: int) -> str:
    """A 2,000-5,000 character text for the rare very long textarea value."""
    target = 2000 + h % 3000
    parts: list[str] = [f"Record {index}: long history."]
    k = h
    while sum(len(p) + 1 for p in parts) < target:
        k = (k * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        parts.append(SENTENCES[k % len(SENTENCES)] if k % 7 else NASTY[k % len(NASTY)])
    return "\n".join(parts)[:target].rstrip() + " …end"


class OrgGenerator:
    """Generators for every module of an org, sized by ``records`` × the module's size factor."""

    def __init__(self, orgdef: OrgDef, *, seed: int = 7, records: int = 1000) -> None:
        self.orgdef = orgdef
        self.seed = seed
        self.records = records
        self._modules: dict[str, ModuleGen] = {}
        for ordinal, meta in enumerate(orgdef.modules, start=1):
            size = module_size(records, meta.size_factor)
            self._modules[meta.api_name] = ModuleGen(self, meta, ordinal, size)

    def module(self, api_name: str) -> ModuleGen:
        """The generator of one module; KeyError if unknown."""
        return self._modules[api_name]


def module_size(records: int, factor: float) -> int:
    """Base record count of a module: ``records`` × factor, at least 1 when both are positive."""
    if records <= 0 or factor <= 0:
        return 0
    return max(1, round(records * factor))


def generate(
    module: str,
    start: int,
    stop: int,
    seed: int = 7,
    *,
    records: int = 1000,
    orgdef: OrgDef | None = None,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """Base rows [start, stop) of ``module`` in an org of ``records`` (canonical columns)."""
    gen = OrgGenerator(orgdef or load_orgdef(), seed=seed, records=records)
    return gen.module(module).generate(start, stop, columns)
