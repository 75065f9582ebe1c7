"""The `recovery` export componentize-py looks for: `PoolRecovery`, one per
pool, holding the plugin's `switchyard.Recovery` object."""

from componentize_py_types import Err
from wit_world.exports import recovery as wit
from wit_world.imports import host as wit_host
from wit_world.imports import store as wit_store

from switchyard import ConfigError, GiveUp, Recovery, _guest

_guest.bind_host(wit_host, None, Err, wit_store)


class PoolRecovery(wit.PoolRecovery):
    """One pool's recovery policy. An exception from the plugin gives up
    (the client gets the endpoint's own response) and is logged once."""

    def __init__(self, plugin: Recovery) -> None:
        self._plugin = plugin
        self._faults = _guest.Faults(plugin)

    @classmethod
    def create(cls, config: str) -> "PoolRecovery":
        try:
            return cls(_guest.create(Recovery, config))
        except ConfigError as error:
            raise Err(str(error)) from None

    def on_failure(self, failure: object) -> object:
        try:
            decision = self._plugin.on_failure(_guest.failure_from_wit(failure))
            return _guest.decision_to_wit(decision, wit)
        except Exception as error:
            self._faults.report("on_failure", error, "the request is given up")
            return _guest.decision_to_wit(GiveUp(), wit)
