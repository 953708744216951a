"""Fixtures: kubectl 1.32 against the module's own ``server``.

Every module here defines a module-scoped ``server`` (a real-Podman
:func:`tests.support.server.podman_server` on the module's own CIDRs); the
``kubectl`` fixture below points kubectl 1.32 at it with a fresh HOME.
"""

from __future__ import annotations

import pytest

from tests.support.server import Kubectl, Server, kubectl_for


@pytest.fixture(scope="module")
def kubectl(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return kubectl_for(server, tmp_path_factory)
