"""Strategies of the built-in kinds; importing this package registers them."""

from microkube.resources.kinds import apiextensions, apps, batch, core, other  # noqa: F401
