"""Job controller: preload a Job in a real Store, simulate pod outcomes, assert writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from microkube.client.informer import InformerFactory
from microkube.client.local import LocalClient
from microkube.controllers import jobstatus as js
from microkube.controllers.job import JobController
from microkube.resources.registry import Registry

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        return self.t


def job_body(name: str = "pi", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox"}],
                }
            },
            **spec,
        },
    }


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ctl(client: LocalClient, informers: InformerFactory, clock: Clock) -> JobController:
    return JobController(client, informers, clock=clock, backoff_base=0)


async def create_job(client: LocalClient, **spec: Any) -> dict[str, Any]:
    return await client.create(client.resource("batch", "jobs"), "default", job_body(**spec))


def pods(client: LocalClient) -> list[dict[str, Any]]:
    items = client.list(client.resource("", "pods"), "default").items
    # Oldest first (resourceVersion of creation orders them; names are random).
    return sorted(items, key=lambda p: p["metadata"]["uid"] and _created_rv(p))


_RV: dict[str, int] = {}


def _created_rv(p: dict[str, Any]) -> int:
    return _RV.setdefault(p["metadata"]["uid"], int(p["metadata"]["resourceVersion"]))


def job(client: LocalClient, name: str = "pi") -> dict[str, Any]:
    return client.get(client.resource("batch", "jobs"), "default", name)


def reasons(client: LocalClient) -> list[str]:
    return [e["reason"] for e in client.list(client.resource("", "events"), "default").items]


def conds(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["reason"] for c in obj["status"].get("conditions") or []}


async def finish(
    registry: Registry, pod: dict[str, Any], phase: str = "Succeeded", code: int = 0
) -> None:
    rt = registry.catalog.get("", "v1", "pods")
    assert rt is not None

    def mutate(p: dict[str, Any]) -> dict[str, Any]:
        p["status"] = {
            "phase": phase,
            "containerStatuses": [
                {
                    "name": "main",
                    "state": {
                        "terminated": {
                            "exitCode": code,
                            "finishedAt": "2030-01-01T12:00:00Z",
                        }
                    },
                }
            ],
        }
        return p

    await registry.guaranteed_update(
        rt, "default", pod["metadata"]["name"], mutate, subresource="status"
    )


async def test_job_runs_pods_to_completion(client, registry, ctl) -> None:
    created = await create_job(client, completions=2, parallelism=1)
    await ctl.sync("default", "pi")
    [p] = pods(client)
    assert p["metadata"]["name"].startswith("pi-")
    assert js.TRACKING_FINALIZER in p["metadata"]["finalizers"]
    ref = p["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("Job", created["metadata"]["uid"], True)
    assert p["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "pi"
    st = job(client)["status"]
    assert st["active"] == 1 and st["ready"] == 0 and st["startTime"] == "2030-01-01T12:00:00Z"
    assert st["uncountedTerminatedPods"] == {}

    await finish(registry, p)
    await ctl.sync("default", "pi")
    st = job(client)["status"]
    assert st["succeeded"] == 1 and st["active"] == 1
    first, second = pods(client)
    assert not first["metadata"].get("finalizers")  # counted, released

    await ctl.sync("default", "pi")  # idempotent: no double count, no extra pod
    assert job(client)["status"]["succeeded"] == 1 and len(pods(client)) == 2

    await finish(registry, second)
    await ctl.sync("default", "pi")
    done = job(client)
    assert done["status"]["succeeded"] == 2
    assert "active" not in done["status"]
    assert conds(done) == {
        "SuccessCriteriaMet": "CompletionsReached",
        "Complete": "CompletionsReached",
    }
    assert done["status"]["completionTime"] == "2030-01-01T12:00:00Z"
    assert all(not p["metadata"].get("finalizers") for p in pods(client))
    assert reasons(client).count("SuccessfulCreate") == 2
    assert "Completed" in reasons(client)


async def test_backoff_limit_exceeded(client, registry, ctl) -> None:
    await create_job(client, backoffLimit=1)
    await ctl.sync("default", "pi")
    await finish(registry, pods(client)[0], "Failed", 1)
    await ctl.sync("default", "pi")
    assert job(client)["status"]["failed"] == 1
    assert len([p for p in pods(client) if p["status"]["phase"] == "Pending"]) == 1
    await finish(registry, pods(client)[-1], "Failed", 1)
    await ctl.sync("default", "pi")
    st = job(client)
    assert st["status"]["failed"] == 2
    assert conds(st) == {"FailureTarget": "BackoffLimitExceeded", "Failed": "BackoffLimitExceeded"}
    failed = next(c for c in st["status"]["conditions"] if c["type"] == "Failed")
    assert failed["message"] == "Job has reached the specified backoff limit"
    assert "completionTime" not in st["status"]
    assert "BackoffLimitExceeded" in reasons(client)


async def test_backoff_delays_replacement(client, registry, informers, clock) -> None:
    ctl = JobController(client, informers, clock=clock, backoff_base=10)
    await create_job(client)
    await ctl.sync("default", "pi")
    await finish(registry, pods(client)[0], "Failed", 1)
    delay = await ctl.sync("default", "pi")
    assert len(pods(client)) == 1 and delay == pytest.approx(10)
    clock.t += timedelta(seconds=11)
    await ctl.sync("default", "pi")
    assert len(pods(client)) == 2


async def test_active_deadline_kills_pods(client, registry, ctl, clock) -> None:
    await create_job(client, parallelism=2, completions=4, activeDeadlineSeconds=30)
    delay = await ctl.sync("default", "pi")
    assert len(pods(client)) == 2 and delay == pytest.approx(30)
    clock.t += timedelta(seconds=31)
    await ctl.sync("default", "pi")
    assert conds(job(client)) == {"FailureTarget": "DeadlineExceeded"}
    assert all(p["metadata"].get("deletionTimestamp") for p in pods(client))
    await ctl.sync("default", "pi")  # the deleted pods are counted and released
    st = job(client)
    assert pods(client) == []
    assert st["status"]["failed"] == 2
    assert conds(st)["Failed"] == "DeadlineExceeded"


async def test_indexed_job(client, registry, ctl) -> None:
    await create_job(client, completions=3, parallelism=2, completionMode="Indexed")
    await ctl.sync("default", "pi")
    ps = pods(client)
    assert sorted(js.pod_index(p) for p in ps) == [0, 1]
    for p in ps:
        idx = p["metadata"]["annotations"][js.COMPLETION_INDEX]
        assert p["metadata"]["labels"][js.COMPLETION_INDEX] == idx
        assert p["spec"]["hostname"] == f"pi-{idx}"
        assert p["metadata"]["name"].startswith(f"pi-{idx}-")
    one = next(p for p in ps if js.pod_index(p) == 1)
    await finish(registry, one)
    await ctl.sync("default", "pi")
    st = job(client)["status"]
    assert st["completedIndexes"] == "1" and st["succeeded"] == 1
    assert sorted(js.pod_index(p) for p in pods(client) if p["status"]["phase"] == "Pending") == [
        0,
        2,
    ]
    for p in pods(client):
        if p["status"]["phase"] == "Pending":
            await finish(registry, p)
    await ctl.sync("default", "pi")
    st = job(client)["status"]
    assert st["completedIndexes"] == "0-2" and st["succeeded"] == 3
    assert "Complete" in conds(job(client))


async def test_pod_failure_policy(client, registry, ctl) -> None:
    policy = {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
        ]
    }
    await create_job(client, podFailurePolicy=policy, backoffLimit=5)
    await ctl.sync("default", "pi")
    await finish(registry, pods(client)[0], "Failed", 3)
    await ctl.sync("default", "pi")
    assert job(client)["status"]["failed"] == 1
    await finish(registry, pods(client)[-1], "Failed", 42)
    await ctl.sync("default", "pi")
    st = job(client)
    assert conds(st)["Failed"] == "PodFailurePolicy"
    msg = next(c for c in st["status"]["conditions"] if c["type"] == "Failed")["message"]
    assert "failed with exit code 42 matching FailJob rule at index 1" in msg


async def test_pod_failure_policy_ignore() -> None:
    policy = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}
    pod = {
        "metadata": {"name": "p", "namespace": "d"},
        "status": {
            "phase": "Failed",
            "conditions": [{"type": "DisruptionTarget", "status": "True"}],
        },
    }
    assert js.match_pod_failure_policy(policy, pod)[0] == "Ignore"
    pod["status"]["conditions"][0]["status"] = "False"
    assert js.match_pod_failure_policy(policy, pod)[0] is None


async def test_completions_unset_stops_after_first_success(client, registry, ctl) -> None:
    await create_job(client, parallelism=2)
    await ctl.sync("default", "pi")
    a, b = pods(client)
    await finish(registry, a)
    await ctl.sync("default", "pi")
    assert len(pods(client)) == 2
    assert "Complete" not in conds(job(client))
    await finish(registry, b)
    await ctl.sync("default", "pi")
    st = job(client)
    assert st["status"]["succeeded"] == 2 and "Complete" in conds(st)


async def test_ttl_after_finished_deletes_job(client, registry, ctl, clock) -> None:
    await create_job(client, ttlSecondsAfterFinished=60)
    await ctl.sync("default", "pi")
    await finish(registry, pods(client)[0])
    delay = await ctl.sync("default", "pi")
    assert delay == pytest.approx(60)
    clock.t += timedelta(seconds=30)
    assert await ctl.sync("default", "pi") == pytest.approx(30)
    clock.t += timedelta(seconds=31)
    await ctl.sync("default", "pi")
    assert client.try_get(client.resource("batch", "jobs"), "default", "pi") is None


async def test_suspend_deletes_pods_and_resume_restarts(client, registry, ctl) -> None:
    await create_job(client, parallelism=1)
    await ctl.sync("default", "pi")
    rt = client.resource("batch", "jobs")

    def suspend(value: bool):
        def f(o: dict[str, Any]) -> dict[str, Any]:
            o["spec"]["suspend"] = value
            return o

        return f

    await client.mutate(rt, "default", "pi", suspend(True))
    await ctl.sync("default", "pi")
    assert all(p["metadata"].get("deletionTimestamp") for p in pods(client))
    assert conds(job(client))["Suspended"] == "JobSuspended"
    await ctl.sync("default", "pi")
    await client.mutate(rt, "default", "pi", suspend(False))
    await ctl.sync("default", "pi")
    assert len([p for p in pods(client) if not p["metadata"].get("deletionTimestamp")]) == 1
    assert conds(job(client))["Suspended"] == "JobResumed"


def test_index_formatting() -> None:
    # two in a row print as "6,7", as upstream's orderedIntervals.String does
    assert js.format_indexes({0, 1, 2, 4, 6, 7}) == "0-2,4,6,7"
    assert js.parse_indexes("0-2,4,6,7") == {0, 1, 2, 4, 6, 7}
    assert js.parse_indexes("0-2,4,6-7") == {0, 1, 2, 4, 6, 7}
    assert js.parse_indexes("0-9", limit=3) == {0, 1, 2}
    assert js.format_indexes(set()) == ""


async def test_deleted_job_releases_its_pods(client, registry, ctl) -> None:
    await create_job(client, parallelism=2, completions=2)
    await ctl.sync("default", "pi")
    assert len(pods(client)) == 2
    await client.delete(client.resource("batch", "jobs"), "default", "pi")
    await ctl.sync("default", "pi")
    assert all(not p["metadata"].get("finalizers") for p in pods(client))


# --- backoffLimitPerIndex / maxFailedIndexes ---------------------------------------------


def by_index(client: LocalClient, idx: int) -> list[dict[str, Any]]:
    return [p for p in pods(client) if js.pod_index(p) == idx]


def fail_count(p: dict[str, Any]) -> str:
    return p["metadata"]["annotations"][js.FAILURE_COUNT]


async def test_backoff_limit_per_index_fails_the_index_not_the_job(client, registry, ctl) -> None:
    created = await create_job(
        client, completions=2, parallelism=2, completionMode="Indexed", backoffLimitPerIndex=1
    )
    assert created["spec"]["backoffLimit"] == 2**31 - 1  # defaulted as upstream
    await ctl.sync("default", "pi")
    assert [fail_count(p) for p in pods(client)] == ["0", "0"]
    assert job(client)["status"]["failedIndexes"] == ""

    await finish(registry, by_index(client, 0)[0], "Failed", 1)
    await ctl.sync("default", "pi")
    first, again = by_index(client, 0)
    assert fail_count(again) == "1"  # the replacement inherits the index's failures
    # the failed pod is kept (finalizer, uncounted) until its replacement exists
    assert js.TRACKING_FINALIZER in first["metadata"]["finalizers"]
    assert not job(client)["status"].get("failed")
    await ctl.sync("default", "pi")
    assert job(client)["status"]["failed"] == 1
    assert not by_index(client, 0)[0]["metadata"].get("finalizers")

    await finish(registry, again, "Failed", 1)  # second failure: past backoffLimitPerIndex
    await ctl.sync("default", "pi")
    st = job(client)["status"]
    assert st["failedIndexes"] == "0" and st["failed"] == 2
    assert len(by_index(client, 0)) == 2  # index 0 is not retried
    assert "FailureTarget" not in conds(job(client))  # index 1 still runs

    await finish(registry, by_index(client, 1)[0])
    await ctl.sync("default", "pi")
    done = job(client)
    assert done["status"]["completedIndexes"] == "1"
    assert conds(done) == {"FailureTarget": "FailedIndexes", "Failed": "FailedIndexes"}
    failed = next(c for c in done["status"]["conditions"] if c["type"] == "Failed")
    assert failed["message"] == "Job has failed indexes"


async def test_max_failed_indexes_exceeded_stops_the_job(client, registry, ctl) -> None:
    await create_job(
        client,
        completions=4,
        parallelism=4,
        completionMode="Indexed",
        backoffLimitPerIndex=0,
        maxFailedIndexes=1,
    )
    await ctl.sync("default", "pi")
    await finish(registry, by_index(client, 0)[0], "Failed", 1)
    await ctl.sync("default", "pi")
    assert job(client)["status"]["failedIndexes"] == "0"
    assert "FailureTarget" not in conds(job(client))
    await finish(registry, by_index(client, 1)[0], "Failed", 1)
    await ctl.sync("default", "pi")
    st = job(client)
    assert st["status"]["failedIndexes"] == "0,1"
    assert conds(st)["FailureTarget"] == "MaxFailedIndexesExceeded"
    assert all(
        p["metadata"].get("deletionTimestamp") for p in by_index(client, 2) + by_index(client, 3)
    )
    await ctl.sync("default", "pi")
    failed = next(c for c in job(client)["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "MaxFailedIndexesExceeded"
    assert failed["message"] == "Job has exceeded the specified maximal number of failed indexes"


async def test_fail_index_action_and_per_index_backoff(client, registry, informers, clock) -> None:
    ctl = JobController(client, informers, clock=clock, backoff_base=10)
    policy = {
        "rules": [
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [42]}},
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}},
        ]
    }
    await create_job(
        client,
        completions=3,
        parallelism=3,
        completionMode="Indexed",
        backoffLimitPerIndex=5,
        podFailurePolicy=policy,
    )
    await ctl.sync("default", "pi")
    await finish(registry, by_index(client, 0)[0], "Failed", 42)  # FailIndex: at once
    await finish(registry, by_index(client, 1)[0], "Failed", 3)  # counted: retried later
    await finish(registry, by_index(client, 2)[0], "Failed", 7)  # ignored: retried later
    delay = await ctl.sync("default", "pi")
    assert job(client)["status"]["failedIndexes"] == "0"
    assert len(by_index(client, 1)) == 1 and delay == pytest.approx(10)  # index back-off
    clock.t += timedelta(seconds=11)
    await ctl.sync("default", "pi")
    assert len(by_index(client, 0)) == 1
    one, two = by_index(client, 1)[-1], by_index(client, 2)[-1]
    assert fail_count(one) == "1"
    assert (
        fail_count(two) == "0" and two["metadata"]["annotations"][js.IGNORED_FAILURE_COUNT] == "1"
    )


async def test_per_index_fields_are_validated(client) -> None:
    from microkube import errors

    bad = [
        ({"backoffLimitPerIndex": 1}, "spec.backoffLimitPerIndex"),
        (
            {"completionMode": "Indexed", "completions": 2, "maxFailedIndexes": 1},
            "spec.backoffLimitPerIndex",
        ),
        (
            {
                "completionMode": "Indexed",
                "completions": 2,
                "backoffLimitPerIndex": 1,
                "maxFailedIndexes": 3,
            },
            "spec.maxFailedIndexes",
        ),
        (
            {
                "podFailurePolicy": {
                    "rules": [
                        {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1]}}
                    ]
                }
            },
            "spec.podFailurePolicy.rules[0].action",
        ),
    ]
    for spec, field in bad:
        with pytest.raises(errors.Invalid) as exc:
            await create_job(client, **spec)
        assert field in [c.field for c in exc.value.causes], (spec, exc.value.causes)
