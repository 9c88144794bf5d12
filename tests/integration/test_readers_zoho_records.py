"""Records a default call does not return, and values as Zoho sends them, through every reader.

The simulator models, by default: converted leads left out of Records (unless ``converted=both``),
COQL and Bulk Read (unless the query names ``Converted__s``); rich text cut at 500 characters in
list answers and Bulk CSV; a field outside every layout (listed only with ``type=all``); rollup
summaries; ALARM/RRULE fields; ``$se_module`` in Records answers; ``5.0`` integers and amounts with
extra zeros in Bulk CSV. Each reader must still give the simulator's data exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from support.source import TINY, source_table
from support.source import assert_same_table as assert_same

from connector.config import load_settings
from connector.lake.schema import SE_MODULE, ModuleSchema, module_schema
from connector.readers import make_reader
from connector.simulator import Simulator, render
from connector.simulator.query import Comparison
from connector.zoho.http import ZohoClient
from connector.zoho.metadata import ModuleMeta, list_fields

READERS = ("bulk", "coql", "records")


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(seed=5, records=600, bulk_page_size=400, bulk_polls=2) as running:
        yield running


def client_for(sim: Simulator) -> ZohoClient:
    settings = load_settings(sim.connection_string(), environ={}).settings
    return ZohoClient(settings.model_copy(update={"tuning": TINY}), sleep=lambda _: None)


def schema_of(client: ZohoClient, module: str) -> ModuleSchema:
    return module_schema(module, list_fields(client, module))


def read_table(name: str, client: ZohoClient, schema: ModuleSchema) -> pa.Table:
    reader = make_reader(name, client, TINY, sleep=lambda _: None)
    module = ModuleMeta(api_name=schema.module, module_name=schema.module)
    batches = list(reader.read(module, schema, None))
    assert all(b.schema == schema.arrow for b in batches)
    return pa.Table.from_batches(batches, schema=schema.arrow).sort_by("id")


def calls_to(sim: Simulator, since: int, needle: str) -> list[Any]:
    return [r for r in sim.requests[since:] if needle in r.path]


def test_converted_leads_are_hidden_by_default_and_every_reader_reads_them(sim: Simulator) -> None:
    client = client_for(sim)
    leads = sim.org.module("Leads")
    converted = leads.select(["id"], where=Comparison("Converted__s", "=", "true"))
    assert converted.num_rows > 0
    default = client.get_json("Leads", params={"fields": "Last_Name", "per_page": 200})
    every = client.get_json(
        "Leads", params={"fields": "Last_Name", "per_page": 200, "converted": "both"}
    )
    assert default is not None and every is not None
    hidden = set(converted.column("id").to_pylist())
    assert not hidden & {r["id"] for r in default["data"]}
    assert hidden & {r["id"] for r in every["data"]}
    coql = client.post_json("coql", {"select_query": "select COUNT(id) from Leads"})
    assert coql is not None
    assert list(coql["data"][0].values()) == [leads.count() - converted.num_rows]

    schema = schema_of(client, "Leads")
    want = source_table(sim, schema)
    assert want.num_rows == leads.count()
    for name in READERS:
        got = read_table(name, client, schema)
        assert_same(got, want, name)
        assert hidden <= set(got.column("id").to_pylist())


def test_rich_text_is_cut_in_list_answers_and_arrives_whole_through_each_reader(
    sim: Simulator,
) -> None:
    client = client_for(sim)
    schema = schema_of(client, "Accounts")
    assert schema.rich_text == ["Account_Plan"]
    want = source_table(sim, schema)
    lengths = pc.utf8_length(want.column("Account_Plan"))
    long_rows = pc.sum(pc.greater(lengths, 500)).as_py()
    assert long_rows >= 10
    page = client.get_json(
        "Accounts", params={"fields": "Account_Plan", "per_page": 200, "sort_by": "id"}
    )
    assert page is not None
    assert max(len(r["Account_Plan"] or "") for r in page["data"]) == 500
    for name in READERS:
        before, credits = len(sim.requests), client.meter.total
        got = read_table(name, client, schema)
        assert_same(got, want, name)
        fetches = calls_to(sim, before, "/actions/fetch_full_data")
        # Every long value read whole (up to 200 ids a call, a credit a call), no short one.
        asked = [i for r in fetches for i in r.query["ids"].split(",")]
        long_ids = set(want.filter(pc.greater_equal(lengths, 497)).column("id").to_pylist())
        assert set(asked) == long_ids and len(asked) == len(long_ids)
        assert all(r.credits == 1 and r.query["fields"] == "Account_Plan" for r in fetches)
        if name != "bulk":  # one page: the fewest calls
            assert len(fetches) == -(-len(long_ids) // 200)
        assert sum(r.credits for r in sim.requests[before:]) == client.meter.total - credits


def test_a_record_changed_before_its_whole_rich_text_is_read_is_never_half_merged(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_for(sim)
    schema = schema_of(client, "Accounts")
    store = sim.org.module("Accounts")
    table = store.select(["id", "Account_Plan"])
    long_id = next(row["id"] for row in table.to_pylist() if len(row["Account_Plan"] or "") > 500)
    original = sim.app.endpoints["fetch_full_data"]
    changed = []

    def change_then_answer(*args: Any, **kwargs: Any) -> Any:
        if not changed:
            changed.append(True)
            store.update(long_id, {"Account_Plan": "<p>" + "rewritten " * 80 + "</p>"})
        return original(*args, **kwargs)

    monkeypatch.setitem(sim.app.endpoints, "fetch_full_data", change_then_answer)
    got = read_table("coql", client, schema)
    assert changed
    # The new version was read again (later in the read, past its new Modified_Time).
    assert_same(got, source_table(sim, schema))


def test_a_field_outside_every_layout_is_listed_with_type_all_and_read(sim: Simulator) -> None:
    client = client_for(sim)
    default = client.get_json("settings/fields", params={"module": "Contacts"})
    assert default is not None
    assert "Legacy_Region" not in {f["api_name"] for f in default["fields"]}
    schema = schema_of(client, "Contacts")
    assert "Legacy_Region" in schema.names
    want = source_table(sim, schema)
    assert want.column("Legacy_Region").null_count < want.num_rows
    for name in READERS:
        assert_same(read_table(name, client, schema), want, name)


def test_rollups_and_json_valued_fields_have_one_type_in_every_reader(sim: Simulator) -> None:
    client = client_for(sim)
    accounts = schema_of(client, "Accounts")
    assert accounts.arrow.field("Won_Amount").type == pa.decimal128(38, 2)
    assert accounts.arrow.field("Open_Deals").type == pa.int64()
    assert accounts.arrow.field("Last_Deal_Closed_At").type == pa.timestamp("us", tz="UTC")
    tasks = schema_of(client, "Tasks")
    assert not tasks.warnings
    assert tasks.arrow.field("Remind_At").type == pa.string()
    want = source_table(sim, tasks)
    alarms = [v for v in want.column("Remind_At").to_pylist() if v]
    assert alarms and all(v.startswith('{"ALARM":"FREQ=') for v in alarms)
    tables = {name: read_table(name, client, tasks) for name in READERS}
    for name, table in tables.items():
        assert_same(table, want, name)
    assert tables["bulk"].equals(tables["coql"]) and tables["coql"].equals(tables["records"])


@pytest.mark.parametrize(("module", "lookup", "target"), [("Tasks", "What_Id", "Deals")])
def test_se_module_is_kept_next_to_the_polymorphic_lookup(
    sim: Simulator, module: str, lookup: str, target: str
) -> None:
    client = client_for(sim)
    schema = schema_of(client, module)
    names = schema.names
    assert names[names.index(lookup) + 1] == SE_MODULE
    want = source_table(sim, schema)
    linked = pc.is_valid(want.column(lookup))
    assert want.column(SE_MODULE).filter(linked).unique().to_pylist() == [target]
    for name in READERS:
        assert_same(read_table(name, client, schema), want, name)


def test_bulk_csv_odd_numbers_read_exactly(sim: Simulator) -> None:
    client = client_for(sim)
    schema = schema_of(client, "Deals")
    store = sim.org.module("Deals")
    csv_text = render.csv_bytes(
        store.select(["id", "Amount", "Probability"]), store.meta.field_map
    ).decode()
    amounts = [line.split(",")[1].strip('"') for line in csv_text.splitlines()[1:]]
    assert any(len(a.split(".")[-1]) > 2 for a in amounts if "." in a)  # "12.5000"
    integers = schema_of(client, "Accounts")
    accounts = sim.org.module("Accounts")
    employees = render.csv_bytes(accounts.select(["id", "Employees"]), accounts.meta.field_map)
    assert b'0.0"' in employees or b'5.0"' in employees  # "272460.0" for 272460
    assert_same(read_table("bulk", client, schema), source_table(sim, schema))
    assert_same(read_table("bulk", client, integers), source_table(sim, integers))
