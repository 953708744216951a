"""Fixtures: a real Store in tmp_path and a Registry with the default RBAC objects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from microkube.auth import bootstrap_rbac
from microkube.resources.registry import Registry
from tests.support.registry import open_registry


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    async with open_registry(tmp_path, ("default", "dev")) as reg:
        await bootstrap_rbac.ensure(reg)
        yield reg
