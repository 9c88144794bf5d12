"""Which reader serves each module, and what it will cost in API credits.

Zoho bills every call against a daily budget, so the planner prices each way of reading a module
with Zoho's rules and picks the cheapest one that reads everything. What the settings promise:

* ``APIType=REST``: never Bulk Read. COQL when ``UseCOQL=true``, else the Records API.
* ``APIType=Bulk`` (the default): each module the cheapest way Zoho allows, among Bulk Read (where
  Zoho can export the module and the token has ``ZohoCRM.bulk.READ``), COQL (when ``UseCOQL`` is
  on, or its scope is granted or not known to be missing) and the Records API. ``UseCOQL=false``
  does not forbid COQL here: it only says which REST API ``APIType=REST`` reads with.
* Whatever the settings, a module with a field COQL refuses is read by the Records API.

Full loads with ``APIType=Bulk`` (:func:`full_choice`): when Bulk Read is among the readers, a
COQL count (1 credit) gives the rows and each reader is priced with them; the cheapest wins and
the manifest says why, with the prices of the others. The count is skipped when the module is
known to be large (its last full load read so many rows that Bulk Read is cheaper even at half
of them) or when COQL may not be used. Without Bulk Read, COQL and the Records API cost a fixed
amount per row, so the cheaper one is known without a count.

Incremental runs with ``APIType=Bulk``: a Bulk job costs at least 50 credits, while a COQL page of
up to 200 rows costs 1. So the run first *probes* with COQL (the first page, LIMIT 200, 1 credit).
When that page holds every change, the probe is the read. Otherwise one COQL count (1 credit)
prices both ways and the cheaper one wins.

Credit formulas, from Zoho's prices and limits in :mod:`connector.zoho.limits` (metadata 1; Bulk
create 50, status poll 1, download 1; COQL by LIMIT: ≤200 → 1, ≤1000 → 2, ≤2000 → 3; record list
page 1; deleted-records page 2):

* Bulk: ``ceil(rows / 200,000)`` jobs per field group of ≤200 fields, each 50 + polls + 1 download.
* COQL: 1 for the first page (LIMIT 200), then 3 per 2,000 rows, per group of ≤50 columns; a full
  load whose count is known reads at the cheapest LIMIT that holds it (≤200 rows: 1 credit).
* Records: ``ceil(rows / 200)`` pages per group of ≤50 fields.
* Deleted records: 2 per 200 tombstones, at least 2 on every incremental run.
* What the answers leave out (:func:`extra_credits`), read by id: ``$se_module`` of polymorphic
  lookups for COQL and Bulk (1 credit per 100 linked records, priced as if every record links
  one), and rich-text values that may be cut (``fetch_full_data``, 1 per 200, then their
  ``Modified_Time`` again, 1 per 100; priced as if a quarter of the records hold one; the
  Records API pays both per page of 200).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from connector.lake.schema import SE_MODULE, ModuleSchema
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
    coql_fitted_credits,
    coql_limit_credits,
)
from connector.zoho.metadata import ModuleMeta
from connector.zoho.scopes import BULK_READ

if TYPE_CHECKING:
    from connector.lake.bulk_jobs import PaidJob

# An estimate, not a rule: a job is usually COMPLETED after two or three status polls.
BULK_POLLS_PER_JOB = 3
# Assumptions for what a read must complete by id (Zoho's data decides; the manifest reports what
# it cost): every record's polymorphic lookup is set (the most it can cost), and a quarter of the
# records hold a rich-text value long enough to have been cut.
LINKED_SHARE = 1.0
RICH_TEXT_CUT_SHARE = 0.25
# Records read by id per call (Records API ``ids``) and per fetch_full_data call.
IDS_PER_CALL = 100
FULL_DATA_IDS_PER_CALL = 200
# A module whose last full load read this many times the rows at which Bulk Read becomes the
# cheapest reader is "known to be large": no count before its next full load.
KNOWN_LARGE_FACTOR = 2


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


def resumed_bulk_credits(paid: int, rows: int | None, groups: int = 1) -> int:
    """Credits of a Bulk read that takes ``paid`` jobs an earlier run paid for: a status call and
    a download each (no create), and the jobs still to create (of ``rows`` rows, when known) at
    the full price."""
    jobs = max(1, math.ceil((rows or 0) / BULK_ROWS_PER_JOB)) * groups
    taken = min(paid, jobs)
    per_job = BULK_CREATE_CREDITS + BULK_POLLS_PER_JOB * BULK_STATUS_CREDITS + BULK_DOWNLOAD_CREDITS
    return taken * (BULK_STATUS_CREDITS + BULK_DOWNLOAD_CREDITS) + (jobs - taken) * per_job


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
class Shape:
    """What in a module's schema decides what a read costs besides its pages."""

    columns: int
    polymorphic: bool = False
    """A polymorphic lookup whose module (``$se_module``) only the Records API names."""
    rich_text: bool = False
    """Rich-text fields, whose values a list answer may cut at 500 characters."""

    @classmethod
    def of(cls, schema: ModuleSchema) -> Shape:
        """The shape of ``schema``."""
        return cls(len(schema.arrow), SE_MODULE in schema.names, bool(schema.rich_text))


