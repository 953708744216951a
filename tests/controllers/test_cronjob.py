"""CronJob controller and schedule math, with an injected clock (no waiting)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from microkube.client.informer import InformerFactory
from microkube.client.local import LocalClient
from microkube.controllers import cronschedule as cs
from microkube.controllers.cronjob import SCHEDULED_TIMESTAMP, CronJobController

pytestmark = pytest.mark.anyio


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


# --- schedule math ----------------------------------------------------------------


def test_schedule_next_fields_macros_and_every() -> None:
    assert cs.Schedule.parse("*/5 * * * *").next(utc(2030, 1, 1, 10, 0)) == utc(2030, 1, 1, 10, 5)
    assert cs.Schedule.parse("@hourly").next(utc(2030, 1, 1, 10, 30)) == utc(2030, 1, 1, 11)
    assert cs.Schedule.parse("@midnight").next(utc(2030, 1, 1, 10)) == utc(2030, 1, 2)
    every = cs.Schedule.parse("@every 1h30m")
    assert every.next(utc(2030, 1, 1, 10, 0, 7)) == utc(2030, 1, 1, 11, 30, 7)
    with pytest.raises(cs.ScheduleError):
        cs.Schedule.parse("* * * *")
    with pytest.raises(cs.ScheduleError):
        cs.Schedule.parse("* * * * *", "Mars/Olympus")


def test_schedule_time_zone() -> None:
    ny = cs.Schedule.parse("0 3 * * *", "America/New_York")
    assert ny.next(utc(2030, 1, 1, 0)) == utc(2030, 1, 1, 8)  # 03:00 EST


def test_most_recent_schedule_missed_runs() -> None:
    s = cs.Schedule.parse("* * * * *")
    created = utc(2030, 1, 1, 10, 0, 30)
    none = cs.most_recent_schedule(
        s,
        now=utc(2030, 1, 1, 10, 0, 50),
        created=created,
        last_schedule=None,
        starting_deadline=None,
    )
    assert none.most_recent is None and none.count == 0
    one = cs.most_recent_schedule(
        s,
        now=utc(2030, 1, 1, 10, 1, 5),
        created=created,
        last_schedule=None,
        starting_deadline=None,
    )
    assert one.most_recent == utc(2030, 1, 1, 10, 1) and one.count == 1
    many = cs.most_recent_schedule(
        s,
        now=utc(2030, 1, 1, 13, 0, 5),
        created=created,
        last_schedule=None,
        starting_deadline=None,
    )
    assert many.most_recent == utc(2030, 1, 1, 13) and many.count == 180
    bounded = cs.most_recent_schedule(
        s, now=utc(2030, 1, 1, 13, 0, 5), created=created, last_schedule=None, starting_deadline=200
    )
    assert bounded.most_recent == utc(2030, 1, 1, 13) and bounded.count == 4  # 12:57..13:00
    monthly = cs.Schedule.parse("0 0 1 * *")
    m = cs.most_recent_schedule(
        monthly,
        now=utc(2030, 5, 15),
        created=utc(2030, 1, 15),
        last_schedule=None,
        starting_deadline=None,
    )
    assert m.most_recent == utc(2030, 5, 1) and m.count == 4


def test_job_name_is_minutes_since_epoch() -> None:
    t = utc(2030, 1, 1, 10, 1)
    assert cs.job_name("hello", t) == f"hello-{int(t.timestamp()) // 60}"


# --- controller ------------------------------------------------------------------------


def cronjob_body(name: str = "hello", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": "* * * * *",
            "jobTemplate": {
                "metadata": {"labels": {"app": "hello"}},
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "OnFailure",
                            "containers": [{"name": "c", "image": "busybox"}],
                        }
                    }
                },
            },
            **spec,
        },
    }


def jobs(client: LocalClient) -> list[dict[str, Any]]:
    items = client.list(client.resource("batch", "jobs"), "default").items
    return sorted(items, key=lambda j: j["metadata"]["name"])


def cronjob(client: LocalClient) -> dict[str, Any]:
    return client.get(client.resource("batch", "cronjobs"), "default", "hello")


def reasons(client: LocalClient) -> list[str]:
    return [e["reason"] for e in client.list(client.resource("", "events"), "default").items]


async def setup(client: LocalClient, informers: InformerFactory, **spec: Any):
    cj = await client.create(client.resource("batch", "cronjobs"), "default", cronjob_body(**spec))
    created = cs.parse_time(cj["metadata"]["creationTimestamp"])
    clock = Clock(created)
    return CronJobController(client, informers, clock=clock), clock, created


async def mark(client: LocalClient, job: dict[str, Any], ctype: str, when: str) -> None:
    def f(o: dict[str, Any]) -> dict[str, Any]:
        o["status"] = {
            "startTime": when,
            "conditions": [{"type": ctype, "status": "True", "lastTransitionTime": when}],
        }
        if ctype == "Complete":
            o["status"]["completionTime"] = when
        return o

    await client.mutate(
        client.resource("batch", "jobs"),
        "default",
        job["metadata"]["name"],
        f,
        subresource="status",
    )


async def test_creates_job_at_schedule_time(client, informers) -> None:
    ctl, clock, created = await setup(client, informers)
    delay = await ctl.sync("default", "hello")
    assert jobs(client) == []
    nxt = cs.Schedule.parse("* * * * *").next(created)
    assert delay == pytest.approx((nxt - created).total_seconds() + 0.1)
    clock.t = nxt + timedelta(seconds=2)
    delay = await ctl.sync("default", "hello")
    [job] = jobs(client)
    assert job["metadata"]["name"] == cs.job_name("hello", nxt)
    assert job["metadata"]["annotations"][SCHEDULED_TIMESTAMP] == cs.format_time(nxt)
    assert job["metadata"]["labels"]["app"] == "hello"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    st = cronjob(client)["status"]
    assert st["lastScheduleTime"] == cs.format_time(nxt)
    assert [a["name"] for a in st["active"]] == [job["metadata"]["name"]]
    assert delay == pytest.approx(58.1)
    assert "SuccessfulCreate" in reasons(client)
    await ctl.sync("default", "hello")  # same time again: nothing new
    assert len(jobs(client)) == 1


async def test_completed_job_leaves_active_and_history_is_trimmed(client, informers) -> None:
    ctl, clock, created = await setup(client, informers, successfulJobsHistoryLimit=1)
    s = cs.Schedule.parse("* * * * *")
    t = s.next(created)
    names = []
    for _ in range(3):
        clock.t = t + timedelta(seconds=1)
        await ctl.sync("default", "hello")
        names.append(cs.job_name("hello", t))
        await mark(client, jobs(client)[-1], "Complete", cs.format_time(clock.t))
        t = s.next(t)
    await ctl.sync("default", "hello")
    assert [j["metadata"]["name"] for j in jobs(client)] == names[-1:]
    st = cronjob(client)["status"]
    assert "active" not in st
    assert st["lastSuccessfulTime"] is not None
    assert "SawCompletedJob" in reasons(client) and "SuccessfulDelete" in reasons(client)


async def test_forbid_and_replace(client, informers) -> None:
    ctl, clock, created = await setup(client, informers, concurrencyPolicy="Forbid")
    s = cs.Schedule.parse("* * * * *")
    clock.t = s.next(created) + timedelta(seconds=1)
    await ctl.sync("default", "hello")
    clock.t += timedelta(minutes=1)
    await ctl.sync("default", "hello")
    assert len(jobs(client)) == 1
    assert "JobAlreadyActive" in reasons(client)

    def replace(o: dict[str, Any]) -> dict[str, Any]:
        o["spec"]["concurrencyPolicy"] = "Replace"
        return o

    await client.mutate(client.resource("batch", "cronjobs"), "default", "hello", replace)
    await ctl.sync("default", "hello")
    [job] = jobs(client)
    assert job["metadata"]["name"] == cs.job_name("hello", s.next(clock.t - timedelta(minutes=1)))
    assert [a["name"] for a in cronjob(client)["status"]["active"]] == [job["metadata"]["name"]]


async def test_missed_runs_only_most_recent_and_too_many(client, informers) -> None:
    ctl, clock, created = await setup(client, informers)
    clock.t = created + timedelta(hours=3)
    await ctl.sync("default", "hello")
    [job] = jobs(client)
    recent = clock.t.replace(second=0, microsecond=0)
    assert job["metadata"]["name"] == cs.job_name("hello", recent)
    assert "TooManyMissedTimes" in reasons(client)


async def test_starting_deadline_and_suspend(client, informers) -> None:
    ctl, clock, created = await setup(client, informers, startingDeadlineSeconds=10)
    s = cs.Schedule.parse("* * * * *")
    clock.t = s.next(created) + timedelta(seconds=30)  # too late for that run
    await ctl.sync("default", "hello")
    assert jobs(client) == []

    def suspend(o: dict[str, Any]) -> dict[str, Any]:
        o["spec"]["suspend"] = True
        return o

    await client.mutate(client.resource("batch", "cronjobs"), "default", "hello", suspend)
    clock.t = s.next(clock.t) + timedelta(seconds=1)
    assert await ctl.sync("default", "hello") is None
    assert jobs(client) == []


async def test_time_zone_annotation(client, informers) -> None:
    ctl, clock, created = await setup(client, informers, timeZone="Asia/Kolkata")
    clock.t = cs.Schedule.parse("* * * * *").next(created) + timedelta(seconds=1)
    await ctl.sync("default", "hello")
    [job] = jobs(client)
    assert job["metadata"]["annotations"][SCHEDULED_TIMESTAMP].endswith("+05:30")
