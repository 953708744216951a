"""CronJob controller: creates Jobs on a schedule and keeps a bounded history.

Mirrors ``pkg/controller/cronjob/cronjob_controllerv2.go`` (``syncCronJob``):

1. reconcile ``status.active`` with the Jobs the CronJob controls (finished
   ones leave it with ``SawCompletedJob``, vanished ones with ``MissingJob``)
   and advance ``status.lastSuccessfulTime``;
2. unless deleting or suspended, find the most recent unmet schedule time
   (:mod:`microkube.controllers.cronschedule`); too late for
   ``startingDeadlineSeconds`` → ``MissSchedule``; already started → nothing;
   ``Forbid`` with an active Job → ``JobAlreadyActive``; ``Replace`` deletes
   the active Jobs first;
3. create ``<cronjob>-<minutes since epoch>`` (an existing one of that name
   is adopted, not duplicated), record it in ``status.active`` and
   ``status.lastScheduleTime``;
4. delete finished Jobs beyond the history limits (``SuccessfulDelete``).

``sync`` returns when to look again (just after the next schedule time), so
the controller loop needs no polling; the clock is injected so tests move
time instead of waiting for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from microkube import errors
from microkube.client.informer import InformerFactory, split_key
from microkube.client.local import LocalClient
from microkube.controllers import cronschedule, events, history
from microkube.controllers.base import Controller
from microkube.controllers.cronschedule import Schedule, ScheduleError
from microkube.objects import meta

log = logging.getLogger(__name__)

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
Clock = Callable[[], datetime]


def finished_condition(job: dict[str, Any]) -> str | None:
    """``Complete``/``Failed`` when the Job is finished (mirrors ``IsJobFinished``)."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


def job_ref(job: dict[str, Any]) -> dict[str, Any]:
    m = job["metadata"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": m["name"],
        "namespace": m["namespace"],
        "uid": m["uid"],
        "resourceVersion": m.get("resourceVersion", ""),
    }


def job_from_template(cj: dict[str, Any], scheduled: datetime, tz: Any) -> dict[str, Any]:
    """Mirrors ``getJobFromTemplate2``."""
    jt = (cj.get("spec") or {}).get("jobTemplate") or {}
    jmeta = jt.get("metadata") or {}
    stamp = scheduled.astimezone(tz or UTC).isoformat().replace("+00:00", "Z")
    annotations = dict(jmeta.get("annotations") or {})
    annotations[SCHEDULED_TIMESTAMP] = stamp
    m: dict[str, Any] = {
        "name": cronschedule.job_name(cj["metadata"]["name"], scheduled),
        "namespace": cj["metadata"]["namespace"],
        "annotations": annotations,
        "ownerReferences": [meta.owner_ref(cj)],
    }
    if jmeta.get("labels"):
        m["labels"] = dict(jmeta["labels"])
    import copy

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": m,
        "spec": copy.deepcopy(jt.get("spec") or {}),
    }


