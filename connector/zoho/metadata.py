"""Modules and fields as typed models, and their discovery through Zoho's metadata APIs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connector.errors import DataError
from connector.zoho.limits import BULK_UNSUPPORTED_MODULES

if TYPE_CHECKING:
    from connector.zoho.http import ZohoClient


@dataclass(frozen=True)
class FieldMeta:
    """One field of a module, as ``GET /crm/v8/settings/fields?module=`` describes it."""

    api_name: str
    data_type: str
    json_type: str | None = None
    decimal_place: int | None = None
    length: int | None = None
    custom_field: bool = False
    read_only: bool = False
    lookup_module: str | None = None
    # For formula and rollup-summary fields, the type of the value they return.
    return_type: str | None = None
    # A rich-text multi-line field (``textarea.type`` "rich_text"): list answers cut it.
    rich_text: bool = False
    # A currency field's ``currency.precision``, which may exceed ``decimal_place``.
    currency_precision: int | None = None

    @classmethod
    def from_api(cls, raw: dict[str, Any]) -> FieldMeta:
        """Build from one element of the ``fields`` array of the field metadata response."""
        lookup = raw.get("lookup") or {}
        lookup_module = (lookup.get("module") or {}).get("api_name") if lookup else None
        # A rollup summary names its type like a formula does (zoho-api.md §11).
        formula = raw.get("formula") or raw.get("rollup_summary") or {}
        decimal_place = raw.get("decimal_place")
        length = raw.get("length")
        textarea = raw.get("textarea") or {}
        precision = (raw.get("currency") or {}).get("precision")
        return cls(
            api_name=str(raw["api_name"]),
            data_type=str(raw.get("data_type") or "text"),
            json_type=raw.get("json_type"),
            decimal_place=int(decimal_place) if decimal_place is not None else None,
            length=int(length) if length is not None else None,
            custom_field=bool(raw.get("custom_field", False)),
            read_only=bool(raw.get("read_only", False)),
            lookup_module=lookup_module,
            return_type=formula.get("return_type") if formula else None,
            rich_text=raw.get("data_type") == "rich_text" or textarea.get("type") == "rich_text",
            currency_precision=int(precision) if precision is not None else None,
        )


@dataclass(frozen=True)
class ModuleMeta:
    """One module, as ``GET /crm/v8/settings/modules`` describes it."""

    api_name: str
    module_name: str
    plural_label: str = ""
    api_supported: bool = True
    generated_type: str = "default"
    id: str | None = None
    fields: tuple[FieldMeta, ...] = field(default=(), compare=False)

    @property
    def bulk_supported(self) -> bool:
        """Whether Bulk Read can export this module."""
        return self.api_name not in BULK_UNSUPPORTED_MODULES and self.generated_type in (
            "default",
            "custom",
        )

    @classmethod
    def from_api(cls, raw: dict[str, Any]) -> ModuleMeta:
        """Build from one element of the ``modules`` array of the modules response."""
        return cls(
            api_name=str(raw["api_name"]),
            module_name=str(raw.get("module_name") or raw["api_name"]),
            plural_label=str(raw.get("plural_label") or ""),
            api_supported=bool(raw.get("api_supported", False)),
            generated_type=str(raw.get("generated_type") or "default"),
            id=str(raw["id"]) if raw.get("id") is not None else None,
        )

    def to_api(self) -> dict[str, Any]:
        """The module as the modules response gives it (what :meth:`from_api` reads back)."""
        return {
            "api_name": self.api_name,
            "module_name": self.module_name,
            "plural_label": self.plural_label,
            "api_supported": self.api_supported,
            "generated_type": self.generated_type,
            "id": self.id,
        }


def _items(body: dict[str, Any] | None, key: str, endpoint: str) -> list[dict[str, Any]]:
    """The list under ``key`` of a metadata answer, or a DataError that names the endpoint."""
    items = (body or {}).get(key, [])
    if not isinstance(items, list) or not all(
        isinstance(item, dict) and isinstance(item.get("api_name"), str) for item in items
    ):
        raise DataError(
            f"Zoho's answer to {endpoint} is not a list of {key} with api_name: "
            "check APIDomain points at a Zoho CRM API host"
        )
    return items


def list_modules(client: ZohoClient) -> list[ModuleMeta]:
    """Return every module the org reports, in Zoho's order (1 credit)."""
    body = client.get_json("settings/modules")
    return [ModuleMeta.from_api(raw) for raw in _items(body, "modules", "settings/modules")]


def list_fields(client: ZohoClient, module: str) -> list[FieldMeta]:
    """Return every field of ``module`` in Zoho's order (1 credit).

    Asks with ``type=all``: without it Zoho lists only the fields in some layout, and a field
    removed from every layout still holds data that every read returns. Zoho answers 204 for
    some modules' metadata; that reads as "no fields".
    """
    body = client.get_json("settings/fields", params={"module": module, "type": "all"})
    endpoint = f"settings/fields?module={module}&type=all"
    try:
        return [FieldMeta.from_api(raw) for raw in _items(body, "fields", endpoint)]
    except (TypeError, ValueError) as error:
        raise DataError(f"Zoho's answer to {endpoint} has a malformed field: {error}") from None
