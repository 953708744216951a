"""The kubelet sync loop: make the pods bound to this node real, report their status.

Data flow (a reduced ``pkg/kubelet``)::

    registry.watch(pods) ─► pods bound here ─► one worker per pod UID
                                                   │  sync_pod(uid), repeated:
                                                   ▼  on pod change, or after the
        runtime (ContainerRuntime) ◄── actions ── delay it asks for (resync, back-off,
              │                                    probe period)
              └── containers, sandbox ──► podstatus.compute ─► pods/status

One *sync* is level-triggered and idempotent (:meth:`Kubelet.sync_pod`):

1. a pod with ``deletionTimestamp`` is terminated (preStop hooks, SIGTERM,
   SIGKILL after the grace period), its sandbox and volumes removed, and the
   object deleted with grace 0;
2. otherwise the sandbox (one Podman pod) and volumes are ensured;
3. init containers run one at a time, in order; then every container is
   started, restarted per ``restartPolicy`` with the 10 s → 5 min back-off
   (:mod:`microkube.kubelet.backoff`), and probed (:mod:`probes`);
4. the status is recomputed (:mod:`podstatus`) and written when it changed.

A pod is synced when its object changes, when the PLEG (:mod:`pleg`, one
runtime relist a second) sees its containers change, or after the delay the
last sync asked for (``resync``, 10 s by default, or sooner for back-off and
probes), so idle pods cost little and exits are still seen within a second.

Restart and adoption: at start the kubelet lists the runtime's sandboxes
(labelled with the instance) and adopts those whose pod still exists (no
container is restarted, restart counts come from container labels); the
others are removed.  The clock is injected so that back-off and probes are
testable without sleeping.  Container creation itself lives in
:mod:`microkube.kubelet.starter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from microkube.controllers import events
from microkube.kubelet import (
    pleg,
    podstatus,
    prober,
    probes,
    starter,
    statuswriter,
    termination,
    volumes,
)
from microkube.kubelet import runtime as rt
from microkube.kubelet.backoff import Backoff, go_duration

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Kubelet(
    starter.ContainerStarter, termination.Terminator, prober.Prober, statuswriter.StatusWriter
):
    def __init__(
        self,
        registry: Any,
        runtime: rt.ContainerRuntime,
        *,
        node_name: str,
        state_dir: Path,
        network: str = "",
        network_cidr: tuple[str, str] | None = None,
        dns_ip: str = "10.152.183.10",
        cluster_domain: str = "cluster.local",
        node_ip: str = "127.0.0.1",
        tokens: Any = None,
        ca_pem: bytes = b"",
        clock: Callable[[], datetime] | None = None,
        resync: float = 10.0,
        sandbox_check: float = 10.0,
        relist: float = 1.0,
        start_slots: int = 3,
    ) -> None:
        self.registry = registry
        self.runtime = runtime
        self.node_name = node_name
        self.network = network
        self.network_cidr = network_cidr
        """(cidr, gateway) to re-create the pod network with if it disappears."""
        self.dns_ip = dns_ip
        self.cluster_domain = cluster_domain
        self.node_ip = node_ip
        self.now: Callable[[], datetime] = clock or _utcnow
        self.resync = resync
        """Seconds between syncs of a pod where nothing happens (the PLEG wakes it on changes)."""
        self.pleg = pleg.Pleg(runtime, period=relist)
        self.sandbox_check = sandbox_check
        self.pods_rt = registry.catalog.get("", "v1", "pods")
        self.nodes_rt = registry.catalog.get("", "v1", "nodes")
        self.recorder = events.EventRecorder.for_registry(
            registry, "kubelet", host=node_name, clock=self.now
        )
        self.volumes = volumes.VolumeManager(
            registry, Path(state_dir) / "pods", tokens=tokens, ca_pem=ca_pem
        )
        self.restart_backoff = Backoff(self.now)
        self.pull_backoff = Backoff(self.now)
        self.pods: dict[str, Obj] = {}
        self.sandboxes: dict[str, rt.SandboxStatus] = {}
        self.waiting: dict[str, dict[str, tuple[str, str]]] = {}
        self.images: dict[str, dict[str, rt.ImageInfo]] = {}
        self.trackers: dict[tuple[str, str, str, str], probes.ProbeTracker] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._acted: set[str] = set()
        self._checked: dict[str, float] = {}
        self._messages: dict[str, str] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._start_slots = asyncio.Semaphore(start_slots)
        self._unsure: set[str] = set()
        """Pods whose sandbox create was attempted and not seen to succeed."""
        self._present: dict[tuple[str, str], asyncio.Task[rt.ImageInfo | None]] = {}

    # --- start-up and adoption -------------------------------------------------------

    def _mine(self, pod: Obj) -> bool:
        return (pod.get("spec") or {}).get("nodeName") == self.node_name

    async def adopt(self) -> None:
        """Load bound pods, adopt matching sandboxes, remove orphaned ones."""
        self.pods = {
            p["metadata"]["uid"]: p
            for p in self.registry.list(self.pods_rt, None).items
            if self._mine(p)
        }
        for sb in await self.runtime.list_sandboxes():
            if sb.uid in self.pods:
                self.sandboxes[sb.uid] = sb
            else:
                log.info("removing orphaned sandbox %s", sb.name)
                await self._remove_sandbox(sb, grace=0)
                self.volumes.cleanup(sb.uid)

    # --- the loop --------------------------------------------------------------------

    def _on_pod(self, etype: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        old = self.pods.get(uid)
        if etype == "DELETED" or not self._mine(pod):
            self.pods.pop(uid, None)
        else:
            self.pods[uid] = pod
            if old is not None and _same_desired(old, pod):
                return  # our own status write (or another status-only change)
        if uid in self.pods or uid in self.sandboxes:
            self._kick(uid)

    def _kick(self, uid: str) -> None:
        if uid not in self._workers or self._workers[uid].done():
            self._wake[uid] = asyncio.Event()
            self._workers[uid] = asyncio.create_task(self._worker(uid), name=f"pod-{uid[:8]}")
        self._wake[uid].set()

    async def _worker(self, uid: str) -> None:
        wake = self._wake[uid]
        while True:
            wake.clear()
            try:
                delay = await self.sync_pod(uid)
            except asyncio.CancelledError:
                raise
            except rt.ContainerRuntimeError as exc:
                log.warning("sync of pod %s failed: %s", uid, exc)
                delay = 2.0
            except Exception:  # noqa: BLE001 - retry the pod later
                log.exception("sync of pod %s failed", uid)
                delay = 2.0
            if delay is None:
                self._workers.pop(uid, None)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=max(0.05, delay))

    async def run(self) -> None:
        await self.adopt()
        for uid in list(self.pods):
            self._kick(uid)
        housekeeping = asyncio.create_task(self._housekeeping(), name="kubelet-housekeeping")
        relister = asyncio.create_task(self.pleg.run(self._on_container_change), name="pleg")
        try:
            while True:
                try:
                    await self._watch_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - watch again
                    log.debug("kubelet pod watch ended: %s", exc)
                await asyncio.sleep(0.5)
        finally:
            tasks = [housekeeping, relister, *self._workers.values()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _on_container_change(self, uid: str) -> None:
        if uid in self.pods:
            self._kick(uid)

    async def _watch_once(self) -> None:
        """One watch from the current state; pods missing from its initial list are gone."""
        seen: set[str] = set()
        initial = True
        async for etype, obj in self.registry.watch(self.pods_rt, None):
            if etype == "INITIAL-END":
                initial = False
                for uid in [u for u in self.pods if u not in seen]:
                    self.pods.pop(uid, None)
                    self._kick(uid)
                continue
            if etype not in ("ADDED", "MODIFIED", "DELETED"):
                continue
            if initial:
                seen.add(obj["metadata"]["uid"])
            self._on_pod(etype, obj)

    async def _housekeeping(self, interval: float = 30.0) -> None:
        """Remove sandboxes no pod owns (missed deletions, crashes mid-sync)."""
        while True:
            await asyncio.sleep(interval)
            try:
                for sb in await self.runtime.list_sandboxes():
                    worker = self._workers.get(sb.uid)
                    if sb.uid not in self.pods and (worker is None or worker.done()):
                        self._kick(sb.uid)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - try again later
                log.warning("kubelet housekeeping: %s", exc)

    # --- one sync --------------------------------------------------------------------

    async def sync_pod(self, uid: str) -> float | None:
        """Advance pod ``uid`` one step; seconds until it wants another (None: forget it)."""
        pod = self.pods.get(uid)
        if pod is None:
            await self._forget(uid)
            return None
        if pod["metadata"].get("deletionTimestamp"):
            await self.terminate(pod)
            return None
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            await self._finish(pod)
            return None
        deadline = self._deadline_left(pod)
        if deadline is not None and deadline <= 0:
            await self._deadline_exceeded(pod)
            return None
        sandbox = await self._ensure_sandbox(pod)
        self._acted.discard(uid)
        delays = [self.resync] + ([deadline] if deadline is not None else [])
        waiting = self.waiting.setdefault(uid, {})
        try:
            paths = self.volumes.setup(pod, self._node())
        except (volumes.VolumeError, OSError, ValueError) as exc:
            await self.recorder.event(pod, events.WARNING, "FailedMount", str(exc))
            await self._write_status(pod, sandbox)
            return 2.0
        containers = await self.runtime.list_containers({rt.LABEL_POD_UID: uid})
        spec = pod.get("spec") or {}
        policy = spec.get("restartPolicy") or "Always"
        initialized = True
        mains = {c["name"] for c in spec.get("containers") or []}
        mains_ran = any(x.name in mains for x in containers)
        for c in spec.get("initContainers") or []:
            tries = podstatus.attempts(containers, c["name"])
            latest = tries[-1] if tries else None
            if c.get("restartPolicy") == "Always":
                # A sidecar: the next init container starts once it has started;
                # it keeps running (and is restarted) beside the main containers.
                ready_to_go = await self._sidecar(pod, sandbox, c, tries, paths, delays)
                if ready_to_go or mains_ran:
                    continue
                initialized = False
                break
            if latest is not None and latest.state == "exited" and latest.exit_code == 0:
                waiting.pop(c["name"], None)
                continue
            initialized = False
            if latest is None or latest.state == "created":
                delays.append(await self._start(pod, sandbox, c, tries, paths, init=True))
            elif latest.state == "exited" and policy != "Never":
                delays.append(await self._restart(pod, sandbox, c, tries, paths, init=True))
            break
        if initialized:
            for c in spec.get("containers") or []:
                tries = podstatus.attempts(containers, c["name"])
                latest = tries[-1] if tries else None
                if latest is None or latest.state == "created":
                    delays.append(await self._start(pod, sandbox, c, tries, paths))
                elif latest.state == "running" and self._changed(c, latest):
                    # Mirrors computePodActions: restart regardless of restartPolicy.
                    grace = float(spec.get("terminationGracePeriodSeconds", 30))
                    why = f"Container {c['name']} definition changed, will be restarted"
                    await self._kill(pod, latest, c, grace, reason=why)
                    delays.append(await self._start(pod, sandbox, c, tries, paths))
                elif latest.state == "running":
                    delays.append(await self._probe(pod, sandbox, c, latest))
                elif latest.state == "exited":
                    if policy == "Always" or (policy == "OnFailure" and latest.exit_code != 0):
                        delays.append(await self._restart(pod, sandbox, c, tries, paths))
                    else:
                        waiting.pop(c["name"], None)
        if initialized and policy != "Always" and self._mains_done(spec, containers, policy):
            await self._stop_sidecars(pod, containers)
        await self._write_status(pod, sandbox, None if uid in self._acted else containers)
        if ((self.pods.get(uid) or {}).get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return 0.0  # finished just now: release the sandbox at the next step
        return min(delays)

    async def _sidecar(
        self,
        pod: Obj,
        sandbox: rt.SandboxStatus,
        c: Obj,
        tries: list[rt.ContainerStatus],
        paths: dict[str, Path],
        delays: list[float],
    ) -> bool:
        """Drive a restartable init container; True once it has started."""
        latest = tries[-1] if tries else None
        if latest is None or latest.state == "created":
            delays.append(await self._start(pod, sandbox, c, tries, paths, init=True))
            return False
        if latest.state == "exited":
            delays.append(await self._restart(pod, sandbox, c, tries, paths, init=True))
            return False
        delays.append(await self._probe(pod, sandbox, c, latest))
        tracker = self.trackers.get((pod["metadata"]["uid"], c["name"], latest.id, "startup"))
        return tracker is None or tracker.result

    @staticmethod
    def _mains_done(spec: Obj, containers: list[rt.ContainerStatus], policy: str) -> bool:
        """Every main container finished for good (so sidecars must stop)."""
        for c in spec.get("containers") or []:
            tries = podstatus.attempts(containers, c["name"])
            if not tries or tries[-1].state != "exited":
                return False
            if policy == "OnFailure" and tries[-1].exit_code != 0:
                return False
        return bool(spec.get("containers"))

    async def _stop_sidecars(self, pod: Obj, containers: list[rt.ContainerStatus]) -> None:
        sidecars = {
            c["name"]: c
            for c in (pod.get("spec") or {}).get("initContainers") or []
            if c.get("restartPolicy") == "Always"
        }
        grace = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        for x in containers:
            if x.name in sidecars and x.state == "running":
                await self._kill(pod, x, sidecars[x.name], grace)

    @staticmethod
    def _changed(spec: Obj, latest: rt.ContainerStatus) -> bool:
        """The spec's image differs from the running container's (pods may change images)."""
        if not latest.image:
            return False
        try:
            return rt.normalize_image(str(spec.get("image", ""))) != latest.image
        except rt.ImagePullError:
            return False

    def _node(self) -> Obj | None:
        node: Obj | None = self.registry.try_get(self.nodes_rt, "", self.node_name)
        return node

    async def _ensure_sandbox(self, pod: Obj) -> rt.SandboxStatus:
        uid = pod["metadata"]["uid"]
        sb = self.sandboxes.get(uid)
        now = asyncio.get_running_loop().time()
        if sb is not None and now - self._checked.get(uid, -1e9) >= self.sandbox_check:
            try:
                sb = await self.runtime.sandbox_status(sb.id)
            except rt.RuntimeNotFound:
                sb = None
            if sb is not None and sb.state != "ready":
                await self._remove_sandbox(sb, grace=0)
                sb = None
            self._checked[uid] = now
        if sb is None and uid in self._unsure:
            # A sandbox left by an interrupted create would make the create
            # fail on its name: reuse it, or remove it.  (Sandboxes of earlier
            # runs were adopted or removed at start, so a new pod needs no list.)
            for found in await self.runtime.list_sandboxes({rt.LABEL_POD_UID: uid}):
                if found.state == "ready" and sb is None:
                    sb = found
                else:
                    await self._remove_sandbox(found, grace=0)
        if sb is None:
            from microkube.kubelet import containerspec

            cfg = containerspec.sandbox_config(
                pod, network=self.network, dns_ip=self.dns_ip, cluster_domain=self.cluster_domain
            )
            self._unsure.add(uid)
            self.prefetch_images(pod)  # overlaps the image look-ups with the sandbox start
            try:
                # Podman creates sandboxes one at a time anyway: with a few slots
                # (FIFO) a burst of pods starts in arrival order instead of all
                # finishing together at the end of the burst.
                async with self._start_slots:
                    sb = await self.runtime.create_pod_sandbox(cfg)
            except rt.ContainerRuntimeError as exc:
                await self.recorder.event(
                    pod,
                    events.WARNING,
                    "FailedCreatePodSandBox",
                    f"Failed to create pod sandbox: {exc}",
                )
                if "network" in str(exc) and self.network and self.network_cidr:
                    # Someone removed the pod network: make it again for the retry.
                    await self.runtime.ensure_network(self.network, *self.network_cidr)
                raise
            self._checked[uid] = now
            self._unsure.discard(uid)
        if sb.host_network and not sb.ip:
            sb = dataclasses.replace(sb, ip=self.node_ip)  # hostNetwork: the pod IP is the node's
        self.sandboxes[uid] = sb
        return sb

    async def _restart(
        self,
        pod: Obj,
        sandbox: rt.SandboxStatus,
        c: Obj,
        tries: list[rt.ContainerStatus],
        paths: dict[str, Path],
        *,
        init: bool = False,
    ) -> float:
        """The latest attempt exited and must be restarted, unless in back-off."""
        m = pod["metadata"]
        latest = tries[-1]
        key = f"{m['uid']}/{c['name']}"
        finished = latest.finished_at or self.now()
        if self.restart_backoff.in_backoff_since(key, finished):
            delay = self.restart_backoff.delay(key)
            msg = (
                f"back-off {go_duration(delay)} restarting failed container={c['name']} "
                f"pod={m['name']}_{m['namespace']}({m['uid']})"
            )
            self.waiting.setdefault(m["uid"], {})[c["name"]] = ("CrashLoopBackOff", msg)
            await self.recorder.event(
                pod,
                events.WARNING,
                "BackOff",
                f"Back-off restarting failed container {c['name']} in pod "
                f"{m['name']}_{m['namespace']}({m['uid']})",
                field_path=starter.field_path(c["name"], init),
            )
            return self.restart_backoff.remaining(key, finished) + 0.01
        self.restart_backoff.next(key, finished)
        return await self._start(pod, sandbox, c, tries, paths, init=init)


def _same_desired(a: Obj, b: Obj) -> bool:
    """Only the status differs: nothing for the kubelet to act on at once.

    A change to a readiness gate's condition counts: Ready must follow it.
    """
    gates = {g.get("conditionType") for g in (b.get("spec") or {}).get("readinessGates") or []}

    def gate_conditions(p: Obj) -> list[Obj]:
        return [
            c for c in (p.get("status") or {}).get("conditions") or [] if c.get("type") in gates
        ]

    return (
        a.get("spec") == b.get("spec")
        and a.get("metadata", {}).get("deletionTimestamp")
        == b.get("metadata", {}).get("deletionTimestamp")
        and (not gates or gate_conditions(a) == gate_conditions(b))
    )
