"""Fixtures for the TUI tests: a real installation with real backups, and a deterministic fleet database.

- `installation`: the sandbox over loopback HTTP, connected through the real OAuth flow, two small
  organisations, a full backup then a business day and an incremental backup, with real restic
  (`tests/integration/test_backup.py::make_installation`). Shared by the module's tests to stay fast.
- `fleet_settings`: a state database with organisations, runs and points written straight into it
  (`fleet_data.populate`), for snapshots (frozen clock) and the 5,000-organisation dashboard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot

from appliance.service import Appliance
from appliance.settings import Settings
from tests.integration.test_backup import Installation, make_installation
from tests.tui.fleet_data import NOW, FleetShape, build_state
from tui.app import StrongroomApp
from tui.backend import Backend

WAIT_LIMIT = 30.0
"""An upper bound for waiting on a worker in a test, not a timing assertion: a hang fails instead of blocking."""


@pytest.fixture(scope="session")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    with make_installation(tmp_path_factory.mktemp("tui-install"), orgs=2) as inst:
        outcomes = asyncio.run(inst.appliance.backup(full=True))
        assert [o.status for o in outcomes] == ["succeeded", "succeeded"], outcomes
        inst.sandbox.advance(1)
        outcomes = asyncio.run(inst.appliance.backup())
        assert [o.status for o in outcomes] == ["succeeded", "succeeded"], outcomes
        yield inst


@pytest.fixture
def live_app(installation: Installation) -> Callable[..., StrongroomApp]:
    """An app over the real installation (its own Appliance, as `strongroom tui` would build one)."""

    def make(**kwargs: object) -> StrongroomApp:
        return StrongroomApp(Backend(Appliance(installation.settings)), **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="session")
def fleet_20(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, FleetShape]:
    return build_state(tmp_path_factory.mktemp("fleet-20"), 20)


def frozen_app(settings: Settings, **kwargs: object) -> StrongroomApp:
    """An app whose clock is stopped at `NOW`, so ages and due times render the same every run."""
    return StrongroomApp(Backend(Appliance(settings), clock=lambda: NOW), **kwargs)  # type: ignore[arg-type]


async def wait_for(pilot: Pilot[None], condition: Callable[[], object], what: str = "condition") -> None:
    """Let the app run until `condition()` holds (workers finish, messages are handled)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_LIMIT
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await pilot.pause(0.05)


def data_dir(settings: Settings) -> Path:
    return Path(settings.data_dir)