def extra_credits(reader: str, rows: int, shape: Shape) -> int:
    """Credits a read of ``rows`` rows spends completing them by id (see the module docstring).

    The Records API names ``$se_module`` itself but completes rich text page by page (one
    ``fetch_full_data`` and one ``Modified_Time`` call per page of 200 holding a cut value); COQL
    and Bulk Read complete both for the rows that need it.
    """
    if rows <= 0:
        return 0
    cut = math.ceil(rows * RICH_TEXT_CUT_SHARE) if shape.rich_text else 0
    if reader == RECORDS:
        return 2 * math.ceil(rows / RECORDS_PER_PAGE) if cut else 0
    linked = math.ceil(rows * LINKED_SHARE) if shape.polymorphic else 0
    fetched = math.ceil(cut / FULL_DATA_IDS_PER_CALL)
    return fetched + math.ceil(max(cut, linked) / IDS_PER_CALL)


def full_read_credits(reader: str, rows: int, shape: Shape, *, fitted: bool = False) -> int:
    """Credits ``reader`` spends reading all ``rows`` rows of a module, completion included.

    ``fitted``: the rows are counted, so a COQL read asks each page for the cheapest LIMIT
    holding what is left of them (:func:`~connector.zoho.limits.coql_fitted_credits`).
    """
    groups = group_count(reader, shape.columns)
    if reader == COQL and fitted:
        read = coql_fitted_credits(rows) * groups
    else:
        read = reader_credits(reader, rows, shape.columns, full=True)
    return read + extra_credits(reader, rows, shape)


def least_credits(reader: str, rows: int, shape: Shape, *, resumed: int = 0) -> int:
    """The least a full load by ``reader`` must spend before anything of it can be committed.

    A Bulk read commits only at the end, so all of it (``resumed``: jobs an earlier run paid
    for, taken for their status and download); COQL and the Records API commit what they have
    when the run stops, so one page (with its completion).
    """
    if reader == BULK and resumed:
        groups = group_count(BULK, shape.columns)
        return resumed_bulk_credits(resumed, rows, groups) + extra_credits(BULK, rows, shape)
    if reader == BULK:
        return full_read_credits(BULK, rows, shape)
    page = min(rows, COQL_MAX_LIMIT if reader == COQL else RECORDS_PER_PAGE)
    return full_read_credits(reader, page, shape, fitted=True)


@dataclass(frozen=True)
class ReaderChoice:
    """The reader picked for a module and why; ``probe`` asks for a COQL probe first."""

    reader: str
    reason: str
    fallback: str | None = None
    probe: bool = False
    prices: tuple[tuple[str, int], ...] = ()
    """What each reader considered would cost (credits), the chosen one included."""
    fitted_rows: int | None = None
    """The counted rows of a full COQL read, which sizes each page's LIMIT to what is left."""
    rows: int | None = None
    """The rows the choice was priced with (a count, or the last full load's)."""
    resumes: int = 0
    """Bulk jobs an earlier run paid for that the read takes (status and download only)."""


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


