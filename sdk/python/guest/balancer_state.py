"""The `balancer-state` export: componentize-py looks for `BalancerState`
in the main module, which the build's generated entry imports it into."""

from componentize_py_types import Err
from wit_world import exports

from switchyard import _guest


class BalancerState(exports.BalancerState):
    """Carries a pool's `switchyard.Balancer` state across a swap."""

    def snapshot(self, pool: object) -> bytes:
        return _guest.snapshot(pool)

    def restore(self, pool: object, state: bytes) -> None:
        _guest.restore(pool, state, Err)
