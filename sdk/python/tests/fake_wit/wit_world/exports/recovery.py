from dataclasses import dataclass
from typing import Protocol, Union

from ..imports import types


@dataclass
class FailureKind_ConnectRefused:
    pass


@dataclass
class FailureKind_ConnectTimeout:
    pass


@dataclass
class FailureKind_Reset:
    pass


@dataclass
class FailureKind_ResponseTimeout:
    pass


@dataclass
class FailureKind_Status:
    value: int


@dataclass
class FailureKind_GrpcStatus:
    value: int


FailureKind = Union[
    FailureKind_ConnectRefused,
    FailureKind_ConnectTimeout,
    FailureKind_Reset,
    FailureKind_ResponseTimeout,
    FailureKind_Status,
    FailureKind_GrpcStatus,
]


@dataclass
class Failure:
    endpoint: int
    kind: FailureKind
    request: types.RequestInfo
    method: str
    replayable: bool
    elapsed_ms: int


@dataclass
class Retry:
    delay_ms: int
    same_endpoint: bool


@dataclass
class Ejection:
    duration_ms: int
    retry: Retry | None


@dataclass
class Decision_Retry:
    value: Retry


@dataclass
class Decision_Eject:
    value: Ejection


@dataclass
class Decision_GiveUp:
    value: int | None


Decision = Union[Decision_Retry, Decision_Eject, Decision_GiveUp]


class PoolRecovery(Protocol):
    pass
