"""COQL: a tokenizer and a recursive-descent parser producing ``CoqlQuery`` (with the filter AST
of ``query.py``), and ``validate`` against a module's fields with Zoho's limits and error codes.

Grammar (keywords case-insensitive)::

    query      := SELECT items FROM name [WHERE cond] [ORDER BY order (, order)*]
                  [LIMIT n [OFFSET m] | LIMIT m , n] [;]
    items      := item (, item)*          item := name | COUNT ( name | * )
    order      := name [ASC | DESC]
    cond       := conj (OR conj)*         conj := atom (AND atom)*
    atom       := ( cond ) | name pred
    pred       := cmp literal | [NOT] BETWEEN literal AND literal | [NOT] IN ( literal, ... )
                | IS [NOT] NULL | [NOT] LIKE string
    literal    := 'string' | number | TRUE | FALSE
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from connector.simulator.orgdef import SimField
from connector.simulator.query import (
    And,
    Comparison,
    Expr,
    Or,
    QueryError,
    category,
    check,
    comparisons,
)

MAX_LIMIT = 2000
MAX_OFFSET_PLUS_LIMIT = 100_000
MAX_COLUMNS = 50
MAX_ORDER_BY = 10
MAX_CRITERIA = 25
MAX_IN_VALUES = 100
DEFAULT_LIMIT = 200

KEYWORDS = frozenset(
    {
        "select",
        "from",
        "where",
        "and",
        "or",
        "order",
        "by",
        "asc",
        "desc",
        "limit",
        "offset",
        "between",
        "not",
        "in",
        "is",
        "null",
        "like",
        "true",
        "false",
    }
)
AGGREGATES = frozenset({"count", "sum", "max", "min", "avg"})

# The operators COQL allows per field category (zoho-api.md §4).
_NULLS = frozenset({"is null", "is not null"})
_ORDERED = frozenset({"=", "!=", ">", ">=", "<", "<=", "between", "not between", "in", "not in"})
COQL_ALLOWED: dict[str, frozenset[str]] = {
    "text": frozenset({"=", "!=", "like", "not like", "in", "not in"}) | _NULLS,
    "multiselect": frozenset({"=", "!=", "like", "not like", "in", "not in"}) | _NULLS,
    "lookup": frozenset({"=", "!=", "in", "not in"}) | _NULLS,
    "number": _ORDERED | _NULLS,
    "date": _ORDERED | _NULLS,
    "datetime": _ORDERED | _NULLS,
    "boolean": frozenset({"="}),
    "unsupported": frozenset(),
}


@dataclass(frozen=True)
class Token:
    """One token: kind is ident, keyword, string, number, op, punct or eof."""

    kind: str
    text: str
    value: Any
    line: int
    column: int


@dataclass(frozen=True)
class CoqlQuery:
    """A parsed COQL select. ``select`` holds column names; an aggregate appears as ``COUNT(id)``
    (``count(*)`` is read as ``COUNT(id)``), listed in ``aggregates`` as (function, column)."""

    select: list[str]
    module: str
    where: Expr | None = None
    order_by: list[tuple[str, str]] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None
    aggregates: list[tuple[str, str]] = field(default_factory=list)

    @property
    def is_count(self) -> bool:
        """A ``select COUNT(id) from M …`` query."""
        return bool(self.aggregates)

    @property
    def effective_limit(self) -> int:
        """LIMIT, or Zoho's default of 200."""
        return DEFAULT_LIMIT if self.limit is None else self.limit

    @property
    def effective_offset(self) -> int:
        """OFFSET, or 0."""
        return self.offset or 0


def _syntax_at(token: Token) -> QueryError:
    return QueryError(
        "SYNTAX_ERROR",
        f"error at line {token.line} column {token.column} near {token.text or 'end of query'}",
        {"line": token.line, "column": token.column, "near": token.text},
    )


