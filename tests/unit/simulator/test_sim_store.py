"""ModuleStore: mutations, select/count/iter_tables against a brute-force reference, paging."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simdata_support import START, StepClock

from connector.simulator.orgdef import SimField, format_zoho_datetime
from connector.simulator.query import (
    And,
    Comparison,
    Expr,
    Not,
    Or,
    QueryError,
    category,
    parse_datetime_literal,
)
from connector.simulator.store import CHUNK_ROWS, ModuleStore, Org

# ---- a brute-force reference ----------------------------------------------------------------


def _py(f: SimField, v: Any) -> Any:
    cat = category(f)
    if cat == "number":
        if f.value_type == "currency":
            return float(v)
        if f.value_type == "bigint":
            return int(v)
        return v
    if cat == "datetime":
        return int(v.timestamp())
    if cat == "date":
        return (v - date(1970, 1, 1)).days
    if cat == "lookup":
        return v["id"]
    return v


def _lit(f: SimField, text: Any) -> Any:
    cat = category(f)
    if cat == "number":
        return int(text) if f.value_type in ("integer", "bigint") else float(text)
    if cat == "datetime":
        return int(parse_datetime_literal(text).timestamp())
    if cat == "date":
        return (date.fromisoformat(text) - date(1970, 1, 1)).days
    if cat == "boolean":
        return text == "true"
    return str(text)


def _like(pattern: str, value: str) -> bool:
    regex = ".*".join(re.escape(part) for part in pattern.split("%"))
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _test(op: str, v: Any, lit: Any) -> bool:
    if op == "=":
        return bool(v == lit)
    if op == "!=":
        return bool(v != lit)
    if op == ">":
        return bool(v > lit)
    if op == ">=":
        return bool(v >= lit)
    if op == "<":
        return bool(v < lit)
    if op == "<=":
        return bool(v <= lit)
    raise AssertionError(op)


def matches(row: Mapping[str, Any], expr: Expr, fields: Mapping[str, SimField]) -> bool:
    if isinstance(expr, And):
        return all(matches(row, e, fields) for e in expr.items)
    if isinstance(expr, Or):
        return any(matches(row, e, fields) for e in expr.items)
    if isinstance(expr, Not):
        return not matches(row, expr.item, fields)
    f = fields[expr.field]
    raw = row[f.api_name]
    if expr.op == "is null":
        return raw is None
    if expr.op == "is not null":
        return raw is not None
    if raw is None:
        return False
    negative = expr.op.startswith("not ") or expr.op == "!="
    positive = {"!=": "=", "not in": "in", "not like": "like", "not between": "between"}.get(
        expr.op, expr.op
    )
    values = raw if category(f) == "multiselect" else [raw]
    if category(f) == "multiselect":
        hit = any(_single(f, positive, v, expr.value) for v in values)
    else:
        hit = _single(f, positive, values[0], expr.value)
    return not hit if negative else hit


def _single(f: SimField, op: str, raw: Any, literal: Any) -> bool:
    v = _py(f, raw)
    if op == "like":
        return _like(str(literal), v)
    if op == "in":
        return any(v == _lit(f, x) for x in literal)
    if op == "between":
        return bool(_lit(f, literal[0]) <= v <= _lit(f, literal[1]))
    return _test(op, v, _lit(f, literal))


def _sort_value(f: SimField, v: Any) -> Any:
    if v is None:
        return None
    if category(f) == "lookup":
        return v["id"]
    if category(f) == "multiselect":
        return ";".join(v)
    if f.value_type == "currency":
        return float(v)
    if f.value_type == "bigint" and f.api_name != "id":
        return int(v)
    return v


def reference(
    store: ModuleStore,
    where: Expr | None,
    order_by: list[tuple[str, str]],
    offset: int,
    limit: int | None,
) -> list[dict[str, Any]]:
    """The matching rows in the query's order, sliced; rows tied on every key in id order (the
    simulator shuffles those, so compare their keys, not their ids: ``sort_keys``)."""
    fields = store.meta.field_map
    rows = [
        r for r in store.current_table().to_pylist() if where is None or matches(r, where, fields)
    ]
    keys = list(order_by)
    if all(k != "id" for k, _ in keys):
        keys.append(("id", keys[0][1]))
    for name, direction in reversed(keys):
        f = fields[name]
        present = [r for r in rows if r[name] is not None]
        nulls = [r for r in rows if r[name] is None]
        present.sort(
            key=lambda r, f=f, name=name: _sort_value(f, r[name]), reverse=direction == "desc"
        )
        rows = present + nulls
    end = None if limit is None else offset + limit
    return rows[offset:end]


def sort_keys(
    store: ModuleStore, rows: list[dict[str, Any]], order_by: list[tuple[str, str]]
) -> list[tuple[Any, ...]]:
    """Each row's values of the ``order_by`` fields, as the simulator compares them."""
    fields = store.meta.field_map
    return [tuple(_sort_value(fields[n], r[n]) for n, _ in order_by) for r in rows]


