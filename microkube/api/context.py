"""What every API handler needs, in one object (stored on ``app.state.ctx``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from microkube.resources.catalog import Catalog
from microkube.resources.registry import Registry


@dataclass
class ApiContext:
    registry: Registry
    catalog: Catalog
    #: ``host:port`` clients should use (discovery's serverAddressByClientCIDRs).
    server_address: str = "127.0.0.1:16443"
    #: Authenticates a request; returns user info dict or None (set by app.py).
    authenticator: Any = None
    #: Authorizes a request; None means allow everything (set by app.py).
    authorizer: Any = None
    #: Provider of pod log/exec/attach/port-forward streams (the kubelet).
    pod_streams: Any = None
    #: Issues and verifies service-account tokens.
    tokens: Any = None
    #: Readiness: False until the store is open and the bootstrap objects exist.
    ready: bool = False
    #: Counters exported at /metrics.
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def max_object_bytes(self) -> int:
        return self.registry.max_object_bytes