def _syntax_clause(clause: str) -> QueryError:
    return QueryError("SYNTAX_ERROR", f"error in {clause} clause", {"clause": clause})


def tokenize(text: str) -> list[Token]:
    """Split a query into tokens; raises SYNTAX_ERROR at the first character that fits none."""
    tokens: list[Token] = []
    i = 0
    line = 1
    line_start = 0
    n = len(text)
    while i < n:
        ch = text[i]
        column = i - line_start + 1
        if ch == "\n":
            i += 1
            line += 1
            line_start = i
            continue
        if ch.isspace():
            i += 1
            continue
        if ch.isalpha() or ch == "_" or ch == "$":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] in "_.$"):
                j += 1
            word = text[i:j]
            lower = word.lower()
            kind = "keyword" if lower in KEYWORDS else "ident"
            tokens.append(Token(kind, word, lower if kind == "keyword" else word, line, column))
            i = j
            continue
        if ch.isdigit() or (ch in "-+" and i + 1 < n and text[i + 1].isdigit()):
            j = i + 1
            while j < n and text[j].isdigit():
                j += 1
            if j < n and text[j] == "." and j + 1 < n and text[j + 1].isdigit():
                j += 1
                while j < n and text[j].isdigit():
                    j += 1
            if j < n and (text[j].isalpha() or text[j] == "_"):
                raise QueryError(
                    "SYNTAX_ERROR",
                    f"error at line {line} column {column}",
                    {"line": line, "column": column, "near": text[i : j + 1]},
                )
            tokens.append(Token("number", text[i:j], text[i:j], line, column))
            i = j
            continue
        if ch == "'":
            j = i + 1
            chars: list[str] = []
            while True:
                if j >= n:
                    raise QueryError(
                        "SYNTAX_ERROR",
                        "unterminated string",
                        {"line": line, "column": column, "near": text[i : i + 20]},
                    )
                c = text[j]
                if c == "\\" and j + 1 < n and text[j + 1] in "'\\":
                    chars.append(text[j + 1])
                    j += 2
                elif c == "'" and j + 1 < n and text[j + 1] == "'":
                    chars.append("'")
                    j += 2
                elif c == "'":
                    j += 1
                    break
                else:
                    if c == "\n":
                        line += 1
                        line_start = j + 1
                    chars.append(c)
                    j += 1
            tokens.append(Token("string", text[i:j], "".join(chars), line, column))
            i = j
            continue
        two = text[i : i + 2]
        if two in ("!=", ">=", "<=", "<>"):
            if two == "<>":
                raise QueryError(
                    "SYNTAX_ERROR",
                    f"error at line {line} column {column}",
                    {"line": line, "column": column, "near": two},
                )
            tokens.append(Token("op", two, two, line, column))
            i += 2
            continue
        if ch in "=<>":
            tokens.append(Token("op", ch, ch, line, column))
            i += 1
            continue
        if ch in "(),*;":
            tokens.append(Token("punct", ch, ch, line, column))
            i += 1
            continue
        raise QueryError(
            "SYNTAX_ERROR",
            f"error at line {line} column {column}",
            {"line": line, "column": column, "near": ch},
        )
    tokens.append(Token("eof", "", None, line, n - line_start + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.pos = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        token = self.tokens[self.pos]
        if token.kind != "eof":
            self.pos += 1
        return token

    def at_keyword(self, *words: str) -> bool:
        return self.tok.kind == "keyword" and self.tok.value in words

    def at_punct(self, ch: str) -> bool:
        return self.tok.kind == "punct" and self.tok.value == ch

    def expect_keyword(self, word: str, clause: str) -> None:
        if not self.at_keyword(word):
            if self.tok.kind == "eof":
                raise _syntax_clause(clause)
            raise _syntax_at(self.tok)
        self.advance()

    def expect_punct(self, ch: str, clause: str = "select") -> None:
        if not self.at_punct(ch):
            if self.tok.kind == "eof":
                raise _syntax_clause(clause)
            raise _syntax_at(self.tok)
        self.advance()

    def name(self, clause: str) -> str:
        if self.tok.kind != "ident":
            if self.tok.kind == "eof":
                raise _syntax_clause(clause)
            raise _syntax_at(self.tok)
        return str(self.advance().value)

    # ---- clauses ---------------------------------------------------------------------------
    def query(self) -> CoqlQuery:
        if not self.at_keyword("select"):
            raise _syntax_clause("select")
        self.advance()
        select, aggregates = self.select_items()
        self.expect_keyword("from", "from")
        module = self.name("from")
        where = None
        order_by: list[tuple[str, str]] = []
        limit: int | None = None
        offset: int | None = None
        if self.at_keyword("where"):
            self.advance()
            if self.tok.kind == "eof":
                raise _syntax_clause("where")
            where = self.condition()
        if self.at_keyword("order"):
            self.advance()
            self.expect_keyword("by", "order by")
            order_by.append(self.order_item())
            while self.at_punct(","):
                self.advance()
                order_by.append(self.order_item())
        if self.at_keyword("limit"):
            self.advance()
            first = self.integer("limit")
            if self.at_punct(","):
                # MySQL style "limit offset, count".
                self.advance()
                offset, limit = first, self.integer("limit")
            else:
                limit = first
                if self.at_keyword("offset"):
                    self.advance()
                    offset = self.integer("offset")
        if self.at_punct(";"):
            self.advance()
        if self.tok.kind != "eof":
            raise _syntax_at(self.tok)
        return CoqlQuery(
            select=select,
            module=module,
            where=where,
            order_by=order_by,
            limit=limit,
            offset=offset,
            aggregates=aggregates,
        )

    def select_items(self) -> tuple[list[str], list[tuple[str, str]]]:
        columns: list[str] = []
        aggregates: list[tuple[str, str]] = []
        while True:
            token = self.tok
            if (
                token.kind == "ident"
                and token.text.lower() in AGGREGATES
                and (
                    self.tokens[self.pos + 1].kind == "punct"
                    and self.tokens[self.pos + 1].value == "("
                )
            ):
                func = token.text.upper()
                self.advance()
                self.advance()
                if self.at_punct("*"):
                    self.advance()
                    column = "id"
                else:
                    column = self.name("select")
                self.expect_punct(")")
                aggregates.append((func, column))
                columns.append(f"{func}({column})")
            elif token.kind == "ident":
                columns.append(str(self.advance().value))
            else:
                if token.kind == "eof" or self.at_keyword("from"):
                    raise _syntax_clause("select")
                raise _syntax_at(token)
            if not self.at_punct(","):
                return columns, aggregates
            self.advance()

    def order_item(self) -> tuple[str, str]:
        column = self.name("order by")
        direction = "asc"
        if self.at_keyword("asc", "desc"):
            direction = str(self.advance().value)
        return column, direction

    def integer(self, clause: str) -> int:
        token = self.tok
        if token.kind != "number" or not token.text.isdigit():
            if token.kind == "eof":
                raise _syntax_clause(clause)
            raise _syntax_at(token)
        self.advance()
        return int(token.text)

    # ---- conditions ------------------------------------------------------------------------
    # Zoho itself demands full brackets when criteria are mixed, e.g. ((A and B) or C); this
    # parser is lenient and applies the usual precedence (and binds tighter than or).
    def condition(self) -> Expr:
        return self.chain("or", self.conjunction, Or)

    def conjunction(self) -> Expr:
        return self.chain("and", self.atom, And)

    def chain(
        self, keyword: str, item: Callable[[], Expr], combine: Callable[[tuple[Expr, ...]], Expr]
    ) -> Expr:
        """``item (keyword item)*``: the one item, or ``combine`` of them all."""
        items = [item()]
        while self.at_keyword(keyword):
            self.advance()
            items.append(item())
        return items[0] if len(items) == 1 else combine(tuple(items))

    def atom(self) -> Expr:
        if self.at_punct("("):
            self.advance()
            inner = self.condition()
            self.expect_punct(")", "where")
            return inner
        column = self.name("where")
        return self.predicate(column)

    def predicate(self, column: str) -> Expr:
        token = self.tok
        if token.kind == "op":
            self.advance()
            return Comparison(column, str(token.value), self.literal())
        negate = False
        if self.at_keyword("not"):
            self.advance()
            negate = True
            if not self.at_keyword("between", "in", "like"):
                raise _syntax_at(self.tok)
        prefix = "not " if negate else ""
        if self.at_keyword("between"):
            self.advance()
            low = self.literal()
            self.expect_keyword("and", "where")
            high = self.literal()
            return Comparison(column, prefix + "between", (low, high))
        if self.at_keyword("in"):
            self.advance()
            self.expect_punct("(", "where")
            values = [self.literal()]
            while self.at_punct(","):
                self.advance()
                values.append(self.literal())
            self.expect_punct(")", "where")
            return Comparison(column, prefix + "in", tuple(values))
        if self.at_keyword("like"):
            self.advance()
            if self.tok.kind != "string":
                raise _syntax_at(self.tok)
            return Comparison(column, prefix + "like", str(self.advance().value))
        if self.at_keyword("is"):
            self.advance()
            op = "is null"
            if self.at_keyword("not"):
                self.advance()
                op = "is not null"
            self.expect_keyword("null", "where")
            return Comparison(column, op, None)
        if token.kind == "eof":
            raise _syntax_clause("where")
        raise _syntax_at(token)

    def literal(self) -> str:
        token = self.tok
        if token.kind in ("string", "number"):
            self.advance()
            return str(token.value)
        if token.kind == "keyword" and token.value in ("true", "false"):
            self.advance()
            return str(token.value)
        if token.kind == "eof":
            raise _syntax_clause("where")
        raise _syntax_at(token)


def parse_coql(text: str) -> CoqlQuery:
    """Parse a COQL select; raises QueryError(SYNTAX_ERROR or LIMIT_EXCEEDED)."""
    if not isinstance(text, str) or not text.strip():
        raise _syntax_clause("select")
    query = _Parser(text).query()
    _check_limits(query)
    return query


def _check_limits(query: CoqlQuery) -> None:
    limit = query.effective_limit
    offset = query.effective_offset
    if limit > MAX_LIMIT:
        raise QueryError(
            "LIMIT_EXCEEDED",
            f"limit exceeded: at most {MAX_LIMIT} rows per query",
            {"limit": MAX_LIMIT, "reason": f"limit should be less than or equal to {MAX_LIMIT}"},
        )
    if offset + limit > MAX_OFFSET_PLUS_LIMIT:
        raise QueryError(
            "LIMIT_EXCEEDED",
            "limit exceeded",
            {
                "reason": f"the sum of offset and limit should not exceed {MAX_OFFSET_PLUS_LIMIT}",
                "limit": MAX_OFFSET_PLUS_LIMIT,
            },
        )
    if len(query.select) > MAX_COLUMNS:
        raise QueryError(
            "LIMIT_EXCEEDED",
            f"at most {MAX_COLUMNS} columns can be selected",
            {"reason": f"select columns should not exceed {MAX_COLUMNS}", "limit": MAX_COLUMNS},
        )
    if len(query.order_by) > MAX_ORDER_BY:
        raise QueryError(
            "LIMIT_EXCEEDED",
            f"at most {MAX_ORDER_BY} order by columns",
            {"reason": f"order by columns should not exceed {MAX_ORDER_BY}"},
        )
    seen: set[str] = set()
    for column, _ in query.order_by:
        key = column.lower()
        if key in seen:
            raise QueryError(
                "DUPLICATE_DATA",
                "duplicate data in order by",
                {"clause": "order by", "field": column},
            )
        seen.add(key)
    if query.where is not None:
        leaves = list(comparisons(query.where))
        if len(leaves) > MAX_CRITERIA:
            raise QueryError(
                "LIMIT_EXCEEDED",
                f"at most {MAX_CRITERIA} criteria in where",
                {"reason": f"where criteria should not exceed {MAX_CRITERIA}"},
            )
        for leaf in leaves:
            if leaf.op in ("in", "not in") and len(leaf.value) > MAX_IN_VALUES:
                raise QueryError(
                    "LIMIT_EXCEEDED",
                    f"at most {MAX_IN_VALUES} values in in/not in",
                    {"reason": f"in values should not exceed {MAX_IN_VALUES}"},
                )


def _invalid_column(name: str, reason: str) -> QueryError:
    return QueryError("INVALID_QUERY", f"{reason}: {name}", {"column_name": name, "reason": reason})


def _resolve(fields: Mapping[str, SimField], name: str) -> SimField:
    if "." in name or "->" in name:
        raise _invalid_column(name, "relation columns are not supported")
    f = fields.get(name) or {k.lower(): v for k, v in fields.items()}.get(name.lower())
    if f is None:
        raise _invalid_column(name, "column given seems to be invalid")
    if not f.list_readable or f.data_type in ("imageupload",):
        raise _invalid_column(f.api_name, f"{f.data_type} fields are not supported in COQL")
    return f


def _canonical_names(expr: Expr, fields: Mapping[str, SimField]) -> Expr:
    if isinstance(expr, Comparison):
        return replace(expr, field=_resolve(fields, expr.field).api_name)
    if isinstance(expr, And):
        return And(tuple(_canonical_names(i, fields) for i in expr.items))
    if isinstance(expr, Or):
        return Or(tuple(_canonical_names(i, fields) for i in expr.items))
    return expr


def validate(
    query: CoqlQuery, module_fields: Mapping[str, SimField] | Sequence[SimField]
) -> CoqlQuery:
    """Check the query against the module's fields (names are matched case-insensitively) and
    return it with canonical field names. Raises QueryError(INVALID_QUERY) for unknown or
    unsupported columns, operators that do not fit a field's type and bad literals."""
    fields = (
        dict(module_fields)
        if isinstance(module_fields, Mapping)
        else {f.api_name: f for f in module_fields}
    )
    plain = [c for c in query.select if c not in _agg_names(query)]
    if query.aggregates and plain:
        raise QueryError(
            "INVALID_QUERY",
            "aggregate and non-aggregate columns need a group by clause",
            {"reason": "group by is not supported by this simulator", "column_name": plain[0]},
        )
    select: list[str] = []
    aggregates: list[tuple[str, str]] = []
    for func, column in query.aggregates:
        if func != "COUNT":
            raise QueryError(
                "INVALID_QUERY",
                f"{func} is not supported",
                {"column_name": column, "reason": "only COUNT is supported by this simulator"},
            )
        name = _resolve(fields, column).api_name
        aggregates.append((func, name))
    for column in query.select:
        if column in _agg_names(query):
            func, inner = column[:-1].split("(", 1)
            select.append(f"{func}({_resolve(fields, inner).api_name})")
        else:
            select.append(_resolve(fields, column).api_name)
    order_by: list[tuple[str, str]] = []
    for column, direction in query.order_by:
        f = _resolve(fields, column)
        if category(f) == "multiselect":
            raise _invalid_column(f.api_name, "multi-select fields cannot be sorted")
        order_by.append((f.api_name, direction))
    where = None
    if query.where is not None:
        where = _canonical_names(query.where, fields)
        check(where, fields, code="INVALID_QUERY", allowed=COQL_ALLOWED)
    return replace(query, select=select, order_by=order_by, where=where, aggregates=aggregates)


def _agg_names(query: CoqlQuery) -> set[str]:
    return {f"{func}({column})" for func, column in query.aggregates}