class CronJobController(Controller):
    """Jobs on a schedule; ``sync`` is the level-triggered pass over one CronJob."""

    name = "cronjob-controller"

    def __init__(
        self, client: LocalClient, informers: InformerFactory, *, clock: Clock | None = None
    ) -> None:
        super().__init__(client, informers, clock=clock)
        self.cj_rt = client.resource("batch", "cronjobs")
        self.job_rt = client.resource("batch", "jobs")
        self.recorder = events.EventRecorder(client, self.name, clock=clock)
        self.enqueue_changes(informers.informer(self.cj_rt))
        self.enqueue_owner_changes(informers.informer(self.job_rt), "CronJob")

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        delay = await self.sync(ns, name)
        if delay is not None:
            self.queue.add_after(key, delay)

    async def _event(self, obj: dict[str, Any], etype: str, reason: str, msg: str) -> None:
        await self.recorder.event(obj, etype, reason, msg)

    async def sync(self, namespace: str, name: str) -> float | None:
        """Reconcile one CronJob; returns seconds until it should be synced again."""
        cj = self.client.try_get(self.cj_rt, namespace, name)
        if cj is None:
            return None
        jobs = history.owned(self.client.list(self.job_rt, namespace).items, cj)
        status = cj.setdefault("status", {})
        before = {k: status.get(k) for k in ("active", "lastScheduleTime", "lastSuccessfulTime")}
        active: list[dict[str, Any]] = list(status.get("active") or [])
        now = self.now()
        await self._sync_children(cj, jobs, active)
        requeue = None
        if not meta.is_deleting(cj):
            requeue = await self._schedule(cj, active, jobs, now)
        status["active"] = active
        if not active:
            status.pop("active")
        after = {k: status.get(k) for k in ("active", "lastScheduleTime", "lastSuccessfulTime")}
        if after != before:
            await self._write_status(cj)
        await self._cleanup(cj, jobs)
        return requeue

    async def _sync_children(
        self, cj: dict[str, Any], jobs: list[dict[str, Any]], active: list[dict[str, Any]]
    ) -> None:
        status = cj["status"]
        uids = {j["metadata"]["uid"] for j in jobs}
        for j in jobs:
            uid = j["metadata"]["uid"]
            in_active = any(a.get("uid") == uid for a in active)
            done = finished_condition(j)
            if not in_active and not done:
                await self._event(
                    cj,
                    "Warning",
                    "UnexpectedJob",
                    f"Saw a job that the controller did not create or forgot: {j['metadata']['name']}",
                )
            elif in_active and done:
                active[:] = [a for a in active if a.get("uid") != uid]
                await self._event(
                    cj,
                    "Normal",
                    "SawCompletedJob",
                    f"Saw completed job: {j['metadata']['name']}, condition: {done}",
                )
            if done == "Complete":
                ct = (j.get("status") or {}).get("completionTime")
                last = status.get("lastSuccessfulTime")
                if ct and (not last or cronschedule.parse_time(ct) > cronschedule.parse_time(last)):
                    status["lastSuccessfulTime"] = ct
        for a in list(active):
            if a.get("uid") in uids:
                continue
            if self.client.try_get(self.job_rt, cj["metadata"]["namespace"], a["name"]) is None:
                await self._event(
                    cj, "Normal", "MissingJob", f"Active job went missing: {a['name']}"
                )
                active.remove(a)

    async def _schedule(
        self,
        cj: dict[str, Any],
        active: list[dict[str, Any]],
        jobs: list[dict[str, Any]],
        now: datetime,
    ) -> float | None:
        spec, status = cj.get("spec") or {}, cj["status"]
        try:
            sched = Schedule.parse(spec.get("schedule", ""), spec.get("timeZone"))
        except ScheduleError as exc:
            reason = "UnknownTimeZone" if "time zone" in str(exc) else "UnparseableSchedule"
            await self._event(cj, "Warning", reason, str(exc))
            return None
        if spec.get("suspend"):
            return None
        created = cronschedule.parse_time(cj["metadata"]["creationTimestamp"])
        last = status.get("lastScheduleTime")
        last_t = cronschedule.parse_time(last) if last else None
        deadline = spec.get("startingDeadlineSeconds")
        missed = cronschedule.most_recent_schedule(
            sched, now=now, created=created, last_schedule=last_t, starting_deadline=deadline
        )
        if missed.count > cronschedule.MAX_MISSED:
            await self._event(
                cj,
                "Warning",
                "TooManyMissedTimes",
                f"too many missed start times: {missed.count}. Set or decrease "
                ".spec.startingDeadlineSeconds or check clock skew",
            )
        scheduled = missed.most_recent
        if scheduled is not None and (
            deadline is None or scheduled + timedelta(seconds=deadline) >= now
        ):
            await self._start(cj, active, scheduled, sched)
        elif scheduled is not None:
            await self._event(
                cj,
                "Warning",
                "MissSchedule",
                "Missed scheduled time to start a job: "
                + scheduled.strftime("%a, %d %b %Y %H:%M:%S +0000"),
            )
        # Mirrors nextScheduleTimeDuration: just after the next time.
        status_last = status.get("lastScheduleTime")
        base = cronschedule.parse_time(status_last) if status_last else created
        base = max(base, missed.most_recent or base)
        nxt = sched.next(base)
        return max((nxt - now).total_seconds(), 0.0) + 0.1

    async def _start(
        self, cj: dict[str, Any], active: list[dict[str, Any]], scheduled: datetime, sched: Schedule
    ) -> None:
        spec, status = cj.get("spec") or {}, cj["status"]
        ns = cj["metadata"]["namespace"]
        name = cronschedule.job_name(cj["metadata"]["name"], scheduled)
        stamp = cronschedule.format_time(scheduled)
        if any(a.get("name") == name for a in active) or status.get("lastScheduleTime") == stamp:
            return
        policy = spec.get("concurrencyPolicy", "Allow")
        if policy == "Forbid" and active:
            await self._event(
                cj,
                "Normal",
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            )
            return
        if policy == "Replace":
            for a in list(active):
                if await history.delete_quietly(self.client, self.job_rt, ns, a["name"]):
                    await self._event(cj, "Normal", "SuccessfulDelete", f"Deleted job {a['name']}")
                active.remove(a)
        body = job_from_template(cj, scheduled, sched.tz)
        try:
            job = await self.client.create(self.job_rt, ns, body)
            await self._event(cj, "Normal", "SuccessfulCreate", f"Created job {name}")
        except errors.AlreadyExists:
            job = self.client.get(self.job_rt, ns, name)
            if (meta.controller_ref(job) or {}).get("uid") != cj["metadata"]["uid"]:
                raise errors.Conflict(
                    f"job {name} exists and is not controlled by the cronjob"
                ) from None
        except errors.ApiError as exc:
            await self._event(cj, "Warning", "FailedCreate", f"Error creating job: {exc}")
            raise
        if not any(a.get("uid") == job["metadata"]["uid"] for a in active):
            active.append(job_ref(job))
        status["lastScheduleTime"] = stamp

    async def _write_status(self, cj: dict[str, Any]) -> None:
        want = cj["status"]

        def mutate(obj: dict[str, Any]) -> dict[str, Any]:
            obj["status"] = want
            return obj

        await self.client.mutate(
            self.cj_rt,
            cj["metadata"]["namespace"],
            cj["metadata"]["name"],
            mutate,
            subresource="status",
        )

    async def _cleanup(self, cj: dict[str, Any], jobs: list[dict[str, Any]]) -> None:
        spec = cj.get("spec") or {}
        for kind, limit_field in (
            ("Complete", "successfulJobsHistoryLimit"),
            ("Failed", "failedJobsHistoryLimit"),
        ):
            limit = spec.get(limit_field)
            if limit is None:
                continue
            done = [j for j in jobs if finished_condition(j) == kind and not meta.is_deleting(j)]
            done.sort(
                key=lambda j: (
                    (j.get("status") or {}).get("startTime") or j["metadata"]["creationTimestamp"]
                )
            )
            for j in done[: max(len(done) - int(limit), 0)]:
                jname = j["metadata"]["name"]
                if await history.delete_quietly(
                    self.client, self.job_rt, j["metadata"]["namespace"], jname
                ):
                    await self._event(cj, "Normal", "SuccessfulDelete", f"Deleted job {jname}")
