"""The service proxy: Services + EndpointSlices → one nftables table per instance.

``model`` (pure) normalizes API objects, ``rules`` (pure) renders the
``nft -f`` script, ``apply`` loads it (the only side effect) and ``proxier``
watches the API and re-applies, debounced.  ``cleanup`` is what
``microkube reset`` calls.
"""

from __future__ import annotations

from typing import Any


def cleanup(settings: Any) -> None:
    """Delete the instance's nft table."""
    from microkube.netproxy import apply

    apply.cleanup(settings)
