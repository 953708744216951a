"""Starts the in-process controllers (name → factory).

All framework controllers share one :class:`~microkube.client.local.LocalClient`
and one :class:`~microkube.client.informer.InformerFactory`, so each kind is
listed and watched once however many controllers read it.  To add a
controller, append its class to ``CONTROLLERS`` (see
:mod:`microkube.controllers.base` for how to write one).
"""

from __future__ import annotations

import asyncio
from typing import Any

from microkube.client.informer import InformerFactory
from microkube.client.local import LocalClient
from microkube.controllers import endpoints, events, serviceaccount
from microkube.controllers.base import Controller
from microkube.controllers.cronjob import CronJobController
from microkube.controllers.daemonset import DaemonSetController
from microkube.controllers.deployment import DeploymentController
from microkube.controllers.garbagecollector import GarbageCollector
from microkube.controllers.job import JobController
from microkube.controllers.namespace import NamespaceController
from microkube.controllers.podautoscaler import HorizontalPodAutoscalerController
from microkube.controllers.replicaset import ReplicaSetController
from microkube.controllers.rootcacert import RootCACertPublisher
from microkube.controllers.statefulset import StatefulSetController

CONTROLLERS: list[type[Controller]] = [
    ReplicaSetController,
    DeploymentController,
    GarbageCollector,
    JobController,
    CronJobController,
    StatefulSetController,
    DaemonSetController,
    NamespaceController,
    HorizontalPodAutoscalerController,
]


async def start(cluster: Any) -> list[asyncio.Task[Any]]:
    reg = cluster.registry
    client = LocalClient(reg)
    informers = InformerFactory(client)
    controllers = [cls(client, informers) for cls in CONTROLLERS]
    ca_pem = cluster.pki.ca_cert.read_text()
    controllers.append(RootCACertPublisher(client, informers, ca_pem=ca_pem))
    tasks: list[asyncio.Task[Any]] = list(informers.start())
    tasks += [asyncio.create_task(c.run(), name=c.name) for c in controllers]
    tasks += [
        asyncio.create_task(events.EventTTL(client).run(), name="event-ttl"),
        asyncio.create_task(serviceaccount.run(reg), name="serviceaccount-controller"),
        asyncio.create_task(endpoints.run(reg, cluster.settings), name="endpoints-controller"),
    ]
    return tasks
