"""ZohoClient: one session, timeouts, retries, the token on every call, and the credit meter.

Each call is an :class:`ApiRequest` priced by :func:`call_cost` (Zoho's figures live in
:mod:`connector.zoho.limits`); :mod:`connector.zoho.responses` maps Zoho's answers to errors,
:mod:`connector.zoho.retry` decides when a failed call is tried again, and
:mod:`connector.zoho.pacing` holds the org's shared limits: calls in flight (lowered while 429s
come) and Bulk downloads a minute.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type

from connector.config import Settings
from connector.errors import (
    AuthError,
    DataError,
    FatalAPIError,
    RetriableAPIError,
)
from connector.redact import redact
from connector.zoho import limits
from connector.zoho.auth import TokenManager
from connector.zoho.endpoints import (
    BULK_PATH,
    Endpoints,
    region_for_api_domain,
    relative_path,
    resolve_endpoints,
)
from connector.zoho.meter import CreditMeter
from connector.zoho.network import TRANSPORT_ERRORS, host_of, unreachable, what_failed
from connector.zoho.pacing import ConcurrencyLimiter, DownloadPacer
from connector.zoho.responses import INVALID_TOKEN_CODES, parse_error_body, raise_for_response
from connector.zoho.retry import CallRetries

log = logging.getLogger(__name__)

T = TypeVar("T")

CHUNK_SIZE = 1024 * 1024
# A COQL query's LIMIT clause: ``limit N`` or ``limit OFFSET, N``.
_COQL_LIMIT = re.compile(r"\blimit\s+(\d+)(?:\s*,\s*(\d+))?", re.IGNORECASE)
_WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


# ----------------------------------------------------------------------------------------------
# Prices (the figures are Zoho's, in connector.zoho.limits)


def coql_query_credits(select_query: str) -> int:
    """Credits of one COQL call by its query's LIMIT (Zoho's default LIMIT when it has none)."""
    matches = list(_COQL_LIMIT.finditer(select_query))
    limit = limits.COQL_DEFAULT_LIMIT
    if matches:
        last = matches[-1]
        limit = int(last.group(2) or last.group(1))
    return limits.coql_limit_credits(limit)


def _write_credits(method: str, params: Mapping[str, Any] | None, body: Any) -> int:
    """Credits of a write: per 10 records of its body (or ids of a DELETE), at least 1."""
    records = 1
    if isinstance(body, Mapping) and isinstance(body.get("data"), list):
        records = len(body["data"])
    elif method == "DELETE" and params and params.get("ids"):
        ids = params["ids"]
        records = len(ids) if isinstance(ids, (list, tuple)) else len(str(ids).split(","))
    return max(1, math.ceil(records / limits.WRITE_RECORDS_PER_CREDIT))


def call_cost(
    method: str, path: str, params: Mapping[str, Any] | None = None, body: Any = None
) -> tuple[str, int]:
    """Return ``(kind, credits)`` of one call by Zoho's price table.

    Kinds: metadata, records, deleted, coql, bulk_create, bulk_status, bulk_download, write.
    """
    method = method.upper()
    rel, is_bulk = relative_path(path)
    if is_bulk:
        match = BULK_PATH.match("/" + rel)
        assert match is not None
        if match.group("result"):
            return "bulk_download", limits.BULK_DOWNLOAD_CREDITS
        if method == "POST" and not match.group("job"):
            return "bulk_create", limits.BULK_CREATE_CREDITS
        return "bulk_status", limits.BULK_STATUS_CREDITS
    first = rel.split("/", 1)[0].lower()
    if first == "coql":
        query = body.get("select_query", "") if isinstance(body, Mapping) else ""
        return "coql", coql_query_credits(str(query))
    if method in _WRITE_METHODS:
        return "write", _write_credits(method, params, body)
    if first in ("settings", "users", "org"):
        return "metadata", limits.METADATA_CREDITS
    parts = rel.split("/")
    if len(parts) >= 2 and parts[1] == "deleted":
        return "deleted", limits.DELETED_PAGE_CREDITS
    if params and params.get("cvid"):
        return "records", limits.RECORDS_CVID_CREDITS
    return "records", limits.RECORDS_PAGE_CREDITS


class ConnectionFailed(RetriableAPIError):
    """An attempt that never got an answer from the host: retried, then :class:`ZohoUnreachable`."""

    def __init__(self, message: str, *, host: str, what: str, url: str) -> None:
        super().__init__(message, url=url)
        self.host = host
        self.what = what


# ----------------------------------------------------------------------------------------------
# The client


def _body_of(response: requests.Response) -> bytes | None:
    # Zoho answers "no rows" with 204 and an empty body, and "unchanged" with 304.
    if response.status_code in (204, 304):
        return None
    return response.content


def _safe_url(url: str) -> str:
    """The URL for logs: no query string (it may carry ids or tokens), secrets masked."""
    parts = urlsplit(url)
    return redact(f"{parts.scheme}://{parts.netloc}{parts.path}")


@dataclass(frozen=True)
class ApiRequest:
    """One call as the client sends it on every attempt, and its price (``kind``, ``credits``)."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json_body: Any = None
    headers: Mapping[str, str] | None = None
    stream: bool = False
    kind: str = field(init=False)
    credits: int = field(init=False)

    def __post_init__(self) -> None:
        kind, credits = call_cost(self.method, self.path, self.params, self.json_body)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "credits", credits)

    def encode(self, token: str) -> tuple[dict[str, str], bytes | None]:
        """The headers (with ``token``) and the body bytes to send."""
        headers = {"Authorization": f"Zoho-oauthtoken {token}", "Accept": "application/json"}
        data: bytes | None = None
        if self.json_body is not None:
            # Bulk Read create answers 415 without an explicit JSON content type.
            headers["Content-Type"] = "application/json"
            data = json.dumps(self.json_body).encode("utf-8")
        if self.headers:
            headers.update(self.headers)
        return headers, data


