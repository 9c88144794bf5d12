"""The ``Users`` dataset: the org's users, so that the user ids in ``Owner``, ``Created_By`` and
``Modified_By`` can be joined to names.

``GET /crm/v8/users?type=AllUsers&page=N&per_page=200`` (1 credit a page) lists every user, active
or not (a record's creator may have left), while ``info.more_records`` says more follow. Users are
not a module of ``settings/modules``, so their columns are a fixed list of the keys Zoho documents
(below), typed like module fields: ``role`` and ``profile`` keep their id, as lookups do. Keys not
listed are not extracted. An org has at most a few thousand users, so the dataset is read in full
on every run and each run's output replaces the last (see :mod:`connector.run.module_job`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pyarrow as pa

from connector.errors import DataError
from connector.lake.schema import ModuleSchema, batch_from_records, module_schema
from connector.readers.base import ReaderBase
from connector.zoho.metadata import FieldMeta, ModuleMeta

USERS = "Users"
USERS_PER_PAGE = 200
USERS_ENDPOINT = "users"

# (key in Zoho's user object, data_type): the documented keys of GET /users.
_USER_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "bigint"),
    ("full_name", "text"),
    ("first_name", "text"),
    ("last_name", "text"),
    ("email", "email"),
    ("status", "text"),
    ("confirm", "boolean"),
    ("role", "lookup"),
    ("profile", "lookup"),
    ("time_zone", "text"),
    ("created_time", "datetime"),
    ("Modified_Time", "datetime"),
)

USERS_META = ModuleMeta(api_name=USERS, module_name=USERS, plural_label=USERS)
"""``Users`` as the run sees it: not a module of ``settings/modules``, read by its own reader."""


def users_fields() -> list[FieldMeta]:
    """The fields of the ``Users`` dataset."""
    return [FieldMeta(api_name=name, data_type=kind) for name, kind in _USER_FIELDS]


def users_schema() -> ModuleSchema:
    """The Arrow schema of the ``Users`` dataset."""
    return module_schema(USERS, users_fields())


class UsersReader(ReaderBase):
    """Reads every user (``type=AllUsers``), page by page."""

    name = "users"
    ordered = False

    def read(
        self, module: ModuleMeta, schema: ModuleSchema, since: datetime | None
    ) -> Iterator[pa.RecordBatch]:
        """Yield every user (``since`` is ignored: users are read in full)."""
        page = 1
        while True:
            body = self.client.get_json(
                USERS_ENDPOINT,
                params={"type": "AllUsers", "page": page, "per_page": USERS_PER_PAGE},
            )
            self.stats.pages += 1
            rows = _users_of(body)
            if not rows:
                return
            batch = batch_from_records(rows, schema)
            self.stats.rows += batch.num_rows
            self.report_progress()
            yield batch
            info = (body or {}).get("info") or {}
            if not info.get("more_records"):
                return
            page += 1


def _users_of(body: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The user objects of one answer (none for 204)."""
    users = (body or {}).get("users") or []
    if not isinstance(users, list) or not all(
        isinstance(u, dict) and u.get("id") is not None for u in users
    ):
        raise DataError("Zoho's answer to GET users is not a list of users with ids")
    return users
