"""``microkube reset``: remove the state directory and every host resource of the instance."""

from __future__ import annotations

import logging
import shutil

from microkube.settings import Settings

log = logging.getLogger(__name__)


def reset(settings: Settings) -> None:
    try:
        from microkube.kubelet import podman as podman_rt

        cleanup = getattr(podman_rt, "cleanup_host", None)
        if cleanup is not None:
            cleanup(settings)
    except Exception as exc:  # noqa: BLE001 - reset must go on
        log.warning("podman cleanup: %s", exc)
    try:
        from microkube import netproxy

        netproxy.cleanup(settings)
    except ImportError:
        pass
    except Exception as exc:  # noqa: BLE001
        log.warning("network cleanup: %s", exc)
    shutil.rmtree(settings.state_dir, ignore_errors=True)