# ---- mutations ------------------------------------------------------------------------------


def test_insert_gets_a_larger_id_and_clock_stamps(org: Org, clock: StepClock) -> None:
    leads = org.module("Leads")
    before = leads.current_ids()
    clock.now = START.replace(microsecond=987_654)
    new_id = leads.insert(
        {
            "Last_Name": "Zed",
            "First_Name": "Ann",
            "Annual_Revenue": 12.5,
            "Interests": ["Logistics"],
        },
        by=org.users[1].id,
    )
    assert len(new_id) == 19 and int(new_id) > max(int(i) for i in before)
    row = leads.get(new_id)
    assert row is not None
    assert row["Created_Time"] == row["Modified_Time"] == START
    assert row["Modified_By"]["id"] == org.users[1].id == row["Owner"]["id"]
    assert row["Full_Name"] == "Ann Zed" and row["Annual_Revenue"] == "12.50"
    assert row["Email_Opt_Out"] is False
    assert leads.count() == len(before) + 1
    assert leads.current_ids()[-1] == new_id
    last = leads.select(["id"], order_by=[("Modified_Time", "desc")], limit=1)
    assert last.column("id").to_pylist() == [new_id]


def test_update_moves_the_record_to_the_end_of_modified_order(org: Org, clock: StepClock) -> None:
    leads = org.module("Leads")
    first = leads.current_ids()[0]
    clock.advance(90)
    leads.update(first, {"First_Name": "Zoë", "Lead_Score": -3})
    row = leads.get(first)
    assert row is not None and row["Modified_Time"] == START + timedelta(seconds=90)
    assert row["Full_Name"].startswith("Zoë ") and row["Lead_Score"] == -3
    ordered = leads.select(["id"], order_by=[("Modified_Time", "asc"), ("id", "asc")])
    ids = ordered.column("id").to_pylist()
    assert ids[-1] == first and ids.count(first) == 1 and len(ids) == leads.count()
    assert leads.current_ids()[0] == first  # id order is unchanged


def test_delete_hides_and_logs(org: Org, clock: StepClock) -> None:
    leads = org.module("Leads")
    a, b, c = leads.current_ids()[:3]
    name_a = leads.get(a)["Full_Name"]  # type: ignore[index]
    leads.delete(a)
    clock.advance(5)
    leads.delete(b, permanent=True, by=org.users[2].id)
    assert leads.get(a) is None and leads.get(b) is None and leads.get(c) is not None
    assert a not in leads.current_ids() and leads.count() == leads.base_size - 2
    log = leads.deleted()
    assert [e.id for e in log] == [b, a]
    assert log[1].display_name == name_a and log[1].type == "recycle"
    assert log[0].type == "permanent" and log[0].deleted_by == org.users[2]
    assert [e.id for e in leads.deleted(kind="recycle")] == [a]
    assert [e.id for e in leads.deleted(since=START + timedelta(seconds=1))] == [b]
    leads.delete(a, permanent=True)  # emptying the recycle bin
    assert [e.type for e in leads.deleted()] == ["permanent", "permanent"]
    clock.advance(121 * 86400)
    assert leads.deleted() == []
    with pytest.raises(QueryError) as err:
        leads.deleted(kind="bogus")
    assert err.value.code == "PATTERN_NOT_MATCHED"


