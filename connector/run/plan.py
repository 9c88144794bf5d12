"""``zoho-crm plan``: a dry run that prices the run that would follow it, reading no records.

Per module: the reader the planner picks (:mod:`connector.run.planner`), the rows it would read (a
COQL count, 1 credit, when COQL may be used), the credits it would spend, and what the other
readers the settings allow would cost. With an output whose state holds a module's watermark,
that module is planned as an incremental run (``full_refresh``: as a full load), and its rows are
the changes since the watermark: the count from the watermark's second, less the rows of that
second the output already holds, so an unchanged org shows 0. A module whose last full load shows
it is large is not counted (its rows are that load's).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from connector.config import Settings
from connector.errors import AuthError, ModuleUnavailable, ZohoAPIError
from connector.lake.bulk_jobs import BulkJobBook
from connector.lake.output import Output
from connector.lake.schema import ModuleSchema, module_schema
from connector.lake.state import ModuleState, StateStore
from connector.readers import coql_count
from connector.readers.base import BULK, MODIFIED_TIME
from connector.readers.bulk_query import paid_jobs
from connector.readers.users import USERS_META
from connector.run.catalog import Target, discover_run, known_modules
from connector.run.planner import (
    ModulePlan,
    Plan,
    Shape,
    allowed_readers,
    deleted_credits,
    estimate_module,
    known_large,
    resume_choice,
)
from connector.zoho.http import ZohoClient
from connector.zoho.limits import METADATA_CREDITS
from connector.zoho.metadata import list_fields
from connector.zoho.quirks import coql_refused
from connector.zoho.scopes import bulk_allowed, coql_allowed

__all__ = ["build_plan"]


def _state_store(output: str | None) -> StateStore | None:
    """The output's state, or None when there is no output or it holds no state yet."""
    if output is None:
        return None
    out = Output.open(output)
    if not out.exists("_state") and not out.list_files("_state", ".json"):
        return None
    return StateStore(out)


def _load_states(store: StateStore | None, names: Sequence[str]) -> dict[str, ModuleState]:
    return {name: store.load(name) for name in names} if store is not None else {}


def build_plan(
    settings: Settings,
    *,
    modules: Sequence[str] | None = None,
    output: str | None = None,
    client: ZohoClient | None = None,
    full_refresh: bool = False,
) -> Plan:
    """A dry run: per module the reader, estimated rows (a COQL count, 1 credit, when COQL may
    be used) and estimated credits, without reading records.

    With ``output``, modules with a committed watermark there are planned as incremental runs,
    unless ``full_refresh``.
    """
    own_client = client is None
    client = client or ZohoClient(settings)
    try:
        spent_before = client.meter.total
        store = _state_store(output)
        known = known_modules(store, modules) if store is not None else {}
        found = discover_run(client, modules, known)
        targets = found.targets
        # Named modules had their fields fetched during discovery (1 credit each, priced in each
        # module's estimate); what remains is the modules list, when it was needed.
        listing_credits = max(
            0,
            client.meter.total
            - spent_before
            - METADATA_CREDITS * sum(1 for t in targets if t.fields is not None),
        )
        states = _load_states(store, [t.meta.api_name for t in targets])
        coql_ok = coql_allowed(settings.use_coql, client.tokens.granted_scopes)
        plans: list[ModulePlan] = []
        warnings: list[str] = []
        for target in targets:
            plans.append(
                _plan_module(
                    settings,
                    client,
                    target,
                    states.get(target.meta.api_name),
                    coql_ok,
                    warnings,
                    full_refresh=full_refresh,
                    output=output,
                )
            )
        plans.extend(
            ModulePlan(meta.api_name, "-", "", "full", 0, None, 0, error=f"skipped: {why}")
            for meta, why in found.skipped
        )
        return Plan(
            api_type=settings.api_type.value,
            use_coql=settings.use_coql,
            modules=plans,
            discovery_credits=listing_credits,
            spent_credits=client.meter.total - spent_before,
            warnings=warnings,
        )
    finally:
        if own_client:
            client.close()


