"""The kubelet over FakeRuntime + a real Store/Registry, with an injected clock."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from microkube.auth import pki, tokens
from microkube.kubelet import fake
from microkube.kubelet.fake import FakeRuntime
from microkube.kubelet.kubelet import Kubelet
from microkube.kubelet.volumes import VolumeManager
from microkube.resources.registry import DeleteOptions, Registry

pytestmark = pytest.mark.anyio
NET = "mkt-pods"


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def runtime(clock: Clock) -> FakeRuntime:
    r = FakeRuntime("mkt", clock=clock, preloaded=["busybox:1.36"], unpullable=["bad/image:1"])
    await r.ensure_network(NET, "10.214.7.0/24", "10.214.7.1")
    return r


@pytest.fixture(autouse=True)
async def default_sa(registry: Registry) -> None:
    sa = registry.catalog.get("", "v1", "serviceaccounts")
    if registry.try_get(sa, "default", "default") is None:
        await registry.create(sa, "default", {"metadata": {"name": "default"}})


def make_kubelet(registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path) -> Kubelet:
    p = pki.ensure(tmp_path / "state")
    return Kubelet(
        registry,
        runtime,
        node_name="node1",
        state_dir=tmp_path,
        network=NET,
        node_ip="192.0.2.10",
        clock=clock,
        tokens=tokens.TokenIssuer(p.sa_key, registry),
        ca_pem=p.ca_cert.read_bytes(),
    )


def pod_body(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": "node1", "containers": containers, **spec},
    }


def c(name: str = "app", image: str = "busybox:1.36", **kw: Any) -> dict[str, Any]:
    return {"name": name, "image": image, **kw}


async def create(registry: Registry, body: dict[str, Any]) -> dict[str, Any]:
    return await registry.create(registry.catalog.get("", "v1", "pods"), "default", body)


def get(registry: Registry, name: str) -> dict[str, Any] | None:
    return registry.try_get(registry.catalog.get("", "v1", "pods"), "default", name)


def cond(pod: dict[str, Any], type_: str) -> str:
    return next(x["status"] for x in pod["status"]["conditions"] if x["type"] == type_)


def reasons(registry: Registry, name: str) -> list[str]:
    ev = registry.catalog.get("", "v1", "events")
    items = [e for e in registry.list(ev, "default").items if e["involvedObject"]["name"] == name]
    return [e["reason"] for e in sorted(items, key=lambda e: int(e["metadata"]["resourceVersion"]))]


async def sync(k: Kubelet, registry: Registry, name: str) -> dict[str, Any]:
    pod = get(registry, name)
    assert pod is not None
    k.pods[pod["metadata"]["uid"]] = pod
    await k.sync_pod(pod["metadata"]["uid"])
    out = get(registry, name)
    assert out is not None
    return out


async def test_pending_running_ready(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    probe = {"exec": {"command": ["true"]}, "initialDelaySeconds": 5, "periodSeconds": 10}
    await create(
        registry, pod_body("web", [c(readinessProbe=probe, ports=[{"containerPort": 80}])])
    )
    assert get(registry, "web")["status"]["phase"] == "Pending"
    k = make_kubelet(registry, runtime, clock, tmp_path)
    await k.adopt()
    pod = await sync(k, registry, "web")
    st = pod["status"]
    assert st["phase"] == "Running"
    assert st["podIP"].startswith("10.214.7.") and st["hostIP"] == "192.0.2.10"
    [cs] = st["containerStatuses"]
    assert "running" in cs["state"] and cs["containerID"].startswith("podman://")
    assert cs["ready"] is False and cs["restartCount"] == 0 and cs["started"] is True
    assert cond(pod, "Ready") == "False" and cond(pod, "PodReadyToStartContainers") == "True"
    assert cond(pod, "Initialized") == "True"
    clock.advance(6)
    pod = await sync(k, registry, "web")
    assert pod["status"]["containerStatuses"][0]["ready"] is True
    assert cond(pod, "Ready") == "True" and cond(pod, "ContainersReady") == "True"
    assert reasons(registry, "web") == ["Pulled", "Created", "Started"]
    # a resync with nothing new writes nothing
    rv = pod["metadata"]["resourceVersion"]
    assert (await sync(k, registry, "web"))["metadata"]["resourceVersion"] == rv


async def test_crash_loop_backoff_timing(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    env = [{"name": fake.EXIT_AFTER, "value": "1"}, {"name": fake.EXIT_CODE, "value": "2"}]
    await create(registry, pod_body("crash", [c(env=env)]))
    k = make_kubelet(registry, runtime, clock, tmp_path)
    await k.adopt()
    await sync(k, registry, "crash")
    clock.advance(2)  # exits at +1; first restart is immediate
    pod = await sync(k, registry, "crash")
    cs = pod["status"]["containerStatuses"][0]
    assert cs["restartCount"] == 1 and "running" in cs["state"]
    assert cs["lastState"]["terminated"]["exitCode"] == 2
    clock.advance(2)  # second exit at +1 after restart: back-off 10 s
    pod = await sync(k, registry, "crash")
    cs = pod["status"]["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["state"]["waiting"]["message"].startswith(
        "back-off 10s restarting failed container=app pod=crash_default("
    )
    assert cs["lastState"]["terminated"]["exitCode"] == 2 and cs["restartCount"] == 1
    assert cs["ready"] is False
    assert pod["status"]["phase"] == "Running"
    clock.advance(7)  # 8 s after the exit: still backing off
    pod = await sync(k, registry, "crash")
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    clock.advance(3)  # 11 s after the exit: restart
    pod = await sync(k, registry, "crash")
    cs = pod["status"]["containerStatuses"][0]
    assert cs["restartCount"] == 2 and "running" in cs["state"]
    clock.advance(2)
    pod = await sync(k, registry, "crash")
    msg = pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    assert msg.startswith("back-off 20s restarting")
    assert "BackOff" in reasons(registry, "crash")
    # only the latest two attempts are kept in the runtime
    assert len(await runtime.list_containers({"io.microkube.pod-uid": pod["metadata"]["uid"]})) <= 2


async def test_restart_policy_never_and_on_failure(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    ok = [{"name": fake.EXIT_AFTER, "value": "1"}]
    bad = ok + [{"name": fake.EXIT_CODE, "value": "1"}]
    await create(registry, pod_body("job", [c(env=ok)], restartPolicy="OnFailure"))
    await create(registry, pod_body("fail", [c(env=bad)], restartPolicy="Never"))
    k = make_kubelet(registry, runtime, clock, tmp_path)
    await k.adopt()
    await sync(k, registry, "job")
    await sync(k, registry, "fail")
    clock.advance(2)
    job = await sync(k, registry, "job")
    fail = await sync(k, registry, "fail")
    assert job["status"]["phase"] == "Succeeded"
    assert job["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert cond(job, "Ready") == "False"
    assert fail["status"]["phase"] == "Failed"
    assert fail["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1


async def test_init_containers_run_first_and_config_map(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    cm = registry.catalog.get("", "v1", "configmaps")
    await registry.create(
        cm, "default", {"metadata": {"name": "cfg"}, "data": {"greeting": "hi", "mode": "x"}}
    )
    init = c("setup", env=[{"name": fake.EXIT_AFTER, "value": "1"}])
    main = c(
        "app",
        command=["echo", "$(GREETING)"],
        env=[
            {
                "name": "GREETING",
                "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}},
            },
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
        envFrom=[{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        volumeMounts=[{"name": "conf", "mountPath": "/etc/conf"}],
    )
    await create(
        registry,
        pod_body(
            "ordered",
            [main],
            initContainers=[init],
            volumes=[
                {
                    "name": "conf",
                    "configMap": {"name": "cfg", "items": [{"key": "greeting", "path": "g.txt"}]},
                }
            ],
        ),
    )
    k = make_kubelet(registry, runtime, clock, tmp_path)
    await k.adopt()
    pod = await sync(k, registry, "ordered")
    assert pod["status"]["phase"] == "Pending"
    assert cond(pod, "Initialized") == "False"
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    names = [x.config.name for x in runtime.containers.values()]
    assert names == ["setup"]
    clock.advance(2)
    pod = await sync(k, registry, "ordered")
    pod = await sync(k, registry, "ordered")
    assert pod["status"]["phase"] == "Running", pod["status"]
    assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    app = next(x for x in runtime.containers.values() if x.config.name == "app")
    assert app.config.command == ["echo", "hi"]
    assert app.config.env["POD"] == "ordered" and app.config.env["CFG_mode"] == "x"
    assert app.config.env["IP"] == pod["status"]["podIP"]
    assert app.config.env["KUBERNETES_SERVICE_HOST"]
    mount = next(m for m in app.config.mounts if m.container_path == "/etc/conf")
    assert (Path(mount.host_path) / "g.txt").read_text() == "hi"

    # updates reach the running pod's volume
    def change(o: dict[str, Any]) -> dict[str, Any]:
        o["data"]["greeting"] = "hello"
        return o

    await registry.guaranteed_update(cm, "default", "cfg", change)
    await sync(k, registry, "ordered")
    assert (Path(mount.host_path) / "g.txt").read_text() == "hello"
    sa = next(m for m in app.config.mounts if m.container_path.endswith("serviceaccount"))
    assert (Path(sa.host_path) / "namespace").read_text() == "default"


async def test_missing_config_map_key_is_config_error(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    env = [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]
    await create(registry, pod_body("cfgerr", [c(env=env)]))
    k = make_kubelet(registry, runtime, clock, tmp_path)
    await k.adopt()
    pod = await sync(k, registry, "cfgerr")
    w = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert w == {"reason": "CreateContainerConfigError", "message": 'configmap "nope" not found'}


async def test_image_pull_backoff(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    await create(registry, pod_body("badimg", [c(image="bad/image:1")]))
    k = make_kubelet(registry, runtime, clock, tmp_path)
    await k.adopt()
    pod = await sync(k, registry, "badimg")
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull"
    clock.advance(1)
    pod = await sync(k, registry, "badimg")
    w = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert w["reason"] == "ImagePullBackOff"
    assert w["message"].startswith('Back-off pulling image "bad/image:1"')
    assert pod["status"]["phase"] == "Pending"
    r = reasons(registry, "badimg")
    assert r[:3] == ["Pulling", "Failed", "Failed"] and "BackOff" in r
    clock.advance(10)
    pod = await sync(k, registry, "badimg")
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull"


async def test_deletion_stops_and_deletes(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    await create(registry, pod_body("gone", [c()]))
    k = make_kubelet(registry, runtime, clock, tmp_path)
    await k.adopt()
    pod = await sync(k, registry, "gone")
    uid = pod["metadata"]["uid"]
    pods = registry.catalog.get("", "v1", "pods")
    _, now = await registry.delete(pods, "default", "gone", DeleteOptions())
    assert not now
    deleting = get(registry, "gone")
    assert deleting is not None and deleting["metadata"]["deletionTimestamp"]
    k.pods[uid] = deleting
    assert await k.sync_pod(uid) is None
    assert get(registry, "gone") is None
    assert await runtime.list_sandboxes({"io.microkube.pod-uid": uid}) == []
    assert not (tmp_path / "pods" / uid).exists()
    assert "Killing" in reasons(registry, "gone")


async def test_adoption_keeps_containers_and_removes_orphans(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    await create(registry, pod_body("keep", [c()]))
    await create(registry, pod_body("drop", [c()]))
    k = make_kubelet(registry, runtime, clock, tmp_path)
    await k.adopt()
    keep = await sync(k, registry, "keep")
    drop = await sync(k, registry, "drop")
    cid = keep["status"]["containerStatuses"][0]["containerID"]
    # the pod "drop" vanishes while the kubelet is down
    pods = registry.catalog.get("", "v1", "pods")
    await registry.delete(pods, "default", "drop", DeleteOptions(grace_period_seconds=0))
    k2 = make_kubelet(registry, runtime, clock, tmp_path)
    await k2.adopt()
    keep = await sync(k2, registry, "keep")
    assert keep["status"]["containerStatuses"][0]["containerID"] == cid
    assert keep["status"]["containerStatuses"][0]["restartCount"] == 0
    assert await runtime.list_sandboxes({"io.microkube.pod-uid": drop["metadata"]["uid"]}) == []


async def test_liveness_failure_restarts_container(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    probe = {"exec": {"command": ["check"]}, "periodSeconds": 5, "failureThreshold": 2}
    env = [{"name": fake.EXEC_EXIT_CODE, "value": "1"}]
    await create(registry, pod_body("sick", [c(livenessProbe=probe, env=env)]))
    k = make_kubelet(registry, runtime, clock, tmp_path)
    await k.adopt()
    await sync(k, registry, "sick")  # starts; first probe due now: failure 1
    pod = await sync(k, registry, "sick")
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    clock.advance(5)  # failure 2: killed
    await sync(k, registry, "sick")
    pod = await sync(k, registry, "sick")  # restarted (first restart is immediate)
    cs = pod["status"]["containerStatuses"][0]
    assert cs["restartCount"] == 1 and "running" in cs["state"]
    r = reasons(registry, "sick")
    assert "Unhealthy" in r and "Killing" in r
    ev = registry.catalog.get("", "v1", "events")
    msgs = [e["message"] for e in registry.list(ev, "default").items]
    assert "Container app failed liveness probe, will be restarted" in msgs
    assert any(m.startswith("Liveness probe failed:") for m in msgs)


async def test_active_deadline_fails_pod(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    await create(registry, pod_body("slow", [c()], activeDeadlineSeconds=30))
    k = make_kubelet(registry, runtime, clock, tmp_path)
    await k.adopt()
    await sync(k, registry, "slow")
    clock.advance(31)
    pod = await sync(k, registry, "slow")
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["reason"] == "DeadlineExceeded"
    assert "terminated" in pod["status"]["containerStatuses"][0]["state"]


async def test_secret_downward_and_projected_volumes(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    secrets = registry.catalog.get("", "v1", "secrets")
    await registry.create(
        secrets, "default", {"metadata": {"name": "s"}, "data": {"password": "c2VjcmV0"}}
    )
    vols = [
        {"name": "sec", "secret": {"secretName": "s", "defaultMode": 0o400}},
        {"name": "opt", "secret": {"secretName": "missing", "optional": True}},
        {
            "name": "down",
            "downwardAPI": {
                "items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                ]
            },
        },
        {
            "name": "proj",
            "projected": {
                "sources": [
                    {"secret": {"name": "s", "items": [{"key": "password", "path": "pw"}]}},
                    {"serviceAccountToken": {"path": "tok", "audience": "vault"}},
                ]
            },
        },
        {"name": "host", "hostPath": {"path": str(tmp_path / "hp"), "type": "DirectoryOrCreate"}},
    ]
    mounts = [{"name": v["name"], "mountPath": f"/v/{v['name']}"} for v in vols]
    body = pod_body("vols", [c(volumeMounts=mounts)], volumes=vols)
    body["metadata"]["labels"] = {"app": "x", "tier": "web"}
    await create(registry, body)
    k = make_kubelet(registry, runtime, clock, tmp_path)
    await k.adopt()
    pod = await sync(k, registry, "vols")
    assert pod["status"]["phase"] == "Running", reasons(registry, "vols")
    app = next(iter(runtime.containers.values()))
    host = {m.container_path: Path(m.host_path) for m in app.config.mounts}
    assert (host["/v/sec"] / "password").read_text() == "secret"
    assert (host["/v/sec"] / "password").resolve().stat().st_mode & 0o777 == 0o400
    assert list(host["/v/opt"].iterdir()) == [] or all(
        p.name.startswith("..") for p in host["/v/opt"].iterdir()
    )
    assert (host["/v/down"] / "labels").read_text() == 'app="x"\ntier="web"'
    assert (host["/v/down"] / "name").read_text() == "vols"
    assert (host["/v/proj"] / "pw").read_text() == "secret"
    assert (host["/v/proj"] / "tok").read_text().count(".") == 2
    assert host["/v/host"] == tmp_path / "hp" and (tmp_path / "hp").is_dir()


async def test_missing_secret_volume_waits_with_failed_mount(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    vols = [{"name": "sec", "secret": {"secretName": "nope"}}]
    await create(registry, pod_body("nomount", [c()], volumes=vols))
    k = make_kubelet(registry, runtime, clock, tmp_path)
    await k.adopt()
    pod = await sync(k, registry, "nomount")
    assert pod["status"]["phase"] == "Pending"
    ev = registry.catalog.get("", "v1", "events")
    [e] = [e for e in registry.list(ev, "default").items if e["reason"] == "FailedMount"]
    assert e["message"] == 'MountVolume.SetUp failed for volume "sec" : secret "nope" not found'


async def test_run_loop_follows_the_api(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    import asyncio

    k = make_kubelet(registry, runtime, clock, tmp_path)
    task = asyncio.create_task(k.run())

    async def until(pred: Any) -> None:
        for _ in range(200):
            if pred():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("condition not reached")

    try:
        await create(registry, pod_body("live", [c()]))
        await until(
            lambda: (get(registry, "live") or {}).get("status", {}).get("phase") == "Running"
        )
        pods = registry.catalog.get("", "v1", "pods")
        await registry.delete(pods, "default", "live", DeleteOptions())
        await until(lambda: get(registry, "live") is None)
        await until(lambda: not runtime.sandboxes)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_image_change_restarts_container(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    await create(registry, pod_body("img", [c()], restartPolicy="Never"))
    k = make_kubelet(registry, runtime, clock, tmp_path)
    await k.adopt()
    before = (await sync(k, registry, "img"))["status"]["containerStatuses"][0]
    pods = registry.catalog.get("", "v1", "pods")

    def set_image(p: dict[str, Any]) -> dict[str, Any]:
        p["spec"]["containers"][0]["image"] = "busybox:1.37"
        return p

    await registry.guaranteed_update(pods, "default", "img", set_image)
    pod = await sync(k, registry, "img")
    cs = pod["status"]["containerStatuses"][0]
    assert cs["image"] == "busybox:1.37" and "running" in cs["state"]
    assert cs["containerID"] != before["containerID"] and cs["restartCount"] == 1
    ev = registry.catalog.get("", "v1", "events")
    assert "Container app definition changed, will be restarted" in [
        e["message"] for e in registry.list(ev, "default").items
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="tmpfs needs root")
async def test_memory_empty_dir_is_tmpfs(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    vols = [{"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}]
    mounts = [{"name": "mem", "mountPath": "/mem"}]
    await create(registry, pod_body("ram", [c(volumeMounts=mounts)], volumes=vols))
    k = make_kubelet(registry, runtime, clock, tmp_path)
    await k.adopt()
    uid = get(registry, "ram")["metadata"]["uid"]  # type: ignore[index]
    try:
        await sync(k, registry, "ram")
        app = next(iter(runtime.containers.values()))
        host = next(m.host_path for m in app.config.mounts if m.container_path == "/mem")
        assert Path(host).is_mount()  # noqa: ASYNC240
        assert os.statvfs(host).f_blocks * os.statvfs(host).f_frsize == 16 * 2**20
    finally:
        # A fresh manager (as after a restart) finds the mount in /proc/self/mounts.
        VolumeManager(registry, tmp_path / "pods").cleanup(uid)
        k.volumes.cleanup(uid)  # never leave a tmpfs mounted under pytest's tmp dirs
    assert not Path(host).exists()  # noqa: ASYNC240


async def test_lost_pod_network_is_recreated(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    from microkube.kubelet import runtime as rt

    await runtime.remove_network(NET)
    await create(registry, pod_body("netless", [c()]))
    k = make_kubelet(registry, runtime, clock, tmp_path)
    k.network_cidr = ("10.214.7.0/24", "10.214.7.1")
    await k.adopt()
    with pytest.raises(rt.ContainerRuntimeError):
        await sync(k, registry, "netless")
    assert "FailedCreatePodSandBox" in reasons(registry, "netless")
    pod = await sync(k, registry, "netless")
    assert pod["status"]["phase"] == "Running"


async def test_termination_message_file_and_log_fallback(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    env = [{"name": fake.EXIT_AFTER, "value": "1"}, {"name": fake.EXIT_CODE, "value": "1"}]
    await create(
        registry,
        pod_body(
            "msg",
            [
                c("file", env=env),
                c("logs", env=env, terminationMessagePolicy="FallbackToLogsOnError"),
            ],
            restartPolicy="Never",
        ),
    )
    k = make_kubelet(registry, runtime, clock, tmp_path)
    await k.adopt()
    await sync(k, registry, "msg")
    file_c = next(x for x in runtime.containers.values() if x.config.name == "file")
    log_file = next(
        m.host_path for m in file_c.config.mounts if m.container_path == "/dev/termination-log"
    )
    Path(log_file).write_text("boom")  # noqa: ASYNC240 - the container writes it
    clock.advance(2)
    pod = await sync(k, registry, "msg")
    st = {s["name"]: s["state"]["terminated"] for s in pod["status"]["containerStatuses"]}
    assert st["file"]["message"] == "boom"
    assert "fake container logs exited 1" in st["logs"]["message"]
    assert pod["status"]["phase"] == "Failed"


async def test_sidecar_init_container(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    sidecar = c("proxy", restartPolicy="Always")
    job = c("job", env=[{"name": fake.EXIT_AFTER, "value": "5"}])
    await create(registry, pod_body("side", [job], initContainers=[sidecar], restartPolicy="Never"))
    k = make_kubelet(registry, runtime, clock, tmp_path)
    await k.adopt()
    pod = await sync(k, registry, "side")  # sidecar started: main may start next
    assert [x.config.name for x in runtime.containers.values()] == ["proxy"]
    pod = await sync(k, registry, "side")
    assert pod["status"]["phase"] == "Running"
    assert cond(pod, "Initialized") == "True" and cond(pod, "Ready") == "True"
    [side] = pod["status"]["initContainerStatuses"]
    assert "running" in side["state"] and side["ready"] and side["started"]
    clock.advance(6)  # the main container completes: the sidecar is stopped, pod Succeeded
    pod = await sync(k, registry, "side")
    pod = await sync(k, registry, "side")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    states = [x.status.state for x in runtime.containers.values()]
    assert states == ["exited", "exited"]


async def test_readiness_gate_condition_change_updates_ready_at_once(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    import asyncio

    k = make_kubelet(registry, runtime, clock, tmp_path)
    k.resync = k.pleg.period = 3600.0  # only the pod's own change can wake the kubelet
    task = asyncio.create_task(k.run())
    pods = registry.catalog.get("", "v1", "pods")

    async def ready_is(value: str) -> None:
        for _ in range(200):
            pod = get(registry, "gated") or {}
            if any(
                x["type"] == "Ready" and x["status"] == value
                for x in (pod.get("status") or {}).get("conditions") or []
            ):
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"Ready never became {value}")

    try:
        body = pod_body("gated", [c()], readinessGates=[{"conditionType": "example.com/lb"}])
        await create(registry, body)
        await ready_is("False")

        def set_gate(pod: dict[str, Any]) -> dict[str, Any]:
            pod["status"]["conditions"].append({"type": "example.com/lb", "status": "True"})
            return pod

        await registry.guaranteed_update(pods, "default", "gated", set_gate, subresource="status")
        await ready_is("True")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_host_network_pod_has_the_node_ip(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    await create(registry, pod_body("hostnet", [c()], hostNetwork=True))
    k = make_kubelet(registry, runtime, clock, tmp_path)
    await k.adopt()
    pod = await sync(k, registry, "hostnet")
    assert pod["status"]["podIP"] == pod["status"]["hostIP"] == "192.0.2.10"
    assert pod["status"]["podIPs"] == [{"ip": "192.0.2.10"}]
    [sb] = runtime.sandboxes.values()
    assert sb.host_network and sb.ip == ""  # no address taken from the pod network


async def test_finished_pod_releases_its_sandbox_and_keeps_logs(
    registry: Registry, runtime: FakeRuntime, clock: Clock, tmp_path: Path
) -> None:
    env = [{"name": fake.EXIT_AFTER, "value": "1"}]
    await create(registry, pod_body("done", [c(env=env)], restartPolicy="Never"))
    k = make_kubelet(registry, runtime, clock, tmp_path)
    await k.adopt()
    await sync(k, registry, "done")
    clock.advance(2)
    pod = await sync(k, registry, "done")
    assert pod["status"]["phase"] == "Succeeded"
    uid = pod["metadata"]["uid"]
    assert await k.sync_pod(uid) is None  # the terminal step: nothing more to do
    [sb] = runtime.sandboxes.values()
    assert sb.state == "notready" and sb.ip == ""
    [ctr] = await runtime.list_containers({"io.microkube.pod-uid": uid})
    lines = [x.data async for x in runtime.logs(ctr.id)]
    assert lines and b"exited 0" in lines[-1]
    after = get(registry, "done")
    assert after is not None and after["status"]["podIP"] == pod["status"]["podIP"]
