"""The module catalogue: which modules the org holds, which a run extracts, how each can be read.

* :func:`unavailable_reason` is the one rule for a module that cannot be extracted (closed to the
  API, known to refuse every data call, or read through its parent), in the words
  ``zoho-crm modules`` shows; ``extract`` and ``plan`` refuse such a module with the same words.
* :func:`discover` picks the modules a run (or a plan) extracts: every data module the org lists,
  or the modules the user named, matched case-insensitively and spelled as Zoho spells them
  (an unknown name is a :class:`ConfigError` naming close matches), with their fields.
  :func:`discover_run` adds what a run reports besides: the ``Users`` dataset, and the modules
  skipped without a call, each with its reason.
* :func:`build_catalog` is ``zoho-crm modules``. Costs: ``settings/modules`` once and
  ``settings/fields`` once per API-readable module (1 credit each); with ``counts=True`` also one
  COQL ``select COUNT(id)`` per module COQL can read (1 credit each).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from connector.errors import AuthError, ConfigError, ModuleUnavailable, ZohoAPIError
from connector.lake.schema import RAW_VALUES, module_schema
from connector.logging_setup import counted
from connector.readers.base import BULK, COQL, MODIFIED_TIME, RECORDS
from connector.readers.coql import count_query
from connector.readers.users import USERS, USERS_META, users_fields
from connector.run.credits import billed_to
from connector.run.workers import map_at_once
from connector.zoho.metadata import FieldMeta, ModuleMeta, list_fields, list_modules
from connector.zoho.quirks import UNREADABLE_MODULES, coql_refused

if TYPE_CHECKING:
    from connector.lake.state import StateStore
    from connector.zoho.http import ZohoClient

log = logging.getLogger(__name__)

# Zoho exposes these kinds of module through the record APIs; linking and subform modules are
# read through their parents, web-tab modules are not data.
_DATA_MODULE_TYPES = frozenset({"default", "custom"})


def holds_records(module: ModuleMeta) -> bool:
    """Whether the record APIs read ``module``: API-supported, and a default or custom module."""
    return module.api_supported and module.generated_type in _DATA_MODULE_TYPES


def unavailable_reason(module: ModuleMeta) -> str | None:
    """Why ``module`` cannot be extracted, in the words ``zoho-crm modules`` shows, or None.

    The one rule ``modules``, ``plan`` and ``extract`` share, so they never disagree: modules
    closed to the API (``api_supported: false``), modules known to refuse every data call
    although Zoho lists them as API-supported (:mod:`connector.zoho.quirks`), and linking,
    subform or web modules, which hold no records of their own.
    """
    if not module.api_supported:
        return "not available through the API (api_supported: false)"
    known = UNREADABLE_MODULES.get(module.api_name)
    if known is not None:
        return known
    if module.generated_type not in _DATA_MODULE_TYPES:
        return f"{module.generated_type} module: read through its parent"
    return None


def skip_reason(module: ModuleMeta) -> str | None:
    """Why a run of every module skips ``module`` (and reports it), or None when it is read.

    Modules closed to the API and modules known to refuse every data call are skipped and
    reported; linking, subform and web modules are not data of their own and are not reported.
    """
    if module.api_supported and module.generated_type not in _DATA_MODULE_TYPES:
        return None
    return unavailable_reason(module)


# --- discovery: the modules a run extracts ------------------------------------------------------


@dataclass
class Target:
    """A module to extract, with its fields when already fetched, or why it cannot be read."""

    meta: ModuleMeta
    fields: list[FieldMeta] | None = None
    error: ModuleUnavailable | None = None


def _unknown_module(name: str, known: Sequence[ModuleMeta]) -> ConfigError:
    names = [m.api_name for m in known]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = (
        f"; did you mean {', '.join(close)}?" if close else f"; known modules: {', '.join(names)}"
    )
    return ConfigError(f"unknown module {name!r}{hint}")


def resolve_names(names: Sequence[str], listing: Sequence[ModuleMeta]) -> list[ModuleMeta]:
    """The modules ``names`` designate, in Zoho's spelling, each once, in the order named.

    Names match Zoho's api names case-insensitively (``leads`` is ``Leads``: one dataset, one
    state, one lock); an exact spelling wins if two modules differ only in case. An unknown name,
    or a module :func:`unavailable_reason` refuses, is a :class:`ConfigError` (the first one
    found, before anything is read).
    """
    by_name = {m.api_name: m for m in listing}
    by_fold: dict[str, list[ModuleMeta]] = {}
    for module in listing:
        by_fold.setdefault(module.api_name.casefold(), []).append(module)
    chosen: dict[str, ModuleMeta] = {}
    for name in names:
        exact = by_name.get(name)
        matches = [exact] if exact is not None else by_fold.get(name.casefold(), [])
        if len(matches) != 1:
            raise _unknown_module(name, listing)
        meta = matches[0]
        why = unavailable_reason(meta)
        if why is not None:
            raise ConfigError(
                f"module {meta.api_name} cannot be extracted: {why} (see zoho-crm modules)"
            )
        chosen.setdefault(meta.api_name, meta)
    return list(chosen.values())


def discover(
    client: ZohoClient,
    modules: Sequence[str] | None,
    known: Mapping[str, ModuleMeta] | None = None,
    *,
    workers: int = 1,
) -> list[Target]:
    """The modules to extract.

    Without ``modules``: every module the org lists that the API supports and that holds records
    (``generated_type`` default or custom: not linking, subform or web modules); their fields are
    fetched later, per module. With ``modules``: the module list (1 credit) names them in Zoho's
    spelling and refuses an unknown or unavailable one (:func:`resolve_names`) before anything
    else is spent; then the fields of each named module are fetched (1 credit each), up to
    ``workers`` at once: each call waits for Zoho's answer (~200 ms), and one after another
    they would hold back every module's start. ``known`` maps names to the descriptions an
    earlier run recorded in their state: when it describes every named module the list is not
    asked for (an incremental run of named modules spends only what reading them costs); a
    module gone since fails on its fields call instead.
    """
    names = [n.strip() for n in modules or () if n.strip()]
    if names and known and all(n in known for n in names):
        listing = list({m.api_name: m for m in known.values()}.values())
    else:
        listing = list_modules(client)
    if not names:
        return [Target(m) for m in listing if holds_records(m) and unavailable_reason(m) is None]

    def target(meta: ModuleMeta) -> Target:
        try:
            # The module's own call: its credit shows in its line of the run (and plan).
            with billed_to(meta.api_name):
                return Target(meta, fields=list_fields(client, meta.api_name))
        except ModuleUnavailable as exc:
            return Target(meta, error=exc)

    return map_at_once(target, resolve_names(names, listing), workers)


def known_modules(store: StateStore, modules: Sequence[str] | None) -> dict[str, ModuleMeta]:
    """The named modules an earlier run described in their state, by the name as given."""
    if not modules:
        return {}
    found: dict[str, ModuleMeta] = {}
    for name, raw in store.module_metas(n.strip() for n in modules if n.strip()).items():
        try:
            found[name] = ModuleMeta.from_api(raw)
        except (KeyError, TypeError, ValueError):
            continue  # an unreadable description: the modules list is asked instead
    return found


@dataclass
class Discovery:
    """What a run extracts, and what it skips without a call (with the reason)."""

    targets: list[Target]
    skipped: list[tuple[ModuleMeta, str]] = field(default_factory=list)


def discover_run(
    client: ZohoClient,
    modules: Sequence[str] | None,
    known: Mapping[str, ModuleMeta] | None = None,
    *,
    workers: int = 1,
) -> Discovery:
    """The run's targets (:func:`discover`, plus the ``Users`` dataset) and its up-front skips.

    Without ``modules``: every data module, then ``Users``; the modules closed to the API or known
    to refuse data calls are skipped, each with its reason. With ``modules``: ``Users`` when named
    (no call: its fields are fixed), and the other names through :func:`discover`, which refuses
    an unknown or unavailable one (:class:`ConfigError`) before any record is read; ``known``
    and ``workers`` (their fields calls at once) as in :func:`discover`.
    """
    if not modules:
        listing = list_modules(client)
        targets = [Target(m) for m in listing if holds_records(m) and skip_reason(m) is None]
        skipped = [(m, why) for m in listing if (why := skip_reason(m)) is not None]
        return Discovery([*targets, Target(USERS_META, fields=users_fields())], skipped)
    names = [n.strip() for n in modules if n.strip()]
    users = any(n.casefold() == USERS.casefold() for n in names)
    rest = [n for n in names if n.casefold() != USERS.casefold()]
    targets = discover(client, rest, known, workers=workers) if rest else []
    if users:
        targets.append(Target(USERS_META, fields=users_fields()))
    return Discovery(targets)


def read_notes(module: str, fields: Sequence[FieldMeta]) -> list[str]:
    """What is unusual about reading ``module`` with these fields, for the catalogue and plan."""
    notes = []
    names = {f.api_name for f in fields}
    if module != USERS and MODIFIED_TIME not in names:
        notes.append("no Modified_Time: read in full every run")
    refused = coql_refused(module, names)
    if refused:
        notes.append(f"COQL refuses {', '.join(refused)}: Records API instead")
    return notes


# --- the catalogue: zoho-crm modules ------------------------------------------------------------


@dataclass(frozen=True)
class ModuleInfo:
    """One row of the catalogue."""

    api_name: str
    module_name: str
    api_supported: bool
    generated_type: str
    field_count: int | None
    readable_field_count: int | None
    record_count: int | None
    readers: list[str] = field(default_factory=list)
    note: str = ""


def _readers(module: ModuleMeta) -> list[str]:
    """Which readers can serve ``module`` (the planner's rules: Bulk where Zoho allows it)."""
    if unavailable_reason(module) is not None:
        return []
    readers = [BULK] if module.bulk_supported else []
    return [*readers, COQL, RECORDS]


def _count_query(api_name: str) -> dict[str, str]:
    # Converted leads included: COQL is assumed to leave them out unless asked.
    return {"select_query": count_query(api_name, None)}


def _parse_count(body: dict[str, Any] | None) -> int:
    """The number in a COQL aggregate answer ``{"data":[{"COUNT(id)": n}]}``; 204 means 0."""
    rows = (body or {}).get("data") or []
    if not rows or not isinstance(rows[0], dict):
        return 0
    for key, value in rows[0].items():
        if key.lower().replace(" ", "") in ("count(id)", "count"):
            return int(value)
    values = [v for v in rows[0].values() if isinstance(v, int | str) and str(v).isdigit()]
    if len(values) == 1:
        return int(values[0])
    raise ValueError(f"no count in the COQL answer: {sorted(rows[0])}")


def _error_text(exc: ZohoAPIError) -> str:
    return exc.code or (f"HTTP {exc.status}" if exc.status else type(exc).__name__)


def build_catalog(client: ZohoClient, *, counts: bool) -> list[ModuleInfo]:
    """List the org's modules with field counts, readers and (with ``counts``) record counts.

    A module whose metadata or count cannot be read keeps a row, with the reason in ``note``;
    an :class:`AuthError` on a count (the COQL scope missing) stops counting for the rest and
    says so. Other errors propagate.
    """
    rows: list[ModuleInfo] = []
    counting = counts
    count_note = ""
    for module in list_modules(client):
        readers = _readers(module)
        notes: list[str] = []
        field_count: int | None = None
        readable: int | None = None
        record_count: int | None = None
        unavailable = unavailable_reason(module)
        if unavailable is not None:
            notes.append(unavailable)
        else:
            if BULK not in readers:
                notes.append("Bulk Read cannot export it")
            try:
                fields = list_fields(client, module.api_name)
                field_count = len(fields)
                schema = module_schema(module.api_name, fields)
                # The columns Zoho fills (and $se_module), not the connector's $raw_values.
                readable = len([f for f in schema.fields if f.api_name != RAW_VALUES])
                notes.extend(read_notes(module.api_name, fields))
                if schema.skipped:
                    notes.append(f"{len(schema.skipped)} field(s) no list API returns")
            except ZohoAPIError as exc:
                readers = []
                notes.append(f"fields unavailable ({_error_text(exc)})")
            if counting and COQL in readers:
                try:
                    record_count = _parse_count(
                        client.post_json("coql", _count_query(module.api_name))
                    )
                except AuthError as exc:
                    counting = False
                    count_note = f"record counts stopped: {exc}"
                    log.warning(count_note)
                except ZohoAPIError as exc:
                    notes.append(f"count failed ({_error_text(exc)})")
                except ValueError as exc:
                    notes.append(str(exc))
        rows.append(
            ModuleInfo(
                api_name=module.api_name,
                module_name=module.module_name,
                api_supported=module.api_supported,
                generated_type=module.generated_type,
                field_count=field_count,
                readable_field_count=readable,
                record_count=record_count,
                readers=readers,
                note="; ".join(notes),
            )
        )
    rows.append(_users_row(client, counting))
    if count_note:
        rows = [
            row
            if row.record_count is not None or not row.readers or row.api_name == USERS
            else _with_note(row, "not counted: COQL refused (scope?)")
            for row in rows
        ]
    return rows


def _users_row(client: ZohoClient, counting: bool) -> ModuleInfo:
    """The ``Users`` dataset's row: read by its own reader; counted (1 credit a page) on request."""
    count: int | None = None
    note = "the org's users (GET users?type=AllUsers), read in full every run"
    if counting:
        try:
            count = _count_users(client)
        except ZohoAPIError as exc:
            note += f"; count failed ({_error_text(exc)})"
    fields = users_fields()
    return ModuleInfo(
        api_name=USERS,
        module_name=USERS,
        api_supported=True,
        generated_type="users",
        field_count=len(fields),
        readable_field_count=len(fields),
        record_count=count,
        readers=["users"],
        note=note,
    )


def _count_users(client: ZohoClient) -> int:
    total, page = 0, 1
    while True:
        body = client.get_json("users", params={"type": "AllUsers", "page": page, "per_page": 200})
        users = (body or {}).get("users") or []
        total += len(users)
        if not users or not ((body or {}).get("info") or {}).get("more_records"):
            return total
        page += 1


def _with_note(row: ModuleInfo, note: str) -> ModuleInfo:
    joined = f"{row.note}; {note}" if row.note else note
    return replace(row, note=joined)


_HEADERS = ("Module", "Name", "Type", "Fields", "Readable", "Records", "Readers", "Note")


def _cells(row: ModuleInfo) -> tuple[str, ...]:
    def num(value: int | None) -> str:
        return "-" if value is None else f"{value:,}"

    return (
        row.api_name,
        row.module_name if row.module_name != row.api_name else "",
        row.generated_type,
        num(row.field_count),
        num(row.readable_field_count),
        num(row.record_count),
        ",".join(row.readers) or "-",
        row.note,
    )


def format_catalog(rows: Sequence[ModuleInfo]) -> str:
    """A plain text table: one line per module, numbers right-aligned, then a summary line."""
    table = [_HEADERS, *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(_HEADERS))]
    numeric = {3, 4, 5}
    lines = []
    for line in table:
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        lines.append("  ".join(cells).rstrip())
    readable = sum(1 for row in rows if row.readers)
    lines.append(f"{counted(len(rows), 'module')}, {readable} readable through the API")
    return "\n".join(lines)
