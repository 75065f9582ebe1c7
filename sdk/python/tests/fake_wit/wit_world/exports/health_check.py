from dataclasses import dataclass
from typing import Protocol

from ..imports import types


@dataclass
class Verdict:
    health: types.Health
    reason: str


class PoolCheck(Protocol):
    pass