def test_deleting_an_inserted_record(org: Org) -> None:
    notes = org.module("Notes")
    contact = org.module("Contacts").current_ids()[0]
    new_id = notes.insert({"Note_Title": "hi", "Parent_Id": {"id": contact}})
    assert notes.get(new_id)["Parent_Id"]["id"] == contact  # type: ignore[index]
    notes.delete(new_id)
    assert notes.get(new_id) is None and new_id not in notes.current_ids()
    assert notes.count() == notes.base_size


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({"First_Name": "no last name"}, "MANDATORY_NOT_FOUND"),
        ({"Last_Name": "x", "No_of_Employees": "many"}, "INVALID_DATA"),
        ({"Last_Name": "x", "Annual_Revenue": True}, "INVALID_DATA"),
        ({"Last_Name": "x", "Preferred_Call_Date": "31/12/2024"}, "INVALID_DATA"),
        ({"Last_Name": "x", "Last_Activity_Time": "2024-01-01T00:00:00"}, "INVALID_DATA"),
        ({"Last_Name": "x", "Owner": {"id": "123"}}, "INVALID_DATA"),
        ({"Last_Name": "x", "Not_A_Field": 1}, "INVALID_DATA"),
    ],
)
def test_bad_writes_are_refused(org: Org, values: dict[str, Any], code: str) -> None:
    with pytest.raises(QueryError) as err:
        org.module("Leads").insert(values)
    assert err.value.code == code
    assert org.module("Leads").count() == org.module("Leads").base_size


def test_bad_ids_and_bad_lookups(org: Org) -> None:
    contacts = org.module("Contacts")
    with pytest.raises(QueryError) as err:
        contacts.update("5725767000000000001", {"Last_Name": "x"})
    assert err.value.code == "INVALID_DATA" and err.value.details == {"id": "5725767000000000001"}
    with pytest.raises(QueryError) as err:
        contacts.insert({"Last_Name": "x", "Account_Name": {"id": "42"}})
    assert err.value.code == "INVALID_DATA" and err.value.details["api_name"] == "Account_Name"
    with pytest.raises(QueryError):
        contacts.delete("nope")
    assert contacts.get("nope") is None


def test_writes_accept_json_spellings(org: Org) -> None:
    deals = org.module("Deals")
    account = org.module("Accounts").current_ids()[3]
    new_id = deals.insert(
        {
            "Deal_Name": "x",
            "Stage": "Qualification",
            "Account_Name": account,
            "Closing_Date": "2026-09-01",
            "Amount": "1234.5",
            "Probability": 40,
            "Owner": org.users[3].id,
            "Line_Items": [{"Product": "ignored"}],
        }
    )
    row = deals.get(new_id)
    assert row is not None
    assert row["Account_Name"]["id"] == account and row["Account_Name"]["name"]
    assert row["Closing_Date"] == date(2026, 9, 1) and row["Amount"] == "1234.50"
    assert row["Probability"] == 40.0 and row["Owner"]["email"] == org.users[3].email
    assert row["Line_Items"] is None


def test_concurrent_inserts_get_unique_ids(org: Org) -> None:
    tasks = org.module("Tasks")
    out: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        for i in range(20):
            new_id = tasks.insert({"Subject": f"t{i}"})
            with lock:
                out.append(new_id)
            tasks.select(["id"], where=Comparison("Subject", "=", "t1"))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == 80
    assert tasks.count() == tasks.base_size + 80
    assert tasks.count(Comparison("Subject", "=", "t1")) == 4


# ---- select against the reference ------------------------------------------------------------

FIELDS = [
    "id",
    "Modified_Time",
    "Created_Time",
    "Last_Name",
    "Lead_Source",
    "No_of_Employees",
    "Annual_Revenue",
    "Conversion_Chance",
    "Email_Opt_Out",
    "Preferred_Call_Date",
    "Owner",
    "Interests",
    "City",
    "Lead_Score",
]
ORDERS = [
    [("id", "asc")],
    [("id", "desc")],
    [("Modified_Time", "asc"), ("id", "asc")],
    [("Modified_Time", "desc")],
    [("Last_Name", "asc")],
    [("Annual_Revenue", "desc")],
    [("Owner", "asc"), ("Modified_Time", "desc")],
    [("Created_Time", "asc"), ("Lead_Score", "desc")],
    [("Preferred_Call_Date", "desc"), ("id", "asc")],
]


