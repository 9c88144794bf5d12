"""Which reader serves each module, and what it will cost in API credits.

Zoho bills every call against a daily budget, so the planner prices each way of reading a module
with Zoho's rules and picks the cheapest one that reads everything:

* ``APIType=REST``: COQL when ``UseCOQL=true``, else the Records API.
* ``APIType=Bulk``, full load: Bulk Read when the module supports it; otherwise COQL (when
  ``UseCOQL`` is on or the COQL scope is granted or not known to be missing), else Records. The
  fallback and its reason go into the run manifest.
* ``APIType=Bulk``, incremental: a Bulk job costs at least 50 credits, while a COQL page of up to
  200 rows costs 1. So the run first *probes* with COQL (the first page, LIMIT 200, 1 credit). When
  that page holds every change, the probe is the read. Otherwise one COQL count (1 credit) prices
  both ways and the cheaper one wins.

Estimates (``zoho-crm plan``) use the same formulas, with rows from a COQL count when COQL may be
used (1 credit per module), or "unknown" otherwise.

Credit formulas, from Zoho's prices and limits in :mod:`connector.zoho.limits` (metadata 1; Bulk
create 50, status poll 1, download 1; COQL by LIMIT: ≤200 → 1, ≤1000 → 2, ≤2000 → 3; record list
page 1; deleted-records page 2):

* Bulk: ``ceil(rows / 200,000)`` jobs per field group of ≤200 fields, each 50 + polls + 1 download.
* COQL: 1 for the first page (LIMIT 200), then 3 per 2,000 rows, per group of ≤50 columns.
* Records: ``ceil(rows / 200)`` pages per group of ≤50 fields.
* Deleted records: 2 per 200 tombstones, at least 2 on every incremental run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from connector.logging_setup import counted
from connector.readers.base import BULK, COQL, RECORDS
from connector.zoho.limits import (
    BULK_CREATE_CREDITS,
    BULK_DOWNLOAD_CREDITS,
    BULK_FIELDS_PER_JOB,
    BULK_ROWS_PER_JOB,
    BULK_STATUS_CREDITS,
    COQL_COLUMNS_PER_CALL,
    COQL_FIRST_LIMIT,
    COQL_MAX_LIMIT,
    DELETED_PAGE_CREDITS,
    DELETED_PER_PAGE,
    METADATA_CREDITS,
    RECORDS_FIELDS_PER_CALL,
    RECORDS_PAGE_CREDITS,
    RECORDS_PER_PAGE,
    coql_limit_credits,
)
from connector.zoho.metadata import ModuleMeta
from connector.zoho.scopes import BULK_READ

# An estimate, not a rule: a job is usually COMPLETED after two or three status polls.
BULK_POLLS_PER_JOB = 3


def group_count(reader: str, n_columns: int) -> int:
    """How many field groups ``reader`` needs for a schema of ``n_columns`` (``id`` included).

    Bulk exports ``id`` in every job and takes up to 200 other fields; COQL and Records take up
    to 50 columns a call, two of which are ``id`` and ``Modified_Time`` (needed to merge groups).
    """
    others = max(0, n_columns - 1)
    if reader == BULK:
        if others <= BULK_FIELDS_PER_JOB:
            return 1
        # Every further job repeats Modified_Time so the join can check consistency.
        return math.ceil((others - 1) / (BULK_FIELDS_PER_JOB - 1))
    per_call = COQL_COLUMNS_PER_CALL if reader == COQL else RECORDS_FIELDS_PER_CALL
    rest = max(0, n_columns - 2)
    return max(1, math.ceil(rest / (per_call - 2)))


def bulk_credits(rows: int, groups: int = 1, polls: int = BULK_POLLS_PER_JOB) -> int:
    """Credits to read ``rows`` with Bulk Read: one job per 200,000 rows and field group."""
    jobs = max(1, math.ceil(rows / BULK_ROWS_PER_JOB))
    per_job = BULK_CREATE_CREDITS + polls * BULK_STATUS_CREDITS + BULK_DOWNLOAD_CREDITS
    return jobs * groups * per_job


def coql_read_credits(rows: int, groups: int = 1, *, full: bool = False) -> int:
    """Credits to read ``rows`` with COQL.

    Incremental reads start at LIMIT 200 (1 credit) and go on at LIMIT 2,000 (3 credits); a full
    load starts at LIMIT 2,000, the cheapest rate per row.
    """
    first = coql_limit_credits(COQL_FIRST_LIMIT)
    page = coql_limit_credits(COQL_MAX_LIMIT)
    if full:
        per_group = page * max(1, math.ceil(rows / COQL_MAX_LIMIT))
    elif rows <= COQL_FIRST_LIMIT:
        per_group = first
    else:
        per_group = first + page * math.ceil((rows - COQL_FIRST_LIMIT) / COQL_MAX_LIMIT)
    return per_group * groups


def records_credits(rows: int, groups: int = 1) -> int:
    """Credits to read ``rows`` with the Records API: one credit per page of 200, per group."""
    return max(1, math.ceil(rows / RECORDS_PER_PAGE)) * RECORDS_PAGE_CREDITS * groups


def deleted_credits(tombstones: int | None) -> int:
    """Credits to read deleted records: 2 per page of 200, at least one page."""
    return DELETED_PAGE_CREDITS * max(1, math.ceil((tombstones or 0) / DELETED_PER_PAGE))


def reader_credits(reader: str, rows: int, n_columns: int, *, full: bool = False) -> int:
    """Credits ``reader`` spends reading ``rows`` rows of a schema of ``n_columns`` columns."""
    groups = group_count(reader, n_columns)
    if reader == BULK:
        return bulk_credits(rows, groups)
    if reader == COQL:
        return coql_read_credits(rows, groups, full=full)
    return records_credits(rows, groups)


@dataclass(frozen=True)
class ReaderChoice:
    """The reader picked for a module and why; ``probe`` asks for a COQL probe first."""

    reader: str
    reason: str
    fallback: str | None = None
    probe: bool = False


def static_choice(
    module: ModuleMeta,
    *,
    api_type: str,
    use_coql: bool,
    coql_ok: bool,
    incremental: bool,
    bulk_ok: bool = True,
    coql_refused: Sequence[str] = (),
) -> ReaderChoice:
    """Choose the reader from the settings and the module alone (no calls).

    ``coql_refused`` names the module's fields COQL refuses (line items, participants, …, see
    :mod:`connector.zoho.quirks`): such a module is read by the Records API, which returns them,
    whatever the settings (Bulk Read is not relied on to export them either).

    With ``APIType=Bulk`` on an incremental run where COQL may be used, the answer is Bulk with
    ``probe=True``: the caller probes with COQL and settles with :func:`cheapest_incremental`.
    ``bulk_ok`` is False when the token is known to lack ``ZohoCRM.bulk.READ``: the module is then
    read by COQL or the Records API instead of failing.
    """
    coql_ok = coql_ok or use_coql
    if coql_refused:
        why = f"COQL refuses {', '.join(coql_refused)}"
        return ReaderChoice(RECORDS, f"{why}; Records API instead", fallback=why)
    if api_type.lower() == "rest":
        if use_coql:
            return ReaderChoice(COQL, "APIType=REST with UseCOQL=true")
        return ReaderChoice(RECORDS, "APIType=REST with UseCOQL=false")
    if not module.bulk_supported or not bulk_ok:
        why = (
            f"Bulk Read cannot export {module.api_name}"
            if not module.bulk_supported
            else f"the token lacks {BULK_READ}"
        )
        if coql_ok:
            return ReaderChoice(COQL, f"{why}; COQL instead", fallback=why)
        return ReaderChoice(
            RECORDS, f"{why}; Records API instead (COQL scope not granted)", fallback=why
        )
    if incremental and coql_ok:
        return ReaderChoice(BULK, "APIType=Bulk, incremental: COQL probe first", probe=True)
    if incremental:
        return ReaderChoice(BULK, "APIType=Bulk, incremental (COQL scope not granted)")
    return ReaderChoice(BULK, "APIType=Bulk, full load")


def _cheaper(rows: int, n_columns: int, *, full: bool, what: str, unit: str) -> ReaderChoice:
    coql = reader_credits(COQL, rows, n_columns, full=full)
    bulk = reader_credits(BULK, rows, n_columns)
    if coql <= bulk:
        return ReaderChoice(COQL, f"{what}: {rows} {unit}, COQL ~{coql} < Bulk ~{bulk} credits")
    return ReaderChoice(BULK, f"{what}: {rows} {unit}, Bulk ~{bulk} <= COQL ~{coql} credits")


def cheapest_incremental(rows: int, n_columns: int) -> ReaderChoice:
    """Pick the cheaper of COQL and Bulk for an incremental read of ``rows`` changed rows."""
    return _cheaper(rows, n_columns, full=False, what="APIType=Bulk, incremental", unit="changes")


def cheapest_full(rows: int, n_columns: int) -> ReaderChoice:
    """Pick the cheaper of COQL and Bulk for a module read in full on every run (no
    ``Modified_Time``): a Bulk job costs 50 credits each time, a small module far less by COQL."""
    return _cheaper(rows, n_columns, full=True, what="read in full every run", unit="rows")


@dataclass
class ModulePlan:
    """One module in a plan: how it would be read and what it would cost."""

    module: str
    reader: str
    reason: str
    mode: str  # "full" | "incremental"
    columns: int
    estimated_rows: int | None
    estimated_credits: int
    count_credits: int = 0
    fallback: str | None = None
    error: str | None = None
    skipped_fields: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """A dry run: a reader and an estimate per module, and the total."""

    api_type: str
    use_coql: bool
    modules: list[ModulePlan]
    discovery_credits: int
    """The modules list (0 when ``--modules`` made it unnecessary); fields are per module."""
    spent_credits: int = 0
    """What making the plan cost (metadata calls and COQL counts)."""
    warnings: list[str] = field(default_factory=list)

    @property
    def total_credits(self) -> int:
        """Estimated credits of the run this plan describes (metadata, counts and reads)."""
        return self.discovery_credits + sum(
            m.estimated_credits for m in self.modules if m.error is None
        )


def estimate_module(
    module: ModuleMeta,
    *,
    n_columns: int,
    rows: int | None,
    incremental: bool,
    api_type: str,
    use_coql: bool,
    coql_ok: bool,
    fields_credits: int = METADATA_CREDITS,
    bulk_ok: bool = True,
    coql_refused: Sequence[str] = (),
    full_each_run: bool = False,
) -> tuple[ReaderChoice, int]:
    """Reader and estimated credits (fields metadata and deleted records included) for a module.

    ``rows`` is the number of rows the run would read (changes since the watermark when
    incremental), or None when unknown: the estimate is then the cost of reading nothing more
    than the first page, i.e. a lower bound.
    """
    choice = static_choice(
        module,
        api_type=api_type,
        use_coql=use_coql,
        coql_ok=coql_ok,
        incremental=incremental,
        bulk_ok=bulk_ok,
        coql_refused=coql_refused,
    )
    known = rows if rows is not None else 0
    if full_each_run and choice.reader == BULK and coql_ok and rows is not None:
        # One COQL count prices both (see connector.run.module_job).
        choice = cheapest_full(known, n_columns)
        read = 1 + reader_credits(choice.reader, known, n_columns, full=True)
    elif choice.probe:
        # The probe page is the read when it holds every change; past it, one count and the
        # cheaper reader (the probe's credit is spent either way).
        if known <= COQL_FIRST_LIMIT:
            choice = ReaderChoice(
                COQL, f"APIType=Bulk, incremental: {known} changes fit one COQL page"
            )
            read = coql_read_credits(known, group_count(COQL, n_columns))
        else:
            choice = cheapest_incremental(known, n_columns)
            read = 2 + reader_credits(choice.reader, known, n_columns)
    else:
        read = reader_credits(choice.reader, known, n_columns, full=not incremental)
    deleted = deleted_credits(0) if incremental else 0
    return choice, fields_credits + read + deleted


def _fmt_int(value: int | None) -> str:
    return "unknown" if value is None else f"{value:,}"


def format_plan(plan: Plan) -> str:
    """The plan as a plain-text table for humans (what ``zoho-crm plan`` prints)."""
    header = ("module", "mode", "reader", "rows", "credits", "why")
    rows: list[tuple[str, ...]] = []
    for m in plan.modules:
        if m.error is not None:
            rows.append((m.module, m.mode, "-", "-", "-", m.error))
            continue
        credits = f"{m.estimated_credits:,}" + ("+" if m.estimated_rows is None else "")
        rows.append((m.module, m.mode, m.reader, _fmt_int(m.estimated_rows), credits, m.reason))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for r in [header, *rows]:
        cells = [r[i].ljust(widths[i]) if i < 3 else r[i].rjust(widths[i]) for i in range(5)]
        lines.append("  ".join([*cells, r[5]]).rstrip())
    lines.append(
        f"APIType={plan.api_type}, UseCOQL={'true' if plan.use_coql else 'false'}; "
        f"module list {counted(plan.discovery_credits, 'credit')}; each module's estimate "
        "includes its "
        "fields call"
    )
    unknown = any(m.estimated_rows is None and m.error is None for m in plan.modules)
    lines.append(
        f"estimated total: {counted(plan.total_credits, 'credit')}"
        + (" or more (rows unknown where marked +)" if unknown else "")
        + f"; making this plan spent {plan.spent_credits:,}"
    )
    lines.extend(f"warning: {w}" for w in plan.warnings)
    return "\n".join(lines)