def allowed_readers(
    module: ModuleMeta,
    *,
    api_type: str,
    use_coql: bool,
    coql_ok: bool,
    bulk_ok: bool = True,
    coql_refused: Sequence[str] = (),
) -> tuple[str, ...]:
    """The readers the settings allow for ``module`` (see the module docstring for the rules)."""
    if coql_refused:
        return (RECORDS,)
    if api_type.lower() == "rest":
        return (COQL,) if use_coql else (RECORDS,)
    readers = [BULK] if module.bulk_supported and bulk_ok else []
    if coql_ok or use_coql:
        readers.append(COQL)
    return (*readers, RECORDS)


_NAMES = {BULK: "Bulk Read", COQL: "COQL", RECORDS: "the Records API"}
# Equal prices: the readers that commit as they go first.
_PREFERENCE = {COQL: 0, RECORDS: 1, BULK: 2}


def priced_choice(
    readers: Sequence[str], rows: int, shape: Shape, *, fitted: bool, what: str
) -> ReaderChoice:
    """The cheapest of ``readers`` for a full read of ``rows`` rows, its reason naming the
    prices of the others."""
    prices = {reader: full_read_credits(reader, rows, shape, fitted=fitted) for reader in readers}
    best = min(readers, key=lambda reader: (prices[reader], _PREFERENCE[reader]))
    others = ", ".join(f"{r} ~{prices[r]:,}" for r in readers if r != best)
    reason = f"{what}: {rows:,} rows, {best} ~{prices[best]:,} credits" + (
        f" (vs {others})" if others else ""
    )
    return ReaderChoice(
        best,
        reason,
        prices=tuple(prices.items()),
        fitted_rows=rows if best == COQL and fitted else None,
        rows=rows,
    )


def known_large(readers: Sequence[str], rows: int, shape: Shape) -> bool:
    """Whether Bulk Read is the cheapest even at a fraction of ``rows`` (the last full load's
    rows): the module is then read by Bulk without a count."""
    if BULK not in readers:
        return False
    smaller = rows // KNOWN_LARGE_FACTOR
    return priced_choice(readers, smaller, shape, fitted=False, what="").reader == BULK


# Module sizes at which :func:`same_at_any_size` compares the readers (0 to 10M rows, past
# every step of their prices: COQL's 2,000-row pages, Records' 200, Bulk's 200,000-row jobs).
_SIZES = (0, 200, 1_000, 2_000, 5_000, 20_000, 50_000, 100_000, 200_000, 1_000_000, 10_000_000)


def same_at_any_size(readers: Sequence[str], shape: Shape) -> str | None:
    """The reader that is the cheapest at every module size, or None when the size decides.

    A module whose polymorphic lookups only the Records API names for free costs the others a
    look-up per linked row: the Records API wins at any size, and a count would be a credit
    spent to learn nothing.
    """
    best = {priced_choice(readers, rows, shape, fitted=False, what="").reader for rows in _SIZES}
    return best.pop() if len(best) == 1 else None


