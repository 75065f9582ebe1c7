"""The balancer world: pick an endpoint for each request."""

from __future__ import annotations

import abc

from . import _registry
from .config import reject_unknown
from .types import Endpoint, RequestInfo

__all__ = ["Balancer"]


class Balancer(abc.ABC):
    """A load-balancing strategy for one pool. A plugin defines exactly one
    subclass; the build finds it, whatever its name.

    For each pool that uses the plugin, on each worker thread, the host
    makes one object of your class with `__init__` (given the pool's
    `balancer.config` as a `dict`), pushes the eligible endpoints with
    `set_endpoints` whenever they change, and calls `pick` for every
    request. `pick` is the hot path: keep it O(1) in the pool's size and ask
    `switchyard.host.endpoint_load` only for the few endpoints you sample.
    Keep what belongs to a pool on `self`, not in globals: one instance of
    the plugin holds every pool's object on its thread.

    An answer outside the pushed set, an exception, or a call that runs past
    its time budget never reaches the client: the host serves the request
    with its native round robin. An exception is logged once per pool.

    >>> from switchyard import Balancer, Endpoint, RequestInfo, host
    >>> class Random(Balancer):
    ...     '''Picks uniformly at random.'''
    ...     def __init__(self, config: dict) -> None:
    ...         super().__init__(config)  # takes no options: refuses any key
    ...         self.ids: list[int] = []
    ...     def set_endpoints(self, endpoints: list[Endpoint]) -> None:
    ...         self.ids = [endpoint.id for endpoint in endpoints]
    ...     def pick(self, request: RequestInfo) -> int | None:
    ...         if not self.ids:
    ...             return None
    ...         return self.ids[host.random_below(len(self.ids))]
    """

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        _registry.register(Balancer, cls)

    def __init__(self, config: dict) -> None:
        """Builds the strategy from the pool's config (`{}` when the pool
        gives none). Raising `switchyard.ConfigError`, or any exception,
        refuses the config with its message. This default takes no options
        and refuses any key.

        >>> from switchyard import Balancer, config
        >>> class Windowed(Balancer):
        ...     def __init__(self, options: dict) -> None:
        ...         config.reject_unknown(options, "window")
        ...         self.window = config.integer(options, "window", default=8, minimum=1, maximum=64)
        ...     def set_endpoints(self, endpoints): pass
        ...     def pick(self, request): return None
        >>> Windowed({"window": 2}).window
        2
        """
        reject_unknown(config)

    @abc.abstractmethod
    def set_endpoints(self, endpoints: list[Endpoint]) -> None:
        """Replaces the eligible endpoints. Called after `__init__` and
        whenever the set changes (endpoints added, removed, ejected or
        readmitted).

        >>> from switchyard import Balancer
        >>> class First(Balancer):
        ...     def set_endpoints(self, endpoints):
        ...         self.ids = [endpoint.id for endpoint in endpoints]
        ...     def pick(self, request):
        ...         return self.ids[0] if self.ids else None
        """

    @abc.abstractmethod
    def pick(self, request: RequestInfo) -> int | None:
        """Picks an endpoint id from the last `set_endpoints`, or `None` to
        let the host's round robin place the request.

        >>> from switchyard import Balancer
        >>> from switchyard.testing import endpoints
        >>> class Rotate(Balancer):
        ...     def set_endpoints(self, endpoints):
        ...         self.ids, self.next = [e.id for e in endpoints], 0
        ...     def pick(self, request):
        ...         if not self.ids:
        ...             return None
        ...         self.next = (self.next + 1) % len(self.ids)
        ...         return self.ids[self.next - 1]
        >>> rotate = Rotate({})
        >>> rotate.set_endpoints(endpoints(2))
        >>> [rotate.pick(None), rotate.pick(None), rotate.pick(None)]
        [0, 1, 0]
        """

    def snapshot(self) -> bytes:
        """The pool's state, carried to the next version of the plugin when
        its file is swapped: each worker asks its old instance's object for
        it and hands it to `restore` of the new version's object for the
        same pool. The default carries nothing (empty bytes), and the new
        version starts afresh. Put a version in the bytes if their shape
        may change.

        >>> from switchyard import Balancer
        >>> class Turns(Balancer):
        ...     def set_endpoints(self, endpoints): self.next = 0
        ...     def pick(self, request): return None
        ...     def snapshot(self) -> bytes:
        ...         return self.next.to_bytes(4, "little")
        >>> turns = Turns({})
        >>> turns.set_endpoints([])
        >>> turns.snapshot()
        b'\\x00\\x00\\x00\\x00'
        """
        return b""

    def restore(self, state: bytes) -> None:
        """Takes over the pool's state from an earlier version's `snapshot`
        (never called with empty bytes). Raising refuses the new version:
        the host keeps the running one and shows the message, so raise for
        bytes you cannot read rather than start cold by mistake. The
        default ignores them.

        >>> from switchyard import Balancer
        >>> class Turns(Balancer):
        ...     next = 0
        ...     def set_endpoints(self, endpoints): pass
        ...     def pick(self, request): return None
        ...     def restore(self, state: bytes) -> None:
        ...         if len(state) != 4:
        ...             raise ValueError(f"expected 4 bytes of turn, got {len(state)}")
        ...         self.next = int.from_bytes(state, "little")
        >>> turns = Turns({})
        >>> turns.restore(b"\\x03\\x00\\x00\\x00")
        >>> turns.next
        3
        """
