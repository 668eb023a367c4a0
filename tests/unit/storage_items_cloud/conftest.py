"""Fixtures of the cloud item-store tests: the same emulators and store factories as the
contract suite (tests/contract/backends_*.py, registered once as plugins, so one emulator
instance serves both), plus fault proxies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.unit.storage_items_cloud.fault_proxy import FaultProxy

PLUGINS = (
    "tests.contract.backends_dynamodb",
    "tests.contract.backends_cosmos",
    "tests.contract.backends_postgres",
)


def pytest_configure(config: pytest.Config) -> None:
    for module in PLUGINS:
        config.pluginmanager.import_plugin(module)  # no-op when the contract suite did it


@pytest.fixture
async def fault_proxy() -> AsyncIterator[Callable[[str], Awaitable[FaultProxy]]]:
    """Start proxies in front of an upstream; all are stopped after the test."""
    started: list[FaultProxy] = []

    async def start(upstream: str) -> FaultProxy:
        proxy = await FaultProxy(upstream).start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        await proxy.stop()
