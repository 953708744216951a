"""Fixtures: a real Store in tmp_path, a Registry with bootstrap objects, a client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from microkube.client.informer import InformerFactory
from microkube.client.local import LocalClient
from microkube.resources.registry import Registry
from tests.support.registry import open_registry


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    async with open_registry(tmp_path) as reg:
        yield reg


@pytest.fixture
def client(registry: Registry) -> LocalClient:
    return LocalClient(registry)


@pytest.fixture
def informers(client: LocalClient) -> InformerFactory:
    return InformerFactory(client)
