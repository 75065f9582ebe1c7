"""The `recovery-state` export: componentize-py looks for `RecoveryState`
in the main module, which the build's generated entry imports it into."""

from componentize_py_types import Err
from wit_world import exports

from switchyard import _guest


class RecoveryState(exports.RecoveryState):
    """Carries a pool's `switchyard.Recovery` state across a swap."""

    def snapshot(self, pool: object) -> bytes:
        return _guest.snapshot(pool)

    def restore(self, pool: object, state: bytes) -> None:
        _guest.restore(pool, state, Err)
