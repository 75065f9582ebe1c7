"""The subclasses of `Balancer`, `HealthCheck` and `Recovery` defined so far,
so the glue finds the plugin's class without being told its name."""

from __future__ import annotations

registered: dict[type, list[type]] = {}
"""Each base class, with its subclasses in the order they were defined."""


def register(base: type, cls: type) -> None:
    """Notes that `cls` subclasses `base`; called by `__init_subclass__`."""
    registered.setdefault(base, []).append(cls)
