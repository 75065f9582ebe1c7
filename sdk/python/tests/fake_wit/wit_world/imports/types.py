from dataclasses import dataclass
from enum import Enum


class Health(Enum):
    HEALTHY = 0
    DEGRADED = 1
    UNHEALTHY = 2
    UNKNOWN = 3


class Priority(Enum):
    P0 = 0
    P1 = 1
    P2 = 2
    P3 = 3
    P4 = 4


@dataclass
class Endpoint:
    id: int
    address: str
    weight: int
    zone: str | None
    labels: list[tuple[str, str]]


@dataclass
class Load:
    in_flight: int
    capacity: int
    ewma_latency_us: int
    success_permille: int
    health: Health


@dataclass
class RequestInfo:
    priority: Priority
    attempt: int
    hash: int | None
