"""The simulated org's definition: modules, fields, users, loaded from ``fixtures/org.json``.

Each fixture field is Zoho field metadata (the keys ``GET /crm/v8/settings/fields`` returns) plus an
optional ``sim`` object that tells the generator how to make values (never sent to clients). Each
module likewise carries a ``sim`` object with its relative size and display field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

DEFAULT_FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "org.json"

# Zoho's list reads (Records, COQL, Bulk) leave out the values of these types
# (zoho-api.md §5: "List reads leave out subform, multi-select-lookup and multi-user-lookup values").
UNREADABLE_TYPES = frozenset(
    {"subform", "multiselectlookup", "multiuserlookup", "fileupload", "imageupload"}
)

STRING_TYPES = frozenset(
    {
        "text",
        "textarea",
        "email",
        "phone",
        "website",
        "picklist",
        "autonumber",
        "bigint",
        "profileimage",
        "mediumtext",
    }
)

# Types whose values are JSON objects or arrays the store keeps as compact JSON text.
JSON_VALUED_TYPES = frozenset({"event_reminder", "ALARM", "RRULE", "multireminder"})

LOOKUP_TYPE = pa.struct([("id", pa.string()), ("name", pa.string())])
OWNER_TYPE = pa.struct([("id", pa.string()), ("name", pa.string()), ("email", pa.string())])


@dataclass(frozen=True)
class SimUser:
    """One CRM user (``GET /crm/v8/users``)."""

    id: str
    first_name: str
    last_name: str
    full_name: str
    email: str
    role: dict[str, str]
    profile: dict[str, str]
    status: str
    time_zone: str
    created_time: str
    modified_time: str
    confirm: bool = True

    @property
    def active(self) -> bool:
        """Whether the user can own records."""
        return self.status == "active"

    def to_api(self) -> dict[str, Any]:
        """The user as one element of the users response."""
        return {
            "id": self.id,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "full_name": self.full_name,
            "email": self.email,
            "role": dict(self.role),
            "profile": dict(self.profile),
            "status": self.status,
            "time_zone": self.time_zone,
            "confirm": self.confirm,
            "created_time": self.created_time,
            "Modified_Time": self.modified_time,
        }


@dataclass(frozen=True)
class SimField:
    """One field of a module: Zoho's metadata plus generation hints."""

    api_name: str
    data_type: str
    field_label: str
    id: str
    json_type: str | None = None
    length: int | None = None
    decimal_place: int | None = None
    custom_field: bool = False
    read_only: bool = False
    system_mandatory: bool = False
    pick_list_values: tuple[str, ...] = ()
    lookup_module: str | None = None
    return_type: str | None = None
    sim: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def list_readable(self) -> bool:
        """Whether list reads (Records, COQL, Bulk) return this field's values."""
        return self.data_type not in UNREADABLE_TYPES

    @property
    def coql_refused(self) -> bool:
        """Whether COQL refuses this field (400 INVALID_QUERY naming it): line items, participants."""
        return self.sim.get("coql") is False

    @property
    def json_array(self) -> bool:
        """Whether the value goes over JSON as an array of objects (line items, participants);
        the store keeps its compact JSON text (``sim.json_text``)."""
        return self.json_type == "jsonarray" and self.sim.get("json_text") is True

    @property
    def value_type(self) -> str:
        """The type that decides the canonical value: a formula's or rollup's return type, else
        data_type."""
        if self.data_type in ("formula", "rollup_summary"):
            return self.return_type or "text"
        return self.data_type

    @property
    def rich_text(self) -> bool:
        """A rich-text multi-line field (``textarea.type`` "rich_text"): list answers cut it."""
        return (self.raw.get("textarea") or {}).get("type") == "rich_text"

    @property
    def json_valued(self) -> bool:
        """A reminder or recurrence field (ALARM, RRULE, event_reminder, multireminder) whose
        value is a JSON object or array: the store keeps its compact JSON text (line items and
        participants are ``json_array``)."""
        return self.data_type in JSON_VALUED_TYPES

    @property
    def arrow_type(self) -> pa.DataType:
        """The canonical Arrow type of this field's values in the store (docs/simulator.md)."""
        return arrow_type_for(self.value_type)

    def to_api(self) -> dict[str, Any]:
        """The field as one element of the field metadata response (without the ``sim`` hints)."""
        return dict(self.raw)


