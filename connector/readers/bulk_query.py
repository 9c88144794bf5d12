"""What a Bulk Read asks Zoho for (its field groups and criteria), and the paid jobs that can
serve the same request (:mod:`connector.lake.bulk_jobs`)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from connector.lake.schema import CONVERTED_FIELD
from connector.readers.base import MODIFIED_TIME, split_fields, zoho_time
from connector.zoho.limits import BULK_FIELDS_PER_JOB as MAX_FIELDS

if TYPE_CHECKING:
    from connector.lake.bulk_jobs import BulkJobBook, PaidJob
    from connector.lake.schema import ModuleSchema
    from connector.zoho.http import ZohoClient


def bulk_criteria(since: datetime | None, *, every_lead: bool) -> dict[str, Any] | None:
    """A job's criteria: ``Modified_Time >= since``, and with ``every_lead`` (a module that
    converts records: Leads) ``Converted__s`` true or false.

    Zoho does not say whether Bulk Read exports converted leads; the simulator assumes the least
    convenient reading, that a job leaves them out like the Records API's default unless its
    criteria name ``Converted__s``. Naming it with both values exports every lead either way.
    """
    parts: list[dict[str, Any]] = []
    if since is not None:
        parts.append(
            {
                "field": {"api_name": MODIFIED_TIME},
                "comparator": "greater_equal",
                "value": zoho_time(since),
            }
        )
    if every_lead:
        parts.append(
            {
                "group_operator": "or",
                "group": [
                    {"field": {"api_name": CONVERTED_FIELD}, "comparator": "equal", "value": flag}
                    for flag in (True, False)
                ],
            }
        )
    if len(parts) > 1:
        return {"group_operator": "and", "group": parts}
    return parts[0] if parts else None


def created_time(text: Any) -> datetime | None:
    """Zoho's ``created_time`` of a job (ISO 8601 with the org's offset) in UTC, or None."""
    try:
        when = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return when.astimezone(timezone.utc) if when.tzinfo is not None else None


def bulk_request(
    schema: ModuleSchema, since: datetime | None
) -> tuple[list[list[str]], dict[str, Any] | None]:
    """(the field groups, the criteria) of a Bulk read of ``schema`` from ``since``: what its
    first page's jobs ask Zoho for."""
    # Zoho always adds the id column to a Bulk export; it is not one of the 200 fields.
    groups = split_fields(schema, MAX_FIELDS + 1)
    return groups, bulk_criteria(since, every_lead=schema.hides_converted)


def zoho_now(client: ZohoClient) -> datetime:
    """Zoho's time as its latest answer gave it (this machine's when it gave none): the clock a
    job's age is measured on."""
    return client.server_time() or datetime.now(timezone.utc)


def paid_jobs(
    book: BulkJobBook, schema: ModuleSchema, since: datetime | None, client: ZohoClient
) -> list[PaidJob]:
    """The jobs ``book`` holds that a Bulk read of ``schema`` from ``since`` may take now (by
    :func:`zoho_now`, for their age)."""
    groups, criteria = bulk_request(schema, since)
    return book.usable(groups, criteria, zoho_now(client))
