"""Fixtures: a real Store in tmp_path and a bootstrapped Registry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from microkube.resources.registry import Registry
from tests.support.registry import open_registry


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    async with open_registry(tmp_path, bootstrap=True) as reg:
        yield reg
