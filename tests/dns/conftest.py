"""Fixtures: a Registry on real SQLite with the namespaces a cluster starts with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from microkube.resources.registry import Registry
from tests.support.registry import open_registry


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    async with open_registry(tmp_path, ("default", "kube-system")) as reg:
        yield reg
