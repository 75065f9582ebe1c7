"""Reading a plugin's config: the pool's `config` table, given to the
plugin's `__init__` as a `dict` parsed from JSON.

Raising `ConfigError` (or any exception) from `__init__` refuses the
config, with the message shown to the operator. The helpers here raise it
with the key at fault, as the host's own config errors do:

>>> from switchyard import config
>>> options = {"window": 0}
>>> config.reject_unknown(options, "window")
>>> try:
...     config.integer(options, "window", default=8, minimum=1, maximum=64)
... except config.ConfigError as error:
...     print(error)
config key `window`: must be from 1 to 64, got 0
"""

from __future__ import annotations

__all__ = ["U32_MAX", "ConfigError", "integer", "reject_unknown", "string"]

U32_MAX = 2**32 - 1
"""The largest value of a WIT `u32`, the default `maximum` of `integer`."""


class ConfigError(Exception):
    """A config the plugin refuses; the message is shown to the operator as is.

    >>> from switchyard import Balancer, ConfigError
    >>> class Fixed(Balancer):
    ...     def __init__(self, config: dict) -> None:
    ...         if "id" not in config:
    ...             raise ConfigError("config key `id`: required")
    ...         self.id = config["id"]
    ...     def set_endpoints(self, endpoints): pass
    ...     def pick(self, request): return self.id
    >>> Fixed({}) # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    switchyard.config.ConfigError: config key `id`: required
    """


def reject_unknown(config: dict, *known: str) -> None:
    """Raises `ConfigError` naming the first key of `config` not in `known`,
    so a mistyped key is refused rather than ignored.

    >>> from switchyard import config
    >>> config.reject_unknown({"speed": 3}) # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ConfigError: config: unknown key `speed`; the plugin takes no options
    >>> config.reject_unknown({"windw": 3}, "window") # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ConfigError: config: unknown key `windw`, expected `window`
    """
    for key in config:
        if key not in known:
            if not known:
                raise ConfigError(f"config: unknown key `{key}`; the plugin takes no options")
            expected = ", ".join(f"`{name}`" for name in known)
            raise ConfigError(f"config: unknown key `{key}`, expected {expected}")


def integer(
    config: dict,
    key: str,
    default: int,
    *,
    minimum: int = 0,
    maximum: int = U32_MAX,
) -> int:
    """`config[key]` as an integer from `minimum` to `maximum`, or `default`
    when the key is absent; `ConfigError` naming the key otherwise.

    >>> from switchyard import config
    >>> config.integer({}, "retries", default=1)
    1
    >>> config.integer({"retries": "2"}, "retries", default=1) # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ConfigError: config key `retries`: must be an integer, got '2'
    """
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"config key `{key}`: must be an integer, got {value!r}")
    if not minimum <= value <= maximum:
        raise ConfigError(f"config key `{key}`: must be from {minimum} to {maximum}, got {value}")
    return value


def string(config: dict, key: str, default: str) -> str:
    """`config[key]` as a string, or `default` when the key is absent;
    `ConfigError` naming the key otherwise.

    >>> from switchyard import config
    >>> config.string({"path": "/ready"}, "path", default="/healthz")
    '/ready'
    """
    value = config.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"config key `{key}`: must be a string, got {value!r}")
    return value
