"""A tiny scripted HTTP transport for unit tests: no sockets, every request recorded."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import ProtocolError

Reply = requests.Response | BaseException
Handler = Callable[[requests.PreparedRequest], Reply]


def response(
    status: int = 200,
    json_body: Any = None,
    *,
    body: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
) -> requests.Response:
    """Build a finished response with a JSON body (or raw ``body``)."""
    resp = requests.Response()
    resp.status_code = status
    if body is None:
        body = b"" if json_body is None else json.dumps(json_body).encode("utf-8")
    resp._content = body.encode("utf-8") if isinstance(body, str) else body
    setattr(resp, "_content_consumed", True)  # noqa: B010 - a private flag of requests
    resp.headers = CaseInsensitiveDict(headers or {})
    if json_body is not None and "Content-Type" not in resp.headers:
        resp.headers["Content-Type"] = "application/json"
    resp.encoding = "utf-8"
    return resp


class _BrokenRaw:
    """A raw stream that yields some chunks, then drops the connection."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = list(chunks)

    def stream(self, chunk_size: int, decode_content: bool = True) -> Iterator[bytes]:
        yield from self._chunks
        raise ProtocolError("Connection broken: IncompleteRead")

    def close(self) -> None:
        """Nothing to close."""

    def release_conn(self) -> None:
        """Nothing to release."""


def broken_stream(status: int = 200, chunks: Iterable[bytes] = (b"partial",)) -> requests.Response:
    """A response whose body breaks off after ``chunks`` (as a dropped connection does)."""
    resp = requests.Response()
    resp.status_code = status
    resp.raw = _BrokenRaw(chunks)
    setattr(resp, "_content", False)  # noqa: B010 - requests: "not read yet"
    setattr(resp, "_content_consumed", False)  # noqa: B010
    resp.headers = CaseInsensitiveDict({})
    return resp


class FakeAdapter(BaseAdapter):
    """Answers each request from a script (a list of replies) or a handler function."""

    def __init__(
        self, script: Iterable[Reply] | None = None, handler: Handler | None = None
    ) -> None:
        super().__init__()
        self.script = list(script or [])
        self.handler = handler
        self.requests: list[requests.PreparedRequest] = []
        self.lock = threading.Lock()

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        with self.lock:
            self.requests.append(request)
            if self.handler is not None:
                reply: Reply = self.handler(request)
            elif self.script:
                reply = self.script.pop(0)
            else:
                raise AssertionError(f"unexpected request {request.method} {request.url}")
        if isinstance(reply, BaseException):
            raise reply
        reply.request = request
        reply.url = request.url or ""
        return reply

    def close(self) -> None:
        """Nothing to close."""


def fake_session(
    script: Iterable[Reply] | None = None, handler: Handler | None = None
) -> tuple[requests.Session, FakeAdapter]:
    """A real ``requests.Session`` whose every request goes to a :class:`FakeAdapter`."""
    adapter = FakeAdapter(script, handler)
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session, adapter


def form_of(request: requests.PreparedRequest) -> dict[str, str]:
    """The url-encoded form body of a request, as a flat dict."""
    body = request.body or ""
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    return {key: values[0] for key, values in parse_qs(body).items()}


def path_of(request: requests.PreparedRequest) -> str:
    """The path of a request's URL."""
    return urlsplit(request.url or "").path


def token_ok(token: str = "1000.access.token", **extra: Any) -> requests.Response:
    """A successful refresh-grant answer."""
    body = {"access_token": token, "token_type": "Bearer", "expires_in": 3600, **extra}
    return response(200, body)
