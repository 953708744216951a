"""Strategies of the built-in kinds; importing this package registers them."""

from microkube.resources.kinds import (  # noqa: F401
    admissionregistration,
    apiextensions,
    apps,
    autoscaling,
    batch,
    core,
    other,
)
