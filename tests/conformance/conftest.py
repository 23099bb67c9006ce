"""Every conformance test runs on both Thespian system bases: the stock
`multiprocTCPBase` (id `stock`) and raftline's own (`raftline`, from
`actors.transport`), which must behave the same to the actors. Where raftline's
base cannot be imported, its tests skip with the reason and the stock ones run."""

from __future__ import annotations

import pytest

from tests.conformance.harness import STOCK_BASE, Base, Systems, prepare_environment

prepare_environment()  # before anything imports thespian


@pytest.fixture(params=["stock", "raftline"])
def base(request, tmp_path) -> Base:
    if request.param == "stock":
        return Base(STOCK_BASE)
    try:
        import actors.transport as transport
    except Exception as error:  # the base is being written: whatever breaks its import skips its tests
        pytest.skip(f"raftline's base is not importable: {type(error).__name__}: {error}")
    transport.install()
    secret = tmp_path / "secret"
    transport.create_secret(secret)
    return Base(transport.BASE_NAME, {transport.SECRET_CAPABILITY: str(secret)}, transport)


@pytest.fixture
def systems(base, tmp_path):
    started = Systems(base, tmp_path)
    yield started
    started.stop_all()


@pytest.fixture
def system(systems):
    """One actor system, with an outside handle on it."""
    return systems.start()