def full_choice(
    static: ReaderChoice,
    readers: Sequence[str],
    shape: Shape,
    *,
    count: Callable[[], int] | None,
    known_rows: int | None = None,
    what: str = "full load",
    fitted: bool = True,
) -> ReaderChoice:
    """The reader of a full load among ``readers`` (:func:`allowed_readers`).

    ``static`` is the settings' choice (:func:`static_choice`), kept when there is nothing to
    choose from. With Bulk Read among the readers, ``count`` (a COQL count, 1 credit; None when
    COQL may not be used) gives the rows, unless ``known_rows`` (the last full load's) shows the
    module is large, or the same reader is the cheapest at any size (:func:`same_at_any_size`).
    Without Bulk Read, COQL and the Records API cost a fixed rate per row, so they are compared
    without a count. ``fitted``: the reader can fit its COQL LIMITs to a
    counted module.
    """
    if len(readers) <= 1:
        return static
    fallback = static.fallback
    prefix = f"{fallback}; " if fallback else ""
    if BULK not in readers:
        # A fixed rate per row: any size ranks them alike.
        choice = priced_choice(readers, 10 * COQL_MAX_LIMIT, shape, fitted=False, what="")
        cheaper = ", ".join(
            f"{_NAMES[r]} {full_read_credits(r, COQL_MAX_LIMIT, shape)}" for r in readers
        )
        reason = (
            f"{prefix}{_NAMES[choice.reader]} instead, the cheapest per row "
            f"({cheaper} credits per 2,000 rows)"
        )
        return replace(choice, reason=reason, rows=None, fallback=fallback)
    if known_rows is not None and known_large(readers, known_rows, shape):
        choice = priced_choice(
            readers, known_rows, shape, fitted=False, what=f"{what}, known large (no count)"
        )
        return replace(choice, fallback=fallback)
    always = same_at_any_size(readers, shape)
    if always is not None:
        reason = f"{prefix}{what}: {_NAMES[always]} is the cheapest at any size (no count)"
        return ReaderChoice(always, reason, fallback=fallback)
    if count is not None:
        choice = priced_choice(readers, count(), shape, fitted=fitted, what=f"{prefix}{what}")
        return replace(choice, fallback=fallback)
    if known_rows is not None:
        choice = priced_choice(
            readers, known_rows, shape, fitted=False, what=f"{what}, rows of the last full load"
        )
        return replace(choice, fallback=fallback)
    return static


def resume_choice(paid: Sequence[PaidJob], shape: Shape, readers: Sequence[str]) -> ReaderChoice:
    """Bulk Read taking the jobs an earlier run ``paid`` for: cheaper than any other read of the
    same rows, since the result only needs its status and its download; the others' prices are
    named when the paying run counted the rows."""
    job_ids = [job.id for job in paid]
    rows = next((job.rows for job in paid if job.rows is not None), None)
    groups = group_count(BULK, shape.columns)
    known = rows or 0
    credits = resumed_bulk_credits(len(job_ids), rows, groups) + extra_credits(BULK, known, shape)
    prices = {BULK: credits}
    if rows is not None:
        prices |= {r: full_read_credits(r, rows, shape) for r in readers if r != BULK}
    ids = ", ".join(job_ids)
    return ReaderChoice(
        BULK,
        f"resumes Bulk job {ids} (paid for by an earlier run), {counted(credits, 'credit')}",
        prices=tuple(prices.items()),
        rows=rows,
        resumes=len(job_ids),
    )


def _cheaper(rows: int, n_columns: int, *, full: bool, what: str, unit: str) -> ReaderChoice:
    coql = reader_credits(COQL, rows, n_columns, full=full)
    bulk = reader_credits(BULK, rows, n_columns)
    if coql <= bulk:
        return ReaderChoice(COQL, f"{what}: {rows} {unit}, COQL ~{coql} < Bulk ~{bulk} credits")
    return ReaderChoice(BULK, f"{what}: {rows} {unit}, Bulk ~{bulk} <= COQL ~{coql} credits")