class ZohoClient:
    """Calls Zoho's API with a valid token, retries transient failures and meters credits."""

    def __init__(
        self,
        settings: Settings,
        *,
        session: requests.Session | None = None,
        tokens: TokenManager | None = None,
        meter: CreditMeter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        endpoints: Endpoints | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        tuning = settings.tuning
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            size = max(10, settings.tuning.workers * 2)
            adapter = requests.adapters.HTTPAdapter(pool_connections=size, pool_maxsize=size)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self.session = session
        self.endpoints = endpoints or resolve_endpoints(settings)
        self.tokens = tokens or TokenManager(settings, self.endpoints, session, sleep=sleep)
        self.meter = meter or CreditMeter()
        self.tokens.add_refresh_listener(self.meter.record_token_refresh)
        self._sleep = sleep
        self._timeout = (tuning.http_connect_timeout, tuning.http_read_timeout)
        # Per org, so shared by every worker of the run (they all use this client).
        self.limiter = ConcurrencyLimiter(tuning.workers * tuning.group_calls)
        self.pacer = DownloadPacer(tuning.downloads_per_minute, clock=clock, sleep=sleep)
        self._server_time: datetime | None = None
        self._server_time_lock = threading.Lock()

    @property
    def api_domain(self) -> str:
        """The API host in use: the one named with the token when honoured, else the table's."""
        return self.tokens.api_domain or self.endpoints.api_domain

    def server_time(self) -> datetime | None:
        """The latest ``Date`` header Zoho answered with (UTC, whole seconds), or None if none.

        Every answer comes from before the moment this is called, so the value is a lower bound
        of the server's clock now: a record modified from now on gets a ``Modified_Time`` at or
        after it (give or take the clock skew between Zoho's hosts).
        """
        with self._server_time_lock:
            return self._server_time

    def _note_server_time(self, response: requests.Response) -> None:
        text = response.headers.get("Date")
        if not text:
            return
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return
        if when.tzinfo is None:  # "-0000" means UTC with an unknown source zone
            when = when.replace(tzinfo=timezone.utc)
        when = when.astimezone(timezone.utc)
        with self._server_time_lock:
            if self._server_time is None or when > self._server_time:
                self._server_time = when

    def url(self, path: str) -> str:
        """Absolute URL of ``path``: ``/crm/...`` as is on the API domain, others under /crm/{v}/."""
        if path.startswith(("http://", "https://")):
            host = urlsplit(path).netloc
            known = region_for_api_domain(path) is not None
            if host != urlsplit(self.api_domain).netloc and not known:
                raise FatalAPIError(
                    f"refusing to send the access token to {host}, which is not the API host"
                )
            return path
        if path.startswith("/"):
            return f"{self.api_domain}{path}"
        return f"{self.api_domain}/crm/{self.settings.api_version}/{path}"

    # -- public calls --------------------------------------------------------------------------

    def get_json(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """GET ``path`` and return its JSON object, or None for 204 and 304."""
        return self._call(ApiRequest("GET", path, params, headers=headers), self._json_of("GET"))

    def post_json(
        self, path: str, body: Any, *, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any] | None:
        """POST ``body`` as JSON to ``path`` and return the JSON object answer, or None for 204."""
        return self._call(
            ApiRequest("POST", path, json_body=body, headers=headers), self._json_of("POST")
        )

    def get_body(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> bytes | None:
        """GET ``path`` and return the raw body of its answer, or None for 204 and 304.

        For the record pages, which :mod:`connector.readers.jsonpage` decodes straight into Arrow.
        """
        return self._call(ApiRequest("GET", path, params, headers=headers), _body_of)

    def post_body(
        self, path: str, body: Any, *, headers: Mapping[str, str] | None = None
    ) -> bytes | None:
        """POST ``body`` as JSON to ``path`` and return the raw answer, or None for 204."""
        return self._call(ApiRequest("POST", path, json_body=body, headers=headers), _body_of)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Make one call (retried, mapped, metered) and return the successful response."""
        return self._call(ApiRequest(method, path, params, json_body, headers), lambda r: r)

    def download(self, path: str, dest: BinaryIO) -> int:
        """Stream the body of ``GET path`` into ``dest``; return the bytes written.

        A retry truncates ``dest`` and starts over.
        """

        def consume(response: requests.Response) -> int:
            dest.seek(0)
            dest.truncate()
            written = 0
            try:
                for chunk in response.iter_content(CHUNK_SIZE):
                    if chunk:
                        dest.write(chunk)
                        written += len(chunk)
            except TRANSPORT_ERRORS as exc:
                raise RetriableAPIError(
                    f"the download from {_safe_url(response.url or path)} broke off "
                    f"({type(exc).__name__})",
                    url=_safe_url(response.url or path),
                ) from None
            finally:
                response.close()
            return written

        return self._call(ApiRequest("GET", path, headers={"Accept": "*/*"}, stream=True), consume)

    def close(self) -> None:
        """Close the session if this client created it."""
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> ZohoClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- machinery -----------------------------------------------------------------------------

    def _json_of(self, method: str) -> Callable[[requests.Response], dict[str, Any] | None]:
        def parse(response: requests.Response) -> dict[str, Any] | None:
            # Zoho answers "no rows" with 204 and an empty body, and "unchanged" with 304.
            if response.status_code in (204, 304):
                return None
            url = _safe_url(response.url or "")
            try:
                body = response.json()
            except ValueError:
                start = redact(response.text[:40]) if response.text else ""
                raise DataError(
                    f"Zoho answered {method} {url} with HTTP {response.status_code} but the body "
                    f"is not JSON (it starts {start!r})"
                ) from None
            if not isinstance(body, dict):
                raise DataError(
                    f"Zoho answered {method} {url} with HTTP {response.status_code} but the body "
                    f"is a JSON {type(body).__name__}, not an object"
                )
            return body

        return parse

    def _call(self, request: ApiRequest, consume: Callable[[requests.Response], T]) -> T:
        """Send ``request`` (tried again by :class:`CallRetries`' rules), ``consume`` its answer.

        tenacity runs the loop; :class:`CallRetries` is the policy (how long to wait after each
        failure, and when to give up, by raising). Each attempt holds a slot of the org's
        :class:`ConcurrencyLimiter` (a 429 lowers it); a Bulk result download first waits for
        the :class:`DownloadPacer`.
        """
        download = request.kind == "bulk_download"
        retries = CallRetries(self.settings.tuning, download=download, lockout=self.pacer.lockout)

        def attempt() -> T:
            if download:
                self.pacer.acquire()
            ticket = self.limiter.acquire()
            try:
                result = consume(self._send_authorised(request))
            except RetriableAPIError as exc:
                throttled = exc.status == 429
                self.limiter.release(ticket, throttled=throttled)
                if throttled and download:
                    self.pacer.refused(exc.retry_after)
                raise
            except BaseException:
                self.limiter.release(ticket)
                raise
            self.limiter.release(ticket, served=True)
            return result

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            assert isinstance(exc, RetriableAPIError)
            seconds = retries.wait_after(exc)  # raises when the call gives up
            retries.log(
                exc.url or _safe_url(self.url(request.path)), exc, seconds, self.limiter.limit
            )
            return seconds

        def sleep(seconds: float) -> None:
            if seconds > 0:  # a refused download waits in the pacer, not here
                self._sleep(seconds)

        retrying = Retrying(
            retry=retry_if_exception_type(RetriableAPIError), wait=wait, sleep=sleep, reraise=True
        )
        try:
            return retrying(attempt)
        except ConnectionFailed as exc:
            # Every attempt failed before Zoho answered: the network, not the credentials.
            raise unreachable(
                exc.host,
                exc.what,
                attempts=retries.failures,
                check="APIDomain (or Region and InstanceType)",
            ) from None

    def _send_authorised(self, request: ApiRequest) -> requests.Response:
        """One attempt: send with a valid token and map Zoho's answer to an error or a success.

        When Zoho refuses the token as invalid (it expired early, or was revoked), the attempt
        refreshes it once and sends again, outside the normal attempts: a token may expire again
        during a long 429/5xx retry loop, but a freshly obtained token refused at once means
        something other than expiry is wrong.
        """
        response, safe, refused = self._send_with_token(request)
        if refused:
            log.info("access token refused (%s); refreshing and retrying %s", refused, safe)
            response, safe, refused = self._send_with_token(request)
            if refused:
                raise AuthError(
                    f"Zoho refused a freshly obtained access token ({refused}): check that Region "
                    "and InstanceType match the org the refresh token belongs to"
                )
        try:
            raise_for_response(request.method, safe, response)
        except BaseException:
            response.close()
            raise
        return response

    def _send_with_token(self, request: ApiRequest) -> tuple[requests.Response, str, str | None]:
        """Send with the current token: (response, URL for logs, code if Zoho refused the token).

        A refused token is invalidated (so the next ``access_token()`` refreshes) and its response
        closed.
        """
        token = self.tokens.access_token()
        url = self.url(request.path)
        safe = _safe_url(url)
        response = self._send(request, url, safe, token)
        if response.status_code == 401:
            code, _, _ = parse_error_body(response)
            if code in INVALID_TOKEN_CODES:
                response.close()
                self.tokens.invalidate(token)
                return response, safe, code
        return response, safe, None

    def _send(self, request: ApiRequest, url: str, safe_url: str, token: str) -> requests.Response:
        """Send once, holding the call's credits against the budget; meter it if Zoho served it."""
        headers, data = request.encode(token)
        credits = request.credits
        self.meter.reserve(credits)
        try:
            log.debug("%s %s", request.method, safe_url)
            try:
                response = self.session.request(
                    request.method,
                    url,
                    params=dict(request.params) if request.params else None,
                    data=data,
                    headers=headers,
                    timeout=self._timeout,
                    stream=request.stream,
                )
            except TRANSPORT_ERRORS as exc:
                raise ConnectionFailed(
                    f"{request.method} {safe_url} failed: {type(exc).__name__}",
                    host=host_of(url),
                    what=what_failed(exc),
                    url=safe_url,
                ) from None
            self._note_server_time(response)
            if 200 <= response.status_code < 300 or response.status_code == 304:
                self.meter.record(request.kind, credits)
            return response
        finally:
            self.meter.release(credits)
