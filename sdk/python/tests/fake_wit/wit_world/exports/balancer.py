from typing import Protocol


class PoolBalancer(Protocol):
    pass