def _mutated_org() -> Org:
    clock = StepClock()
    org = Org.build(seed=21, records=300, clock=clock)
    leads = org.module("Leads")
    ids = leads.current_ids()
    for i, record_id in enumerate(ids[5:200:40]):
        clock.advance(1 if i % 2 else 0)  # several changes share a second
        leads.update(record_id, {"Last_Name": f"Updated {i}", "Lead_Score": i - 2})
    for record_id in ids[7:300:60]:
        leads.delete(record_id)
    for i in range(4):
        leads.insert({"Last_Name": f"New, {i}", "Interests": ["Logistics", "Insurance"]})
    return org


MUTATED = _mutated_org()
TABLE = MUTATED.module("Leads").current_table().to_pylist()


def _literal_for(f: SimField, value: Any, pattern: int) -> str:
    cat = category(f)
    if cat == "datetime":
        offset = timedelta(hours=5, minutes=30) if pattern % 2 else timedelta(0)
        return format_zoho_datetime(value, offset)
    if cat == "date":
        return str(value.isoformat())
    if cat == "boolean":
        return "true" if value else "false"
    if cat == "lookup":
        return str(value["id"])
    if cat == "multiselect":
        return str(value[pattern % len(value)])
    return str(value)


@st.composite
def leaves(draw: st.DrawFn) -> Expr:
    fields = MUTATED.module("Leads").meta.field_map
    f = fields[draw(st.sampled_from(FIELDS))]
    cat = category(f)
    values = [r[f.api_name] for r in TABLE if r[f.api_name] is not None]
    ops = {
        "text": ["=", "!=", "in", "not in", "like", "not like", "is null", "is not null"],
        "multiselect": ["=", "!=", "in", "not in", "like", "not like", "is null"],
        "number": ["=", "!=", ">", ">=", "<", "<=", "between", "not between", "in", "not in"],
        "date": ["=", ">", "<=", "between", "not between", "in", "is null"],
        "datetime": ["=", "!=", ">", ">=", "<", "<=", "between", "in"],
        "boolean": ["=", "!="],
        "lookup": ["=", "!=", "in", "not in", "is not null"],
    }[cat]
    op = draw(st.sampled_from(ops))
    if op in ("is null", "is not null"):
        return Comparison(f.api_name, op)

    def one() -> str:
        value = draw(st.sampled_from(values))
        return _literal_for(f, value, draw(st.integers(0, 9)))

    if op in ("between", "not between"):
        lo, hi = sorted([one(), one()], key=lambda t: _lit(f, t))
        return Comparison(f.api_name, op, (lo, hi))
    if op in ("in", "not in"):
        return Comparison(f.api_name, op, tuple(one() for _ in range(draw(st.integers(1, 4)))))
    if op in ("like", "not like"):
        text = one()
        cut = draw(st.integers(0, max(0, len(text) - 1)))
        shape = draw(st.sampled_from(["{}%", "%{}", "%{}%", "{}"]))
        return Comparison(f.api_name, op, shape.format(text[cut : cut + 3]))
    return Comparison(f.api_name, op, one())


wheres = st.recursive(
    leaves(),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(children, min_size=1, max_size=3).map(lambda xs: Or(tuple(xs))),
        children.map(Not),
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    where=st.none() | wheres,
    order=st.sampled_from(ORDERS),
    offset=st.integers(0, 40),
    limit=st.none() | st.integers(0, 30),
)
def test_select_matches_brute_force(
    where: Expr | None, order: list[tuple[str, str]], offset: int, limit: int | None
) -> None:
    leads = MUTATED.module("Leads")
    got = leads.select(["id", "Last_Name"], where=where, order_by=order, offset=offset, limit=limit)
    assert got.column_names == ["id", "Last_Name"]
    expected = reference(leads, where, order, offset, limit)
    ids = got.column("id").to_pylist()
    if any(name == "id" for name, _ in order):
        assert ids == [r["id"] for r in expected]
    else:
        # Ties come in any order: the same keys in the same places, each row once.
        rows = {r["id"]: r for r in leads.current_table().to_pylist()}
        assert len(set(ids)) == len(ids)
        got_keys = sort_keys(leads, [rows[i] for i in ids], order)
        assert got_keys == sort_keys(leads, expected, order)
    if offset == 0 and limit is None:
        assert leads.count(where) == got.num_rows
        assert set(ids) == {r["id"] for r in expected}


