"""What a failed connection to Zoho means, in one line a user can act on.

A call that cannot reach Zoho (DNS, connection refused or timed out, TLS, a proxy) is a network
problem, not a credential one: once its retries are spent it becomes :class:`ZohoUnreachable`
(exit 6), naming the host and what to check, never exit 3 (credentials, scopes, region).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests

from connector.errors import ZohoUnreachable

# A connection that failed, hung or broke off mid-body: worth another attempt.
TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)

_DNS_HINTS = (
    "Name or service not known",
    "nodename nor servname",
    "Temporary failure in name resolution",
    "getaddrinfo failed",
    "NameResolutionError",
    "No address associated with hostname",
)


def what_failed(exc: BaseException) -> str:
    """A few words on how the connection failed (no URL, no query: nothing secret)."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed"
    if isinstance(exc, requests.exceptions.ProxyError):
        return "the proxy refused or failed"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "no answer before the read timeout"
    if any(hint in text for hint in _DNS_HINTS):
        return "DNS lookup failed"
    if "Connection refused" in text or "[Errno 111]" in text:
        return "connection refused"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the connection broke off mid-answer"
    return f"connection failed ({type(exc).__name__})"


def host_of(url: str) -> str:
    """``host[:port]`` of ``url`` (the part worth naming in a message)."""
    return urlsplit(url).netloc or url


def unreachable(host: str, what: str, *, attempts: int, check: str) -> ZohoUnreachable:
    """The one-line error for a host that stayed unreachable after ``attempts`` attempts."""
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    return ZohoUnreachable(
        f"cannot reach Zoho at {host}: {what} (after {tries}); check {check}, DNS, proxy "
        "settings and the firewall; the run can be repeated as it is"
    )
