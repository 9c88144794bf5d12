"""COQL tokenizer, parser and validation: ASTs for valid queries, Zoho codes for invalid ones."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.simulator.coql import KEYWORDS, CoqlQuery, parse_coql, tokenize, validate
from connector.simulator.query import And, Comparison, Or, QueryError
from connector.simulator.store import Org

T = "2026-01-01T00:00:00+05:30"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("select id from Leads", CoqlQuery(select=["id"], module="Leads")),
        (
            "SELECT Last_Name, Owner FROM Leads WHERE Modified_Time >= '" + T + "' ORDER BY "
            "Modified_Time ASC, id LIMIT 2000",
            CoqlQuery(
                select=["Last_Name", "Owner"],
                module="Leads",
                where=Comparison("Modified_Time", ">=", T),
                order_by=[("Modified_Time", "asc"), ("id", "asc")],
                limit=2000,
            ),
        ),
        (
            "select id from Leads where (Modified_Time = '" + T + "' and id > '5') or "
            "Modified_Time > '" + T + "' limit 10 offset 20",
            CoqlQuery(
                select=["id"],
                module="Leads",
                where=Or(
                    (
                        And(
                            (
                                Comparison("Modified_Time", "=", T),
                                Comparison("id", ">", "5"),
                            )
                        ),
                        Comparison("Modified_Time", ">", T),
                    )
                ),
                limit=10,
                offset=20,
            ),
        ),
        (
            "select id from Deals where a = 1 and b = 2 or c = 3",
            CoqlQuery(
                select=["id"],
                module="Deals",
                where=Or(
                    (
                        And((Comparison("a", "=", "1"), Comparison("b", "=", "2"))),
                        Comparison("c", "=", "3"),
                    )
                ),
            ),
        ),
        (
            "select id from Deals where Amount between 10 and 20.5 and Stage not in "
            "('Closed Won', 'It''s') and Deal_Name not like '%x\\'y%' and Email is not null",
            CoqlQuery(
                select=["id"],
                module="Deals",
                where=And(
                    (
                        Comparison("Amount", "between", ("10", "20.5")),
                        Comparison("Stage", "not in", ("Closed Won", "It's")),
                        Comparison("Deal_Name", "not like", "%x'y%"),
                        Comparison("Email", "is not null"),
                    )
                ),
            ),
        ),
        (
            "select id from Deals where Amount not between -5 and 5 and Flag = true "
            "and Name in ('a') and Note is null limit 5, 10;",
            CoqlQuery(
                select=["id"],
                module="Deals",
                where=And(
                    (
                        Comparison("Amount", "not between", ("-5", "5")),
                        Comparison("Flag", "=", "true"),
                        Comparison("Name", "in", ("a",)),
                        Comparison("Note", "is null"),
                    )
                ),
                limit=10,
                offset=5,
            ),
        ),
        (
            "select COUNT(id) from Leads where Last_Name like 'S%'",
            CoqlQuery(
                select=["COUNT(id)"],
                module="Leads",
                where=Comparison("Last_Name", "like", "S%"),
                aggregates=[("COUNT", "id")],
            ),
        ),
        (
            "select count(*) from Leads",
            CoqlQuery(select=["COUNT(id)"], module="Leads", aggregates=[("COUNT", "id")]),
        ),
        (
            "select Owner.last_name, Account_Name.Phone from Contacts",
            CoqlQuery(select=["Owner.last_name", "Account_Name.Phone"], module="Contacts"),
        ),
    ],
)
def test_valid_queries(text: str, expected: CoqlQuery) -> None:
    assert parse_coql(text) == expected


def test_defaults_and_keywords_as_text() -> None:
    query = parse_coql("select id from Leads where Last_Name = 'select from where'")
    assert query.effective_limit == 200 and query.effective_offset == 0
    assert query.where == Comparison("Last_Name", "=", "select from where")


@pytest.mark.parametrize(
    ("text", "code", "details"),
    [
        ("", "SYNTAX_ERROR", {"clause": "select"}),
        ("delete from Leads", "SYNTAX_ERROR", {"clause": "select"}),
        ("select from Leads", "SYNTAX_ERROR", {"clause": "select"}),
        ("select id", "SYNTAX_ERROR", {"clause": "from"}),
        ("select id from", "SYNTAX_ERROR", {"clause": "from"}),
        ("select id from Leads where", "SYNTAX_ERROR", {"clause": "where"}),
        ("select id from Leads where id >", "SYNTAX_ERROR", {"clause": "where"}),
        ("select id from Leads limit", "SYNTAX_ERROR", {"clause": "limit"}),
        ("select id from Leads where id = 1 and", "SYNTAX_ERROR", {"clause": "where"}),
        (
            "select id from Leads\nwhere id == 1",
            "SYNTAX_ERROR",
            {"line": 2, "column": 11, "near": "="},
        ),
        (
            "select id from Leads where id <> 1",
            "SYNTAX_ERROR",
            {"line": 1, "column": 31, "near": "<>"},
        ),
        ("select id from Leads where (id = 1", "SYNTAX_ERROR", {"clause": "where"}),
        ("select id from Leads where name = 'open", "SYNTAX_ERROR", None),
        ("select id from Leads extra", "SYNTAX_ERROR", {"line": 1, "column": 22, "near": "extra"}),
        ("select id from Leads where id is 1", "SYNTAX_ERROR", None),
        ("select id from Leads limit 2001", "LIMIT_EXCEEDED", None),
        ("select id from Leads limit 2000 offset 98001", "LIMIT_EXCEEDED", None),
        ("select id from Leads limit 98001, 2000", "LIMIT_EXCEEDED", None),
        ("select id from Leads offset 5", "SYNTAX_ERROR", None),
        ("select id from Leads order by id, ID desc", "DUPLICATE_DATA", None),
        ("select " + ", ".join(f"c{i}" for i in range(51)) + " from Leads", "LIMIT_EXCEEDED", None),
        (
            "select id from Leads where id in (" + ",".join(str(i) for i in range(101)) + ")",
            "LIMIT_EXCEEDED",
            None,
        ),
        (
            "select id from Leads where " + " and ".join(f"id = {i}" for i in range(26)),
            "LIMIT_EXCEEDED",
            None,
        ),
    ],
)
def test_invalid_queries(text: str, code: str, details: dict[str, object] | None) -> None:
    with pytest.raises(QueryError) as err:
        parse_coql(text)
    assert err.value.code == code
    if details is not None:
        assert err.value.details == details
    assert err.value.to_body()["status"] == "error"


def test_offset_plus_limit_at_the_cap_is_allowed() -> None:
    assert parse_coql("select id from Leads limit 2000 offset 98000").offset == 98000


def test_tokens_carry_positions() -> None:
    tokens = tokenize("select id\n  from Leads")
    assert [(t.kind, t.line, t.column) for t in tokens[:4]] == [
        ("keyword", 1, 1),
        ("ident", 1, 8),
        ("keyword", 2, 3),
        ("ident", 2, 8),
    ]
    assert tokens[-1].kind == "eof"


@pytest.fixture(scope="module")
def fields():  # type: ignore[no-untyped-def]
    return Org.build(records=10).module("Deals").meta.field_map


def test_validate_canonicalises_names(fields) -> None:  # type: ignore[no-untyped-def]
    query = validate(
        parse_coql("select DEAL_NAME, stage from deals where amount > 10 order by STAGE desc"),
        fields,
    )
    assert query.select == ["Deal_Name", "Stage"]
    assert query.where == Comparison("Amount", ">", "10")
    assert query.order_by == [("Stage", "desc")]
    counted = validate(parse_coql("select count(*) from Deals"), fields)
    assert counted.is_count and counted.select == ["COUNT(id)"]


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("select Nope from Deals", "Nope"),
        ("select Line_Items from Deals", "Line_Items"),
        ("select Related_Vendors from Deals", "Related_Vendors"),
        ("select Contract_File from Deals", "Contract_File"),
        ("select id from Deals where Amount like '1%'", "Amount"),
        ("select id from Deals where Deal_Name > 'a'", "Deal_Name"),
        ("select id from Deals where Amount = 'ten'", "Amount"),
        ("select id from Deals where Modified_Time > '2026-01-01'", "Modified_Time"),
        ("select id from Deals where Modified_Time > '2026-01-01T00:00:00'", "Modified_Time"),
        ("select id from Deals where Closing_Date = '01/02/2026'", "Closing_Date"),
        ("select id from Deals where Account_Name like '%x%'", "Account_Name"),
        ("select id from Deals where Account_Name = 'Zylker'", "Account_Name"),
        ("select id from Deals order by Nope", "Nope"),
        ("select id, count(id) from Deals", "id"),
        ("select sum(Amount) from Deals", "Amount"),
        ("select Owner.email from Deals", "Owner.email"),
    ],
)
def test_validation_errors(fields, text: str, column: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(QueryError) as err:
        validate(parse_coql(text), fields)
    assert err.value.code == "INVALID_QUERY"
    assert err.value.details["column_name"] == column


def test_boolean_only_takes_equals() -> None:
    validate(parse_coql("select id from Leads where Email_Opt_Out = true"), _LEADS_FIELDS)
    with pytest.raises(QueryError) as err:
        validate(parse_coql("select id from Leads where Email_Opt_Out > true"), _LEADS_FIELDS)
    assert err.value.code == "INVALID_QUERY"


_LEADS_FIELDS = Org.build(records=1).module("Leads").meta.field_map
_TOKENS = st.sampled_from(
    [
        *sorted(KEYWORDS),
        "count",
        "(",
        ")",
        ",",
        "*",
        ";",
        "=",
        "!=",
        ">",
        ">=",
        "<",
        "<=",
        "<>",
        "id",
        "Leads",
        "Last_Name",
        "'x'",
        "'it''s'",
        "'",
        "12",
        "-3",
        "1.5",
        "2001",
        "\n",
        "#",
        ".",
        "\\",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(_TOKENS, max_size=25).map(" ".join)))
def test_fuzz_only_query_errors(text: str) -> None:
    try:
        query = parse_coql(text)
    except QueryError as exc:
        assert exc.code in {"SYNTAX_ERROR", "LIMIT_EXCEEDED", "DUPLICATE_DATA"}
        return
    assert isinstance(query, CoqlQuery) and query.module
    try:
        validate(query, _LEADS_FIELDS)
    except QueryError as exc:
        assert exc.code == "INVALID_QUERY"


def test_parsed_query_runs_on_the_store() -> None:
    org = Org.build(records=200)
    leads = org.module("Leads")
    query = validate(
        parse_coql(
            "select Last_Name, Lead_Source from Leads where Lead_Source in ('Chat', 'Partner') "
            "and No_of_Employees >= 1000 order by Last_Name desc limit 5 offset 1"
        ),
        leads.meta.field_map,
    )
    table = leads.select(
        query.select,
        where=query.where,
        order_by=query.order_by,
        offset=query.effective_offset,
        limit=query.effective_limit,
    )
    assert 0 < table.num_rows <= 5
    assert set(table.column("Lead_Source").to_pylist()) <= {"Chat", "Partner"}
    names = table.column("Last_Name").to_pylist()
    assert names == sorted(names, reverse=True)
