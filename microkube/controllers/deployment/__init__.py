"""Deployment controller (mirrors ``pkg/controller/deployment``), split by concern.

* :mod:`.controller`: the loop (claim ReplicaSets, choose a path);
* :mod:`.sync`: new/old ReplicaSets, revisions, proportional scaling, cleanup, status;
* :mod:`.rolling` and :mod:`.recreate`: the two strategies;
* :mod:`.progress`: the Progressing condition and progressDeadlineSeconds;
* :mod:`.util`: pure helpers (hashing, annotations, arithmetic, conditions).

Rollback has no module: ``kubectl rollout undo`` patches the template back
itself, and the revision bookkeeping in :mod:`.sync` does the rest.
"""

from __future__ import annotations

from microkube.controllers.deployment.controller import DeploymentController

__all__ = ["DeploymentController"]
