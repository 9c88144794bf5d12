"""Modules and fields of real orgs that do not fit the common shape, known before the first call.

Zoho lists some modules as API-supported that refuse every data call, some fields that COQL
refuses, and some modules without ``Modified_Time``. Each list below is the connector's prior
knowledge (from Zoho's documentation and peer connectors); what is not listed is learned at run
time from Zoho's answer (:func:`refused_column`, :func:`refuses_module`), at the cost of one
failed call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.errors import ZohoAPIError

# Listed by settings/modules with api_supported true, yet every data call fails: COQL answers
# INVALID_QUERY for the first three, and CTI_Entry answers INVALID_MODULE (peer connectors).
UNREADABLE_MODULES: Mapping[str, str] = {
    "Email_Analytics": "Zoho refuses its data calls (INVALID_QUERY) although it is listed as "
    "API-supported",
    "Email_Template_Analytics": "Zoho refuses its data calls (INVALID_QUERY) although it is "
    "listed as API-supported",
    "Functions__s": "Zoho refuses its data calls (INVALID_QUERY) although it is listed as "
    "API-supported",
    "CTI_Entry": "Zoho refuses its data calls (INVALID_MODULE) although it is listed as "
    "API-supported",
}

# Fields COQL refuses with 400 INVALID_QUERY naming the column (line items, participants,
# comments, CTI entries); the Records API returns them.
COQL_REFUSED_FIELDS: Mapping[str, frozenset[str]] = {
    "Events": frozenset({"Participants"}),
    "Quotes": frozenset({"Product_Details"}),
    "Sales_Orders": frozenset({"Product_Details"}),
    "Purchase_Orders": frozenset({"Product_Details"}),
    "Invoices": frozenset({"Product_Details"}),
    "Price_Books": frozenset({"Pricing_Details"}),
    "Cases": frozenset({"Comments"}),
    "Solutions": frozenset({"Comments"}),
    "Calls": frozenset({"CTI_Entry"}),
}

# The error codes with which Zoho refuses a whole module's data calls (besides the ones the
# client already turns into ModuleUnavailable).
_MODULE_REFUSAL_CODES = frozenset({"INVALID_QUERY"})


def coql_refused(module: str, field_names: set[str] | frozenset[str]) -> list[str]:
    """The fields of ``module`` (among ``field_names``) that COQL is known to refuse, sorted."""
    return sorted(COQL_REFUSED_FIELDS.get(module, frozenset()) & field_names)


def _details(exc: ZohoAPIError) -> Mapping[str, Any]:
    return exc.details if isinstance(exc.details, Mapping) else {}


def refused_column(exc: ZohoAPIError, asked: set[str] | frozenset[str]) -> str | None:
    """The column a COQL ``INVALID_QUERY`` names, when it is one of the columns ``asked`` for.

    Zoho names the column in ``details.column_name``; anything else (a syntax error, a refused
    module) gives None.
    """
    if exc.code != "INVALID_QUERY":
        return None
    name = _details(exc).get("column_name")
    if isinstance(name, str):
        for column in asked:
            if column.lower() == name.lower():
                return column
    return None


def refuses_module(exc: ZohoAPIError) -> bool:
    """Whether a data call's error says the module itself cannot be read this way.

    A COQL ``INVALID_QUERY`` that names no column is how Zoho refuses modules such as
    ``Email_Analytics``; the caller has already ruled out a refused column.
    """
    return exc.code in _MODULE_REFUSAL_CODES and not _details(exc).get("column_name")