def cheapest_incremental(rows: int, n_columns: int) -> ReaderChoice:
    """Pick the cheaper of COQL and Bulk for an incremental read of ``rows`` changed rows."""
    return _cheaper(rows, n_columns, full=False, what="APIType=Bulk, incremental", unit="changes")


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
    alternatives: dict[str, int] = field(default_factory=dict)
    """What the other readers the settings allow would cost to read the same rows."""


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
    shape: Shape | None = None,
    known_rows: int | None = None,
    price_full: bool = True,
) -> tuple[ReaderChoice, int]:
    """Reader and estimated credits (fields metadata and deleted records included) for a module.

    ``rows`` is the number of rows the run would read (changes since the watermark when
    incremental), or None when unknown: the estimate is then the cost of reading nothing more
    than the first page, i.e. a lower bound. ``shape`` (default: ``n_columns`` columns, nothing
    to complete by id) prices what the read completes by id; ``known_rows`` is the last full
    load's rows (a full load then skips its count when the module is large). ``price_full``
    False: a full load keeps the settings' reader (``price_readers`` in ``[tuning]``).
    """
    shape = shape or Shape(n_columns)
    options: dict[str, Any] = {
        "api_type": api_type,
        "use_coql": use_coql,
        "coql_ok": coql_ok,
        "bulk_ok": bulk_ok,
        "coql_refused": coql_refused,
    }
    choice = static_choice(module, incremental=incremental, **options)
    known = rows if rows is not None else 0
    if not incremental or full_each_run:
        readers = allowed_readers(module, **options) if price_full else (choice.reader,)
        counted = (
            BULK in readers
            and COQL in readers
            and rows is not None
            and not (known_rows is not None and known_large(readers, known_rows, shape))
        )
        choice = full_choice(
            choice,
            readers,
            shape,
            count=(lambda: known) if counted else None,
            known_rows=known_rows if known_rows is not None else rows,
            what="read in full every run" if full_each_run else "full load",
        )
        fitted = choice.fitted_rows is not None
        read = int(counted) + full_read_credits(choice.reader, known, shape, fitted=fitted)
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
        read += extra_credits(choice.reader, known, shape)
    else:
        read = reader_credits(choice.reader, known, n_columns) + extra_credits(
            choice.reader, known, shape
        )
    if incremental and not full_each_run:
        # What each reader the settings allow would cost for the same changes.
        prices = {
            reader: reader_credits(reader, known, n_columns) + extra_credits(reader, known, shape)
            for reader in allowed_readers(module, **options)
        }
        choice = replace(choice, prices=tuple(prices.items()))
    deleted = deleted_credits(0) if incremental and not full_each_run else 0
    return choice, fields_credits + read + deleted


def _fmt_int(value: int | None) -> str:
    return "unknown" if value is None else f"{value:,}"


def _alternatives(m: ModulePlan) -> str:
    others = [f"{reader} {credits:,}" for reader, credits in m.alternatives.items()]
    return ", ".join(others) or "-"


def format_plan(plan: Plan) -> str:
    """The plan as a plain-text table for humans (what ``zoho-crm plan`` prints): per module the
    reader, rows, credits, what the other readers would cost, and why."""
    header = ("module", "mode", "reader", "rows", "credits", "others", "why")
    rows: list[tuple[str, ...]] = []
    for m in plan.modules:
        if m.error is not None:
            rows.append((m.module, m.mode, "-", "-", "-", "-", m.error))
            continue
        credits = f"{m.estimated_credits:,}" + ("+" if m.estimated_rows is None else "")
        rows.append(
            (
                m.module,
                m.mode,
                m.reader,
                _fmt_int(m.estimated_rows),
                credits,
                _alternatives(m),
                m.reason,
            )
        )
    last = len(header) - 1
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(last)]
    lines = []
    for r in [header, *rows]:
        cells = [
            r[i].rjust(widths[i]) if i in (3, 4) else r[i].ljust(widths[i]) for i in range(last)
        ]
        lines.append("  ".join([*cells, r[last]]).rstrip())
    lines.append(
        f"APIType={plan.api_type}, UseCOQL={'true' if plan.use_coql else 'false'}; "
        f"module list {counted(plan.discovery_credits, 'credit')}; each module's estimate "
        "includes its fields call (and the COQL count a full load is priced with); others: what "
        "the other readers the settings allow would cost"
    )
    unknown = any(m.estimated_rows is None and m.error is None for m in plan.modules)
    lines.append(
        f"estimated total: {counted(plan.total_credits, 'credit')}"
        + (" or more (rows unknown where marked +)" if unknown else "")
        + f"; making this plan spent {plan.spent_credits:,}"
    )
    lines.extend(f"warning: {w}" for w in plan.warnings)
    return "\n".join(lines)
