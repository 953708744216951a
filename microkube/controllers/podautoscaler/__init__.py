"""HorizontalPodAutoscaler controller (mirrors ``pkg/controller/podautoscaler``), split by concern.

* :mod:`.controller`: the loop (target scale, metrics, rescale, status and events);
* :mod:`.replicas`: the replica count one Resource metric asks for (pure);
* :mod:`.behavior`: stabilization windows, scaling policies and bounds (per-HPA memory).
"""

from __future__ import annotations

from microkube.controllers.podautoscaler.controller import HorizontalPodAutoscalerController

__all__ = ["HorizontalPodAutoscalerController"]