@dataclass
class SimModule:
    """One module with its fields, in fixture order."""

    api_name: str
    module_name: str
    plural_label: str
    singular_label: str
    id: str
    api_supported: bool
    generated_type: str
    bulk_supported: bool
    fields: list[SimField]
    size_factor: float = 1.0
    display_field: str | None = None
    refuse: str | None = None
    """A module listed as API-supported whose data calls Zoho refuses: the error code its COQL
    calls get (``INVALID_QUERY`` like Email_Analytics, ``INVALID_MODULE`` like CTI_Entry)."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {f.api_name: f for f in self.fields}
        self._by_lower = {f.api_name.lower(): f for f in self.fields}

    @property
    def field_map(self) -> dict[str, SimField]:
        """Fields by api_name."""
        return self._by_name

    def field(self, api_name: str) -> SimField:
        """The field named ``api_name`` (exact case); KeyError if unknown."""
        return self._by_name[api_name]

    def find_field(self, name: str) -> SimField | None:
        """The field named ``name``, matched case-insensitively like Zoho does; None if unknown."""
        return self._by_name.get(name) or self._by_lower.get(name.lower())

    def to_api(self) -> dict[str, Any]:
        """The module as one element of the modules response (without the ``sim`` hints)."""
        return dict(self.raw)


@dataclass
class OrgDef:
    """The whole fixture: org details, users and modules."""

    org: dict[str, Any]
    users: list[SimUser]
    """Every user GET users lists: the fixture's, then ``sim_extra_users`` former users."""
    modules: list[SimModule]
    record_users: list[SimUser] = field(default_factory=list)
    """The fixture's users: the ones generated records name as owner, creator or editor."""

    @property
    def time_zone(self) -> str:
        """The org's IANA time zone name."""
        return str(self.org.get("time_zone", "Asia/Kolkata"))

    @property
    def offset(self) -> timedelta:
        """The org's fixed UTC offset (the fixture's zone has no DST)."""
        text = str(self.org.get("sim_utc_offset", "+05:30"))
        return parse_offset(text)


def arrow_type_for(value_type: str) -> pa.DataType:
    """The canonical Arrow type for a Zoho data_type (unknown types are strings)."""
    if value_type == "integer" or value_type == "long":
        return pa.int64()
    if value_type in ("double", "percent"):
        return pa.float64()
    if value_type == "boolean":
        return pa.bool_()
    if value_type == "date":
        return pa.date32()
    if value_type == "datetime":
        return pa.timestamp("s", tz="UTC")
    if value_type == "multiselectpicklist":
        return pa.list_(pa.string())
    if value_type in ("lookup", "userlookup"):
        return LOOKUP_TYPE
    if value_type == "ownerlookup":
        return OWNER_TYPE
    return pa.string()


def parse_offset(text: str) -> timedelta:
    """``+05:30`` -> timedelta(hours=5, minutes=30)."""
    sign = -1 if text.startswith("-") else 1
    hours, minutes = text.lstrip("+-").split(":")
    return sign * timedelta(hours=int(hours), minutes=int(minutes))


def _field_from_raw(raw: dict[str, Any]) -> SimField:
    sim = dict(raw.get("sim") or {})
    api = {k: v for k, v in raw.items() if k != "sim"}
    lookup = api.get("lookup") or {}
    lookup_module = (lookup.get("module") or {}).get("api_name") if lookup else None
    # A formula's and a rollup's value have the type they return (zoho-api.md §11).
    formula = api.get("formula") or api.get("rollup_summary") or {}
    picks = tuple(
        str(p.get("actual_value", p.get("display_value")))
        for p in api.get("pick_list_values") or []
    )
    return SimField(
        api_name=str(api["api_name"]),
        data_type=str(api["data_type"]),
        field_label=str(api.get("field_label") or api["api_name"]),
        id=str(api.get("id", "")),
        json_type=api.get("json_type"),
        length=api.get("length"),
        decimal_place=api.get("decimal_place"),
        custom_field=bool(api.get("custom_field", False)),
        read_only=bool(api.get("read_only", False)),
        system_mandatory=bool(api.get("system_mandatory", False)),
        pick_list_values=picks,
        lookup_module=lookup_module,
        return_type=formula.get("return_type") if formula else None,
        sim=sim,
        raw=api,
    )


