"""The probe imports, answering with `answer` (a value, or an exception to raise)."""

from dataclasses import dataclass
from typing import Union


@dataclass
class HttpRequest:
    method: str
    path: str
    headers: list[tuple[str, str]]
    timeout_ms: int


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    latency_us: int


@dataclass
class ProbeError_Refused:
    pass


@dataclass
class ProbeError_Timeout:
    pass


@dataclass
class ProbeError_Reset:
    pass


@dataclass
class ProbeError_InvalidResponse:
    value: str


@dataclass
class ProbeError_NotAllowed:
    value: str


ProbeError = Union[ProbeError_Refused, ProbeError_Timeout, ProbeError_Reset, ProbeError_InvalidResponse, ProbeError_NotAllowed]

answer: object = None
sent: list[object] = []


def _answer(request: object) -> object:
    sent.append(request)
    if isinstance(answer, Exception):
        raise answer
    return answer


def http(request: HttpRequest) -> HttpResponse:
    assert isinstance(request, HttpRequest)
    return _answer(request)  # type: ignore[return-value]


def tcp_connect(timeout_ms: int) -> int:
    return _answer(timeout_ms)  # type: ignore[return-value]
