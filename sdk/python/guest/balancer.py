"""The `balancer` export componentize-py looks for: `PoolBalancer`, one per
pool, holding the plugin's `switchyard.Balancer` object."""

from componentize_py_types import Err
from wit_world.exports import balancer as wit
from wit_world.imports import host as wit_host
from wit_world.imports import store as wit_store

from switchyard import Balancer, ConfigError, _guest

_guest.bind_host(wit_host, None, Err, wit_store)


class PoolBalancer(wit.PoolBalancer):
    """One pool's balancer. An exception from the plugin declines the pick
    (the host places the request with its round robin) and is logged once."""

    def __init__(self, plugin: Balancer) -> None:
        self._plugin = plugin
        self._pick = plugin.pick
        self._faults = _guest.Faults(plugin)

    @classmethod
    def create(cls, config: str) -> "PoolBalancer":
        try:
            return cls(_guest.create(Balancer, config))
        except ConfigError as error:
            raise Err(str(error)) from None

    def set_endpoints(self, endpoints: list) -> None:
        try:
            self._plugin.set_endpoints([_guest.endpoint_from_wit(endpoint) for endpoint in endpoints])
        except Exception as error:
            self._faults.report("set_endpoints", error, "the pool keeps the object as the exception left it")

    def pick(self, request: object) -> int | None:
        try:
            return _guest.checked_pick(self._pick(_guest.request_from_wit(request)))
        except Exception as error:
            self._faults.report("pick", error, "the pick is declined")
            return None