def _module_from_raw(raw: dict[str, Any]) -> SimModule:
    sim = dict(raw.get("sim") or {})
    api = {k: v for k, v in raw.items() if k not in ("sim", "fields")}
    fields = [_field_from_raw(f) for f in raw.get("fields") or []]
    return SimModule(
        api_name=str(api["api_name"]),
        module_name=str(api.get("module_name") or api["api_name"]),
        plural_label=str(api.get("plural_label") or api["api_name"]),
        singular_label=str(api.get("singular_label") or api["api_name"]),
        id=str(api["id"]),
        api_supported=bool(api.get("api_supported", True)),
        generated_type=str(api.get("generated_type") or "default"),
        bulk_supported=bool(sim.get("bulk_supported", True)),
        fields=fields,
        size_factor=float(sim.get("size_factor", 1.0)),
        display_field=sim.get("display_field"),
        refuse=sim.get("refuse"),
        raw=api,
    )


def _user_from_raw(raw: dict[str, Any]) -> SimUser:
    return SimUser(
        id=str(raw["id"]),
        first_name=str(raw.get("first_name", "")),
        last_name=str(raw.get("last_name", "")),
        full_name=str(raw.get("full_name") or f"{raw.get('first_name', '')} {raw['last_name']}"),
        email=str(raw["email"]),
        role=dict(raw.get("role") or {}),
        profile=dict(raw.get("profile") or {}),
        status=str(raw.get("status", "active")),
        time_zone=str(raw.get("time_zone", "Asia/Kolkata")),
        created_time=str(raw.get("created_time", "2020-01-01T09:00:00+05:30")),
        modified_time=str(raw.get("Modified_Time", "2020-01-01T09:00:00+05:30")),
        confirm=bool(raw.get("confirm", True)),
    )


def _former_users(count: int) -> list[SimUser]:
    """``count`` disabled users (people who left), so that GET users takes more than one page of
    200 as in a real org of some age. They own no generated record."""
    return [
        SimUser(
            id=str(5725767000000420001 + i),
            first_name="Former",
            last_name=f"User {i + 1:03d}",
            full_name=f"Former User {i + 1:03d}",
            email=f"former.user{i + 1:03d}@zylkertraders.example",
            role={"name": "Sales Rep", "id": "5725767000000511003"},
            profile={"name": "Standard", "id": "5725767000000611002"},
            status="disabled",
            time_zone="Asia/Kolkata",
            created_time="2020-06-01T09:30:00+05:30",
            modified_time=f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00+05:30",
        )
        for i in range(count)
    ]


def load_orgdef(path: Path | None = None) -> OrgDef:
    """Load and check the fixture (default: ``fixtures/org.json`` of this repository)."""
    data = json.loads((path or DEFAULT_FIXTURE).read_text(encoding="utf-8"))
    users = [_user_from_raw(u) for u in data["users"]]
    orgdef = OrgDef(
        org=dict(data["org"]),
        users=users + _former_users(int(data["org"].get("sim_extra_users", 0))),
        modules=[_module_from_raw(m) for m in data["modules"]],
        record_users=users,
    )
    names = {m.api_name for m in orgdef.modules}
    for module in orgdef.modules:
        if "id" not in module.field_map:
            raise ValueError(f"module {module.api_name} has no id field")
        for f in module.fields:
            if f.data_type == "lookup" and f.lookup_module not in names:
                raise ValueError(f"{module.api_name}.{f.api_name} looks up unknown module")
    if not any(u.active for u in orgdef.users):
        raise ValueError("the fixture needs at least one active user")
    return orgdef


def format_zoho_datetime(value: datetime, offset: timedelta) -> str:
    """A UTC instant as Zoho writes it: ``2024-06-05T02:04:09+05:30`` (seconds, numeric offset)."""
    local = value.astimezone(timezone(offset))
    return local.strftime("%Y-%m-%dT%H:%M:%S") + format_offset(offset)


def format_offset(offset: timedelta) -> str:
    """timedelta(hours=5, minutes=30) -> ``+05:30``."""
    total = int(offset.total_seconds()) // 60
    sign = "-" if total < 0 else "+"
    hours, minutes = divmod(abs(total), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"