def _plan_module(
    settings: Settings,
    client: ZohoClient,
    target: Target,
    state: ModuleState | None,
    coql_ok: bool,
    warnings: list[str],
    *,
    full_refresh: bool,
    output: str | None = None,
) -> ModulePlan:
    name = target.meta.api_name
    if target.meta is USERS_META:
        return ModulePlan(
            name, "users", "the Users API, in full every run", "full", 0, None, METADATA_CREDITS
        )
    since = state.watermark if state is not None and not full_refresh else None
    mode = "incremental" if since is not None else "full"
    fields = target.fields
    try:
        if target.error is not None:
            raise target.error
        if fields is None:
            fields = list_fields(client, name)
    except ModuleUnavailable as exc:
        return ModulePlan(name, "-", "", mode, 0, None, 0, error=f"not available: {exc}")
    schema = module_schema(name, fields)
    full_each_run = MODIFIED_TIME not in schema.names
    if full_each_run:
        # Read in full every run (see connector.run.module_job).
        since, mode = None, "full"
    shape = Shape.of(schema)
    refused = [*coql_refused(name, frozenset(schema.names)), *(state.coql_refused if state else ())]
    options: dict[str, Any] = {
        "api_type": settings.api_type.value,
        "use_coql": settings.use_coql,
        "coql_ok": coql_ok,
        "bulk_ok": bulk_allowed(client.tokens.granted_scopes),
        "coql_refused": refused,
    }
    known = state.full_rows if state is not None and since is None else None
    readers = allowed_readers(target.meta, **options)
    resumed = _resume_plan(client, output, state, schema, since, readers, mode)
    if resumed is not None:
        return resumed
    rows: int | None
    if known is not None and known_large(readers, known, shape):
        # As the run does: no count, the last full load's rows stand in.
        rows, count_credits = known, 0
    else:
        rows, count_credits = _rows(client, name, since, state, coql_ok, warnings)
    choice, credits = estimate_module(
        target.meta,
        n_columns=len(schema.arrow),
        rows=rows,
        incremental=since is not None,
        full_each_run=full_each_run,
        shape=shape,
        known_rows=known,
        price_full=settings.tuning.price_readers,
        **options,
    )
    return ModulePlan(
        module=name,
        reader=choice.reader,
        reason=choice.reason,
        mode=mode,
        columns=len(schema.arrow),
        estimated_rows=rows,
        estimated_credits=credits,
        count_credits=count_credits,
        fallback=choice.fallback,
        skipped_fields=[n for n, _ in schema.skipped],
        alternatives={r: c for r, c in choice.prices if r != choice.reader},
    )


def _resume_plan(
    client: ZohoClient,
    output: str | None,
    state: ModuleState | None,
    schema: ModuleSchema,
    since: datetime | None,
    readers: Sequence[str],
    mode: str,
) -> ModulePlan | None:
    """The plan of a module whose read would take Bulk jobs an earlier run paid for (as the run
    does: :mod:`connector.run.choosing`), or None when it has none."""
    if output is None or state is None or BULK not in readers:
        return None
    book = BulkJobBook(Output.open(output), schema.module, after_run=state.last_run_id)
    paid = paid_jobs(book, schema, since, client)
    if not paid:
        return None
    choice = resume_choice(paid, Shape.of(schema), readers)
    rows = choice.rows
    deleted = deleted_credits(0) if since is not None else 0
    return ModulePlan(
        module=schema.module,
        reader=BULK,
        reason=choice.reason,
        mode=mode,
        columns=len(schema.arrow),
        estimated_rows=rows,
        estimated_credits=METADATA_CREDITS + dict(choice.prices)[BULK] + deleted,
        skipped_fields=[n for n, _ in schema.skipped],
        alternatives={r: c for r, c in choice.prices if r != BULK},
    )


def _rows(
    client: ZohoClient,
    name: str,
    since: datetime | None,
    state: ModuleState | None,
    coql_ok: bool,
    warnings: list[str],
) -> tuple[int | None, int]:
    """(rows the run would read, the credits counting them cost): a COQL count, less the rows of
    the watermark's second the output holds already (an unchanged org: 0)."""
    if not coql_ok:
        warnings.append(f"{name}: rows unknown (COQL scope not granted: no cheap count)")
        return None, 0
    try:
        rows = coql_count(client, name, since)
    except (ZohoAPIError, AuthError) as exc:
        warnings.append(f"{name}: could not count rows with COQL ({exc})")
        return None, 0
    if since is not None and state is not None:
        rows = max(0, rows - len(state.ids_at_watermark))
    return rows, 1
