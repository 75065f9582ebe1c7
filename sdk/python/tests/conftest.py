from collections.abc import Iterator

import pytest

from switchyard import _backend, _registry


@pytest.fixture(autouse=True)
def isolated() -> Iterator[None]:
    """Each test starts with no host bound, and leaves the host and the
    registered plugin classes as it found them."""
    registered = {base: list(classes) for base, classes in _registry.registered.items()}
    backend = _backend.current
    _backend.bind(_backend.Unbound())  # type: ignore[arg-type]
    yield
    _registry.registered.clear()
    _registry.registered.update(registered)
    _backend.bind(backend)