def test_select_returns_the_columns_asked_in_order(shared_org: Org) -> None:
    deals = shared_org.module("Deals")
    table = deals.select(["Amount", "id", "Stage"], limit=3, order_by=[("id", "desc")])
    assert table.column_names == ["Amount", "id", "Stage"]
    ids = deals.current_ids()
    assert table.column("id").to_pylist() == ids[::-1][:3]


def test_iter_tables_yields_every_row_once_in_id_order(org: Org, clock: StepClock) -> None:
    leads = org.module("Leads")
    ids = leads.current_ids()
    leads.update(ids[10], {"City": "Zürich"})
    leads.delete(ids[11])
    new_id = leads.insert({"Last_Name": "Tail"})
    chunks = list(leads.iter_tables(["id", "City"], chunk_rows=64))
    assert len(chunks) > 3
    got = [i for c in chunks for i in c.column("id").to_pylist()]
    assert got == leads.current_ids() and got[-1] == new_id and ids[11] not in got
    cities = dict(zip(got, [v for c in chunks for v in c.column("City").to_pylist()], strict=True))
    assert cities[ids[10]] == "Zürich"
    since = Comparison("Modified_Time", ">=", "2026-07-01T13:30:00+05:30")
    later = [i for c in leads.iter_tables(["id"], where=since) for i in c.column("id").to_pylist()]
    assert later == sorted([ids[10], new_id])


def test_iter_tables_reads_the_snapshot_of_the_call(org: Org) -> None:
    leads = org.module("Leads")
    iterator = leads.iter_tables(["id"])
    new_id = leads.insert({"Last_Name": "After"})
    got = [i for c in iterator for i in c.column("id").to_pylist()]
    assert new_id not in got and len(got) == leads.base_size


# ---- paging over a big module ----------------------------------------------------------------


@pytest.fixture(scope="module")
def big_org() -> Org:
    return Org.build(seed=3, records=100_000, clock=lambda: START)


def test_keyset_paging_returns_every_row_once(big_org: Org) -> None:
    leads = big_org.module("Leads")
    seen: list[str] = []
    where: Expr | None = None
    pages = 0
    while True:
        page = leads.select(
            ["id", "Modified_Time"],
            where=where,
            order_by=[("Modified_Time", "asc"), ("id", "asc")],
            limit=2000,
        )
        pages += 1
        ids = page.column("id").to_pylist()
        seen.extend(ids)
        if len(ids) < 2000:
            break
        last_time = format_zoho_datetime(page.column("Modified_Time")[-1].as_py(), timedelta(0))
        where = Or(
            (
                Comparison("Modified_Time", ">", last_time),
                And(
                    (
                        Comparison("Modified_Time", "=", last_time),
                        Comparison("id", ">", ids[-1]),
                    )
                ),
            )
        )
    assert pages == 51
    assert len(seen) == 100_000 == len(set(seen))
    assert seen == sorted(seen)  # base ids grow with Modified_Time


def test_a_late_page_only_generates_nearby_chunks(
    big_org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    leads = big_org.module("Leads")
    generated = []
    original = leads.generator.column

    def counting(name: str, idx: np.ndarray) -> Any:
        generated.append(len(idx))
        return original(name, idx)

    monkeypatch.setattr(leads.generator, "column", counting)
    tail = Comparison("Modified_Time", ">=", "2026-06-20T00:00:00+05:30")
    page = leads.select(
        ["id", "Last_Name"], where=tail, order_by=[("Modified_Time", "asc")], limit=200
    )
    assert 0 < page.num_rows <= 200
    assert sum(generated) <= 4 * CHUNK_ROWS  # a full scan would generate 100,000 rows per column
    first = datetime(2026, 6, 19, 18, 30, tzinfo=timezone.utc)
    assert leads.get(page.column("id")[0].as_py())["Modified_Time"] >= first  # type: ignore[index]
    generated.clear()
    by_id = leads.select(["id"], where=Comparison("id", ">", page.column("id")[0].as_py()), limit=5)
    assert by_id.num_rows == 5 and sum(generated) <= 2 * CHUNK_ROWS


def test_count_uses_the_whole_module(big_org: Org) -> None:
    leads = big_org.module("Leads")
    assert leads.count() == 100_000
    assert leads.count(Comparison("Modified_Time", ">=", "2026-06-20T00:00:00+05:30")) < 2000
