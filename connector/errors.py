"""The connector's error hierarchy, grouped by what the caller should do.

::

    ConnectorError
    ├── ConfigError                 bad connection string or settings: exit 2, names the key
    ├── AuthError                   refresh failed, scope missing, token revoked: exit 3
    ├── ZohoAPIError                any error answer from Zoho (status, code, url, details)
    │   ├── RetriableAPIError       429 (concurrency), 5xx, connection reset: retried with backoff
    │   ├── CreditsExhausted        the daily API credit budget is spent: stop cleanly, resumable
    │   └── FatalAPIError           other 4xx
    │       └── ModuleUnavailable   skip this module, report it, go on with the rest
    ├── DataError                   a value or payload that cannot be converted (module, field, id)
    ├── LockError                   another extract holds this module's lock in this output
    ├── BudgetExceeded              --max-credits would be passed: stop cleanly, resumable
    ├── ZohoUnreachable             DNS, connection refused or timed out, TLS: exit 6 (network)
    ├── OutputWriteError            no space left, quota, I/O error writing the output: exit 7
    └── StopRequested               SIGINT or SIGTERM: no new call starts; exit 130 or 143

Messages are one line, say what to fix, and never contain a secret: callers pass values that
may be secret through :func:`connector.redact.redact` before building a message.
"""

from __future__ import annotations

from typing import Any


class ConnectorError(Exception):
    """Base of every error the connector raises on purpose."""

    exit_code: int = 1


class ConfigError(ConnectorError):
    """The settings are wrong: a key is missing, misspelled, duplicated or has a bad value."""

    exit_code = 2


class AuthError(ConnectorError):
    """A token could not be obtained or was refused: the user must fix a credential or region."""

    exit_code = 3


class ZohoAPIError(ConnectorError):
    """An error answer from Zoho's API, keeping what Zoho said about it."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        url: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.url = url
        self.details = details


class RetriableAPIError(ZohoAPIError):
    """A transient failure (429 for concurrency, 5xx, a dropped connection): try again later.

    ``retry_after`` holds the seconds Zoho asked to wait (a ``Retry-After`` header), if any.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.retry_after = retry_after


class CreditsExhausted(ZohoAPIError):
    """Zoho refused the call because the org's daily API credits are spent."""

    exit_code = 4


class FatalAPIError(ZohoAPIError):
    """A 4xx answer that retrying will not fix."""


class ModuleUnavailable(FatalAPIError):
    """This module cannot be read (not supported, no permission): skip it and report it."""


class DataError(ConnectorError):
    """A value or a response that cannot be converted, with the module, field and record id."""

    def __init__(
        self,
        message: str,
        *,
        module: str | None = None,
        field: str | None = None,
        record_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.module = module
        self.field = field
        self.record_id = record_id


class LockError(ConnectorError):
    """Another extract is writing this module into the same output."""

    exit_code = 5


class BudgetExceeded(ConnectorError):
    """The run stopped before spending more API credits than ``--max-credits`` allows."""

    exit_code = 4


class ZohoUnreachable(ConnectorError):
    """Zoho's accounts server or API host could not be reached (DNS, refused, timed out, TLS).

    A network problem, not a credential: exit 6, so a scheduler can retry it apart from exit 3.
    """

    exit_code = 6


class OutputWriteError(ConnectorError):
    """Writing the output failed mid-run (no space left, quota exceeded, I/O error): exit 7.

    Nothing partial is committed; a rerun with space resumes from the last commit.
    """

    exit_code = 7


class StopRequested(ConnectorError):
    """The run was asked to stop (SIGINT, SIGTERM): no new module or paid call starts.

    ``exit_code`` is the shell's for the signal: 130 for SIGINT, 143 for SIGTERM.
    """

    exit_code = 130

    def __init__(self, message: str, *, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code
