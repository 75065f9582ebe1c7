"""Probes a health check uses to reach the endpoint under check, and nothing
else.

A probe that gets no answer raises a `ProbeError` subclass (`Refused`,
`Timeout`, `Reset`, `InvalidResponse`, `NotAllowed`) whose text is the
reason to show, so a check reads as the happy path with one `except`:

>>> from switchyard import Verdict, probe
>>> from switchyard.testing import TestHost
>>> _ = TestHost()  # no handler: every probe is refused
>>> try:
...     response = probe.http(probe.HttpRequest("/healthz"))
...     verdict = Verdict.healthy(f"{response.status}")
... except probe.ProbeError as error:
...     verdict = Verdict.unhealthy(str(error))
>>> verdict.reason
'connection refused'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import _backend

__all__ = [
    "DEFAULT_TIMEOUT_MS",
    "HttpRequest",
    "HttpResponse",
    "InvalidResponse",
    "NotAllowed",
    "ProbeError",
    "Refused",
    "Reset",
    "Timeout",
    "http",
    "tcp_connect",
]

DEFAULT_TIMEOUT_MS = 1_000
"""The probe timeout of an `HttpRequest` that does not give one, in milliseconds."""


@dataclass(slots=True)
class HttpRequest:
    """An HTTP/1.1 request to the endpoint under check.

    The path comes first, since it is the one field almost every probe sets.

    >>> from switchyard.probe import HttpRequest
    >>> request = HttpRequest("/healthz", headers=[("accept", "application/json")])
    >>> request.method, request.timeout_ms
    ('GET', 1000)
    """

    path: str = "/"
    """Path and query, starting with `/`."""
    method: str = "GET"
    """The method, such as `GET` or `HEAD`."""
    headers: list[tuple[str, str]] = field(default_factory=list)
    """Extra request headers, as `(name, value)` pairs in the order sent."""
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    """Give up after this many milliseconds (the host caps it at the check's timeout)."""


@dataclass(slots=True)
class HttpResponse:
    """The endpoint's answer to an `HttpRequest`.

    >>> from switchyard.probe import HttpResponse
    >>> response = HttpResponse(200, headers=[("Content-Type", "text/plain")], body=b"ok")
    >>> response.text, response.header("content-type")
    ('ok', 'text/plain')
    """

    status: int
    """The status code."""
    headers: list[tuple[str, str]] = field(default_factory=list)
    """The response headers, as `(name, value)` pairs in the order received."""
    body: bytes = b""
    """The body, cut at 64 KiB."""
    latency_us: int = 0
    """Time from sending the request to the end of the body, in µs."""

    @property
    def text(self) -> str:
        """The body as text, with invalid UTF-8 replaced.

        >>> HttpResponse(200, body=b"up").text
        'up'
        """
        return self.body.decode("utf-8", errors="replace")

    def header(self, name: str) -> str | None:
        """The first header called `name` (case-insensitive), or `None`.

        >>> HttpResponse(200, headers=[("Retry-After", "5")]).header("retry-after")
        '5'
        """
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class ProbeError(Exception):
    """Why a probe got no answer; `str(error)` is a reason to show.

    >>> from switchyard import probe
    >>> str(probe.Timeout())
    'timed out'
    >>> isinstance(probe.NotAllowed("bad path"), probe.ProbeError)
    True
    """

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.args == other.args  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self), self.args))


class Refused(ProbeError):
    """The connection was refused.

    >>> str(Refused())
    'connection refused'
    """

    def __str__(self) -> str:
        return "connection refused"


class Timeout(ProbeError):
    """No answer within the timeout.

    >>> str(Timeout())
    'timed out'
    """

    def __str__(self) -> str:
        return "timed out"


class Reset(ProbeError):
    """The connection broke.

    >>> str(Reset())
    'connection reset'
    """

    def __str__(self) -> str:
        return "connection reset"


class InvalidResponse(ProbeError):
    """The answer was not valid HTTP; `why` says how.

    >>> str(InvalidResponse("bad status line"))
    'invalid response: bad status line'
    """

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why

    def __str__(self) -> str:
        return f"invalid response: {self.why}"


class NotAllowed(ProbeError):
    """The host would not send the request (bad method, path or header);
    the endpoint is not at fault. `why` is the host's reason.

    >>> NotAllowed("header `connection` is reserved").why
    'header `connection` is reserved'
    """

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why

    def __str__(self) -> str:
        return f"not allowed: {self.why}"


def http(request: HttpRequest) -> HttpResponse:
    """Sends one HTTP/1.1 request to the endpoint under check; raises a
    `ProbeError` when no answer comes. Any status is an answer.

    >>> from switchyard import probe
    >>> from switchyard.testing import TestHost
    >>> test_host = TestHost()
    >>> test_host.on_http(lambda request: probe.HttpResponse(200 if request.path == "/up" else 404))
    >>> probe.http(probe.HttpRequest("/up")).status
    200
    """
    return _backend.current.http(request)


def tcp_connect(timeout_ms: int) -> int:
    """Opens and closes a TCP connection to the endpoint under check; the
    connect time in microseconds. Raises a `ProbeError` on failure.

    >>> from switchyard import probe
    >>> from switchyard.testing import TestHost
    >>> test_host = TestHost()
    >>> test_host.on_tcp_connect(lambda timeout_ms: 120)
    >>> probe.tcp_connect(500)
    120
    """
    return _backend.current.tcp_connect(timeout_ms)
