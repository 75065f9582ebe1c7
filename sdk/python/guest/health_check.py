"""The `health-check` export componentize-py looks for: `PoolCheck`, one per
pool, holding the plugin's `switchyard.HealthCheck` object."""

from componentize_py_types import Err
from wit_world.exports import health_check as wit
from wit_world.imports import host as wit_host
from wit_world.imports import probe as wit_probe
from wit_world.imports import types as wit_types

from switchyard import ConfigError, HealthCheck, Verdict, _guest

_guest.bind_host(wit_host, wit_probe, Err)


class PoolCheck(wit.PoolCheck):
    """One pool's health check. An exception from the plugin gives an
    unknown verdict with the exception as its reason, and is logged once."""

    def __init__(self, plugin: HealthCheck) -> None:
        self._plugin = plugin
        self._faults = _guest.Faults(plugin)

    @classmethod
    def create(cls, config: str) -> "PoolCheck":
        try:
            return cls(_guest.create(HealthCheck, config))
        except ConfigError as error:
            raise Err(str(error)) from None

    def check(self, target: object) -> object:
        try:
            verdict = self._plugin.check(_guest.endpoint_from_wit(target))
            return _guest.verdict_to_wit(verdict, wit_types, wit)
        except Exception as error:
            self._faults.report("check", error, "the verdict is unknown")
            reason = f"check raised {type(error).__name__}: {error}"
            return _guest.verdict_to_wit(Verdict.unknown(reason), wit_types, wit)
