"""Job controller: runs pods to completion, counts outcomes, finishes the Job.

Mirrors ``pkg/controller/job/job_controller.go`` with finalizer-based tracking:
every pod it creates carries ``batch.kubernetes.io/job-tracking``, and a
finished pod is counted exactly once through a three-step protocol that
survives a crash at any point:

1. its uid goes into ``status.uncountedTerminatedPods`` (status write);
2. its tracking finalizer is removed (pod write);
3. uids whose pods lost the finalizer (or vanished) move into
   ``status.succeeded``/``failed`` (status write).

Terminal state is two-phased as in 1.31+: ``SuccessCriteriaMet`` or
``FailureTarget`` first (active pods are then deleted), ``Complete`` (with
``completionTime``) or ``Failed`` once no pod is still terminating.  Failure
reasons: ``BackoffLimitExceeded``, ``DeadlineExceeded`` and
``PodFailurePolicy``.  ``ttlSecondsAfterFinished`` deletes the Job later
(the TTL-after-finished controller folded in).  ``sync`` returns the delay
until it must run again (pod backoff, deadline, TTL); pod events do the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from microkube import errors
from microkube.client.informer import InformerFactory, split_key
from microkube.client.local import LocalClient
from microkube.controllers import events, history
from microkube.controllers import jobstatus as js
from microkube.controllers.base import Controller
from microkube.objects import meta

log = logging.getLogger(__name__)


class JobController(Controller):
    """Job pods to completion; ``sync`` is the level-triggered pass over one Job."""

    name = "job-controller"

    def __init__(
        self,
        client: LocalClient,
        informers: InformerFactory,
        *,
        clock: Callable[[], datetime] | None = None,
        backoff_base: float = js.BACKOFF_BASE,
    ) -> None:
        super().__init__(client, informers, clock=clock)
        self.backoff_base = backoff_base
        self.job_rt = client.resource("batch", "jobs")
        self.pod_rt = client.resource("", "pods")
        self.recorder = events.EventRecorder(client, self.name, clock=clock)
        self.enqueue_changes(informers.informer(self.job_rt))
        self.enqueue_owner_changes(informers.informer(self.pod_rt), "Job")

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        delay = await self.sync(ns, name)
        if delay is not None:
            self.queue.add_after(key, delay)

    async def _event(self, obj: dict[str, Any], etype: str, reason: str, msg: str) -> None:
        await self.recorder.event(obj, etype, reason, msg)

    def pods_of(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        return history.owned(self.client.list(self.pod_rt, job["metadata"]["namespace"]).items, job)

    async def sync(self, namespace: str, name: str) -> float | None:
        job = self.client.try_get(self.job_rt, namespace, name)
        if job is None:
            # Orphans of a deleted Job must not stay blocked by our finalizer.
            await self._release(
                [
                    p
                    for p in self.client.list(self.pod_rt, namespace).items
                    if (meta.controller_ref(p) or {}).get("kind") == "Job"
                    and meta.controller_ref(p)["name"] == name  # type: ignore[index]
                ]
            )
            return None
        pods = self.pods_of(job)
        now = self.now()
        if js.is_finished(job):
            await self._release(pods)
            return await self._ttl(job, now)
        if meta.is_deleting(job):
            await self._release(pods)
            return None
        return await _JobSync(self, job, pods, now).run()

    async def _release(self, pods: list[dict[str, Any]]) -> None:
        for p in pods:
            if js.TRACKING_FINALIZER in (p["metadata"].get("finalizers") or []):
                await self.remove_finalizer(p)

    async def remove_finalizer(self, pod: dict[str, Any]) -> None:
        def mutate(obj: dict[str, Any]) -> dict[str, Any] | None:
            fins = obj["metadata"].get("finalizers") or []
            if js.TRACKING_FINALIZER not in fins:
                return None
            obj["metadata"]["finalizers"] = [f for f in fins if f != js.TRACKING_FINALIZER]
            return obj

        try:
            await self.client.mutate(
                self.pod_rt, pod["metadata"]["namespace"], pod["metadata"]["name"], mutate
            )
        except errors.NotFound:
            pass

    async def _ttl(self, job: dict[str, Any], now: datetime) -> float | None:
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        done = js.finish_time(job)
        if ttl is None or done is None or meta.is_deleting(job):
            return None
        left = (done - now).total_seconds() + int(ttl)
        if left > 0:
            return left
        m = job["metadata"]
        await history.delete_quietly(self.client, self.job_rt, m["namespace"], m["name"])
        return None


class _JobSync:
    """One pass over one Job (state shared by the steps of ``syncJob``)."""

    def __init__(
        self, ctl: JobController, job: dict[str, Any], pods: list[dict[str, Any]], now: datetime
    ) -> None:
        self.ctl, self.job, self.pods, self.now = ctl, job, pods, now
        self.spec: dict[str, Any] = job.get("spec") or {}
        self.status: dict[str, Any] = dict(job.get("status") or {})
        self.indexed = self.spec.get("completionMode") == "Indexed"
        self.completions: int | None = self.spec.get("completions")
        self.policy = self.spec.get("podReplacementPolicy", "TerminatingOrFailed")
        unc = self.status.get("uncountedTerminatedPods") or {}
        self.unc_succ: list[str] = list(unc.get("succeeded") or [])
        self.unc_fail: list[str] = list(unc.get("failed") or [])
        self.completed = js.parse_indexes(self.status.get("completedIndexes"), self.completions)
        self.per_index = self.indexed and self.spec.get("backoffLimitPerIndex") is not None
        self.failed_indexes: set[int] = set()
        self.delayed: dict[int, dict[str, Any]] = {}  # index -> failed pod awaiting replacement
        self.failure: tuple[str, str] | None = None
        self.requeue: float | None = None
        self.deleted = 0  # pods deleted by this pass (terminating until observed)

    async def run(self) -> float | None:
        st, spec = self.status, self.spec
        suspended = bool(spec.get("suspend"))
        if not suspended and not st.get("startTime"):
            st["startTime"] = js.fmt(self.now)
        active = [p for p in self.pods if history.pod_active(p)]
        if self.per_index:
            self._index_failures(active)
        delayed = {p["metadata"]["uid"] for p in self.delayed.values()}
        to_release = self._collect_finished(
            [p for p in self.pods if p["metadata"]["uid"] not in delayed]
        )
        succeeded = int(st.get("succeeded") or 0) + len(self.unc_succ)
        failed = int(st.get("failed") or 0) + len(self.unc_fail)
        finishing = js.condition(st, "FailureTarget") or js.condition(st, "SuccessCriteriaMet")
        if not finishing:
            self._check_failure(failed)
            if self.per_index:
                self._check_failed_indexes()
            if self.failure:
                reason, msg = self.failure
                js.set_condition(st, "FailureTarget", "True", reason, msg, self.now)
            elif self._complete(succeeded, active):
                js.set_condition(
                    st,
                    "SuccessCriteriaMet",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    self.now,
                )
        finishing = js.condition(st, "FailureTarget") or js.condition(st, "SuccessCriteriaMet")
        if finishing and self.delayed:
            # A finishing Job replaces nothing: its delayed failed pods are counted now.
            to_release += self._collect_finished(list(self.delayed.values()))
            self.delayed = {}
        if finishing:
            await self._delete(active, len(active))
            active = []
        elif suspended:
            await self._delete(active, len(active))
            active = []
            js.set_condition(st, "Suspended", "True", "JobSuspended", "Job suspended", self.now)
            st.pop("startTime", None)
        else:
            if js.condition(st, "Suspended"):
                js.set_condition(st, "Suspended", "False", "JobResumed", "Job resumed", self.now)
            active = await self._manage(active, succeeded, failed)
        await self._write(to_release, active)
        return self.requeue

    # --- counting ----------------------------------------------------------

    def _collect_finished(self, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Step 1 of the protocol: record finished ``pods`` that still carry the finalizer."""
        by_uid = {p["metadata"]["uid"]: p for p in self.pods}
        release = []
        for p in pods:
            uid = p["metadata"]["uid"]
            if js.TRACKING_FINALIZER not in (p["metadata"].get("finalizers") or []):
                continue
            if uid in self.unc_succ or uid in self.unc_fail:
                release.append(p)
                continue
            if js.pod_succeeded(p):
                idx = js.pod_index(p)
                if not self.indexed:
                    self.unc_succ.append(uid)
                elif idx is not None and idx < (self.completions or 0):
                    if idx not in self.completed:
                        self.completed.add(idx)
                        self.unc_succ.append(uid)
                release.append(p)
            elif js.pod_failed(p, self.policy):
                action, msg = js.match_pod_failure_policy(self.spec.get("podFailurePolicy"), p)
                if action != "Ignore":
                    self.unc_fail.append(uid)
                if action == "FailJob" and self.failure is None:
                    self.failure = ("PodFailurePolicy", msg)
                release.append(p)
        self._stale = [u for u in self.unc_succ + self.unc_fail if u not in by_uid]
        return release

    def _check_failure(self, failed: int) -> None:
        if self.failure:
            return
        limit = self.spec.get("backoffLimit")
        if limit is not None and failed > int(limit):
            self.failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
            return
        ads = self.spec.get("activeDeadlineSeconds")
        start = self.status.get("startTime")
        if ads is not None and start and not self.spec.get("suspend"):
            left = (js.parse(start) - self.now).total_seconds() + int(ads)
            if left <= 0:
                self.failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
            else:
                self._at_most(left)

    def _index_failures(self, active: list[dict[str, Any]]) -> None:
        """Failed indexes and the failed pods kept until their replacement exists.

        Mirrors ``calculateFailedIndexes`` and ``getPodsWithDelayedDeletionPerIndex``:
        the last failed pod of an index that will be retried keeps its tracking
        finalizer (and is not counted yet) until the replacement pod, which
        inherits its failure counts, has been created.
        """
        completions = self.completions or 0
        self.failed_indexes = js.parse_indexes(self.status.get("failedIndexes"), completions)
        succeeded = set(self.completed)
        for p in self.pods:
            idx = js.pod_index(p)
            if idx is None or idx >= completions:
                continue
            if js.TRACKING_FINALIZER not in (p["metadata"].get("finalizers") or []):
                continue
            if js.pod_succeeded(p):
                succeeded.add(idx)
            elif js.index_failed(self.spec, p):
                self.failed_indexes.add(idx)
        busy = succeeded | self.failed_indexes
        busy |= {i for p in active if (i := js.pod_index(p)) is not None}
        for p in self.pods:
            idx = js.pod_index(p)
            if idx is None or idx >= completions or idx in busy:
                continue
            if js.TRACKING_FINALIZER not in (p["metadata"].get("finalizers") or []):
                continue
            if not js.pod_failed(p, self.policy):
                continue
            last = self.delayed.get(idx)
            if last is None or (
                sum(js.index_failure_counts(last)) <= sum(js.index_failure_counts(p))
                and (js.pod_finish_time(p) or self.now) >= (js.pod_finish_time(last) or self.now)
            ):
                self.delayed[idx] = p

    def _check_failed_indexes(self) -> None:
        if self.failure:
            return
        failed, completions = len(self.failed_indexes), self.completions or 0
        most = self.spec.get("maxFailedIndexes")
        if most is not None and failed > int(most):
            self.failure = (
                "MaxFailedIndexesExceeded",
                "Job has exceeded the specified maximal number of failed indexes",
            )
        elif failed and failed + len(self.completed) >= completions:
            self.failure = ("FailedIndexes", "Job has failed indexes")

    def _complete(self, succeeded: int, active: list[dict[str, Any]]) -> bool:
        if self.indexed:
            return self.completions is not None and len(self.completed) >= self.completions
        if self.completions is None:
            return succeeded > 0 and not active
        return succeeded >= self.completions

    def _at_most(self, seconds: float) -> None:
        self.requeue = seconds if self.requeue is None else min(self.requeue, seconds)

    # --- pods ----------------------------------------------------------------

    async def _manage(
        self, active: list[dict[str, Any]], succeeded: int, failed: int
    ) -> list[dict[str, Any]]:
        parallelism = int(self.spec.get("parallelism") or 0)
        terminating = [p for p in self.pods if _terminating(p)]
        if self.indexed:
            return await self._manage_indexed(active, parallelism, terminating)
        if self.completions is None:
            want = 0 if succeeded > 0 else parallelism
        else:
            want = max(min(parallelism, self.completions - succeeded), 0)
        if len(active) > want:
            victims = sorted(active, key=_deletion_rank)[: len(active) - want]
            await self._delete(victims, len(victims))
            return [p for p in active if p not in victims]
        missing = want - len(active)
        if self.policy == "Failed":
            missing -= len(terminating)
        if missing <= 0 or not self._backoff_over(failed):
            return active
        for _ in range(missing):
            pod = await self._create(None)
            if pod is not None:
                active.append(pod)
        return active

    async def _manage_indexed(
        self, active: list[dict[str, Any]], parallelism: int, terminating: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        completions = self.completions or 0
        keep: list[dict[str, Any]] = []
        extra: list[dict[str, Any]] = []
        seen: set[int] = set()
        for p in sorted(active, key=lambda p: (js.pod_index(p) or 0, _deletion_rank(p))):
            idx = js.pod_index(p)
            if idx is None or idx >= completions or idx in self.completed or idx in seen:
                extra.append(p)
            else:
                seen.add(idx)
                keep.append(p)
        want = min(parallelism, completions - len(self.completed))
        if len(keep) > want:
            keep.sort(key=lambda p: js.pod_index(p) or 0)
            extra += keep[want:]
            keep = keep[:want]
        if extra:
            await self._delete(extra, len(extra))
        busy = seen | self.completed | self.failed_indexes
        if self.policy == "Failed":
            busy |= {i for p in terminating if (i := js.pod_index(p)) is not None}
        pending = [i for i in range(completions) if i not in busy]
        room = want - len(keep)
        if room <= 0 or not pending:
            return keep
        if self.per_index:
            # getPodCreationInfoForIndependentIndexes: each index waits for its own back-off.
            pending = pending[:room]
            waits = {
                i: js.index_backoff_remaining(
                    self.delayed.get(i), self.now, base=self.ctl.backoff_base
                )
                for i in pending
            }
            ready = [i for i in pending if waits[i] <= 0]
            if not ready:
                self._at_most(min(waits.values()))
            for idx in ready:
                pod = await self._create(idx)
                if pod is not None:
                    keep.append(pod)
            return keep
        failed = int(self.status.get("failed") or 0) + len(self.unc_fail)
        if self._backoff_over(failed):
            for idx in pending[:room]:
                pod = await self._create(idx)
                if pod is not None:
                    keep.append(pod)
        return keep

    def _backoff_over(self, failed: int) -> bool:
        last = max(
            (t for p in self.pods if js.pod_failed(p, "") and (t := js.pod_finish_time(p))),
            default=None,
        )
        left = js.backoff_remaining(failed, last, self.now, base=self.ctl.backoff_base)
        if left > 0:
            self._at_most(left)
            return False
        return True

    async def _create(self, index: int | None) -> dict[str, Any] | None:
        job = self.job
        name = job["metadata"]["name"]
        template = (job.get("spec") or {}).get("template") or {}
        gen = f"{name}-" if index is None else f"{name}-{index}-"
        pod = history.pod_from_template(job, template, generate_name=gen)
        m = pod["metadata"]
        m["finalizers"] = [*(m.get("finalizers") or []), js.TRACKING_FINALIZER]
        if index is not None:
            m.setdefault("annotations", {})[js.COMPLETION_INDEX] = str(index)
            m["labels"][js.COMPLETION_INDEX] = str(index)
            pod["spec"]["hostname"] = f"{name}-{index}"
            if self.per_index:
                failures, ignored = js.replacement_failure_counts(
                    self.spec, self.delayed.get(index)
                )
                m["annotations"][js.FAILURE_COUNT] = str(failures)
                if ignored:
                    m["annotations"][js.IGNORED_FAILURE_COUNT] = str(ignored)
        try:
            out = await self.ctl.client.create(self.ctl.pod_rt, m["namespace"], pod)
        except errors.ApiError as exc:
            await self.ctl._event(job, "Warning", "FailedCreate", f"Error creating: {exc}")
            self._at_most(1.0)
            return None
        await self.ctl._event(
            job, "Normal", "SuccessfulCreate", f"Created pod: {out['metadata']['name']}"
        )
        return out

    async def _delete(self, victims: list[dict[str, Any]], n: int) -> None:
        for p in victims[:n]:
            m = p["metadata"]
            self.deleted += 1
            if await history.delete_quietly(
                self.ctl.client, self.ctl.pod_rt, m["namespace"], m["name"]
            ):
                await self.ctl._event(
                    self.job, "Normal", "SuccessfulDelete", f"Deleted pod: {m['name']}"
                )

    # --- status ----------------------------------------------------------------

    async def _write(self, to_release: list[dict[str, Any]], active: list[dict[str, Any]]) -> None:
        st = self.status
        st["active"] = len(active)
        st["ready"] = sum(1 for p in active if history.pod_ready(p))
        st["terminating"] = sum(1 for p in self.pods if _terminating(p)) + self.deleted
        if self.indexed:
            st["completedIndexes"] = js.format_indexes(self.completed)
        if self.per_index:
            st["failedIndexes"] = js.format_indexes(self.failed_indexes)
        # Step 1: persist the uncounted uids before touching finalizers.
        st["uncountedTerminatedPods"] = _uncounted(self.unc_succ, self.unc_fail)
        await self._put_status()
        # Step 2: release the pods.
        for p in to_release:
            await self.ctl.remove_finalizer(p)
        if to_release or self.deleted:
            # Released or deleted pods may be gone now (no kubelet had to stop them).
            st["terminating"] = sum(1 for p in self.ctl.pods_of(self.job) if _terminating(p))
        # Step 3: everything released is now counted.
        released = {p["metadata"]["uid"] for p in to_release} | set(self._stale)
        moved_s = [u for u in self.unc_succ if u in released]
        moved_f = [u for u in self.unc_fail if u in released]
        st["succeeded"] = int(st.get("succeeded") or 0) + len(moved_s)
        st["failed"] = int(st.get("failed") or 0) + len(moved_f)
        self.unc_succ = [u for u in self.unc_succ if u not in released]
        self.unc_fail = [u for u in self.unc_fail if u not in released]
        st["uncountedTerminatedPods"] = _uncounted(self.unc_succ, self.unc_fail)
        events = self._finish(active)
        await self._put_status()
        for etype, reason, msg in events:
            await self.ctl._event(self.job, etype, reason, msg)

    def _finish(self, active: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
        st = self.status
        if active or st["terminating"] or self.unc_succ or self.unc_fail:
            return []
        target = js.condition(st, "FailureTarget")
        if target is not None:
            js.set_condition(st, "Failed", "True", target["reason"], target["message"], self.now)
            self._ttl_requeue()
            return [("Warning", target["reason"], target["message"])]
        if js.condition(st, "SuccessCriteriaMet") is not None:
            js.set_condition(
                st,
                "Complete",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                self.now,
            )
            st["completionTime"] = js.fmt(self.now)
            self._ttl_requeue()
            return [("Normal", "Completed", "Job completed")]
        return []

    def _ttl_requeue(self) -> None:
        ttl = self.spec.get("ttlSecondsAfterFinished")
        if ttl is not None:
            self._at_most(float(ttl))

    async def _put_status(self) -> None:
        want = {k: v for k, v in self.status.items() if v not in (None, 0) or k in _KEEP_ZERO}
        m = self.job["metadata"]

        def mutate(obj: dict[str, Any]) -> dict[str, Any] | None:
            if obj["metadata"]["uid"] != m["uid"] or obj.get("status") == want:
                return None
            obj["status"] = want
            return obj

        try:
            await self.ctl.client.mutate(
                self.ctl.job_rt, m["namespace"], m["name"], mutate, subresource="status"
            )
        except errors.NotFound:
            pass


_KEEP_ZERO = {"ready", "terminating"}


def _uncounted(succ: list[str], fail: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if succ:
        out["succeeded"] = list(succ)
    if fail:
        out["failed"] = list(fail)
    return out


def _terminating(pod: dict[str, Any]) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return meta.is_deleting(pod) and phase not in ("Succeeded", "Failed")


def _deletion_rank(pod: dict[str, Any]) -> tuple[int, int, str]:
    """Delete unscheduled, then pending, then not-ready pods first (as ``ActivePods`` sorts)."""
    scheduled = 1 if (pod.get("spec") or {}).get("nodeName") else 0
    running = 1 if (pod.get("status") or {}).get("phase") == "Running" else 0
    ready = 1 if history.pod_ready(pod) else 0
    return (scheduled + running, ready, pod["metadata"].get("creationTimestamp", ""))
