"""Fake exported interfaces: the state exports' protocols, as
componentize-py generates them here."""

from typing import Protocol


class BalancerState(Protocol):
    pass


class RecoveryState(Protocol):
    pass
