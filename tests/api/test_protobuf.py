"""Decoding of Kubernetes protobuf request bodies (microkube.api.protobuf).

The ``tests/data/protobuf/v1.3x/*.pb`` bodies were sent by the real kubectl
1.32/1.33 (see ``tests/data/protobuf/capture.py``); the ``*.json`` beside them
are the same commands' ``-o json --dry-run=client`` output, i.e. kubectl's own
JSON rendering of the object it encoded: the golden form.
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest

from microkube import errors
from microkube.api import protobuf

DATA = Path(__file__).resolve().parent.parent / "data" / "protobuf"
VERSIONS = ("v1.32", "v1.33")
GOLDEN = sorted(
    (v, p.stem)
    for v in VERSIONS
    for p in (DATA / v).glob("*.pb")
    if p.with_suffix(".json").exists()
)


def body(version: str, name: str) -> dict[str, Any]:
    return protobuf.decode((DATA / version / f"{name}.pb").read_bytes())


@pytest.mark.parametrize(("version", "name"), GOLDEN)
def test_decoded_body_matches_kubectl_json(version: str, name: str) -> None:
    """Exactly kubectl's JSON: zero non-pointer omitempty scalars are dropped."""
    golden = json.loads((DATA / version / f"{name}.json").read_text())
    assert body(version, name) == golden


def test_every_capture_is_decodable() -> None:
    captured = [p for v in VERSIONS for p in (DATA / v).glob("*.pb")]
    assert len(captured) >= 50
    for path in captured:
        assert protobuf.decode(path.read_bytes())["kind"]


@pytest.mark.parametrize("version", VERSIONS)
def test_deployment(version: str) -> None:
    obj = body(version, "deployment")
    assert (obj["apiVersion"], obj["kind"]) == ("apps/v1", "Deployment")
    assert obj["metadata"]["name"] == "web"
    assert obj["metadata"]["labels"] == {"app": "web"}
    assert obj["metadata"]["creationTimestamp"] is None
    spec = obj["spec"]
    assert spec["replicas"] == 2
    assert spec["selector"] == {"matchLabels": {"app": "web"}}
    (container,) = spec["template"]["spec"]["containers"]
    assert container["name"] == "nginx"
    assert container["image"] == "nginx:1.25"
    assert container["ports"][0]["containerPort"] == 80
    assert container["resources"] == {}


def test_zero_replicas_survive() -> None:
    """A pointer field sent as 0 is present on the wire and must not vanish."""
    assert body("v1.33", "deployment-zero")["spec"]["replicas"] == 0


def test_secret_data_is_base64() -> None:
    obj = body("v1.33", "secret-generic")
    assert obj["data"] == {
        "a": base64.b64encode(b"b").decode(),
        "f.txt": base64.b64encode(b"file-content\n").decode(),
    }
    tls = body("v1.33", "secret-tls")
    assert tls["type"] == "kubernetes.io/tls"
    assert base64.b64decode(tls["data"]["tls.crt"]).startswith(b"-----BEGIN CERTIFICATE-----")
    reg = body("v1.32", "secret-docker-registry")
    assert reg["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(reg["data"][".dockerconfigjson"]))
    assert config["auths"]["r.io"]["username"] == "u"


def test_configmap_data() -> None:
    assert body("v1.32", "configmap")["data"] == {"a": "b", "f.txt": "file-content\n"}


def test_services() -> None:
    nodeport = body("v1.33", "service-nodeport")["spec"]
    assert nodeport["type"] == "NodePort"
    (port,) = nodeport["ports"]
    assert (port["port"], port["targetPort"], port["nodePort"]) == (80, 8080, 30080)
    assert port["name"] == "80-8080" and port["protocol"] == "TCP"
    assert body("v1.33", "service-headless")["spec"]["clusterIP"] == "None"
    assert body("v1.33", "service-externalname")["spec"]["externalName"] == "example.com"
    assert body("v1.33", "service-loadbalancer")["spec"]["type"] == "LoadBalancer"


def test_int_or_string() -> None:
    assert body("v1.33", "pdb")["spec"]["minAvailable"] == 1
    assert body("v1.33", "pdb-percent")["spec"]["maxUnavailable"] == "50%"


def test_quantities_are_strings() -> None:
    hard = body("v1.33", "quota")["spec"]["hard"]
    assert hard == {"pods": "10", "requests.cpu": "500m", "requests.memory": "1Gi"}


def test_rbac() -> None:
    role = body("v1.33", "role")
    assert role["rules"] == [
        {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]},
        {"verbs": ["get", "list"], "apiGroups": ["apps"], "resources": ["deployments"]},
    ]
    binding = body("v1.33", "rolebinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "view",
    }
    assert [s["name"] for s in binding["subjects"]] == ["bob", "sa1"]
    assert body("v1.33", "clusterrolebinding")["subjects"][0]["kind"] == "Group"


def test_priority_class_and_ingress() -> None:
    pc = body("v1.33", "priorityclass")
    assert (pc["value"], pc["description"], pc["preemptionPolicy"]) == (1000, "high", "Never")
    ingress = body("v1.33", "ingress")["spec"]
    assert ingress["ingressClassName"] == "nginx"
    first, second = ingress["rules"]  # IngressRuleValue is inlined
    assert first["http"]["paths"][0]["backend"]["service"]["port"]["number"] == 80
    assert second["http"]["paths"][0]["pathType"] == "Prefix"
    assert ingress["tls"] == [{"hosts": ["bar.com"], "secretName": "cert1"}]


def test_jobs() -> None:
    cron = body("v1.33", "cronjob")
    assert cron["spec"]["schedule"] == "*/1 * * * *"
    template = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert template["containers"][0]["command"] == ["date"]
    assert template["restartPolicy"] == "OnFailure"
    job = body("v1.33", "job-from-cronjob")
    assert job["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual"}
    (owner,) = job["metadata"]["ownerReferences"]
    assert owner["kind"] == "CronJob" and owner["controller"] is True


@pytest.mark.parametrize("version", VERSIONS)
def test_auth_requests(version: str) -> None:
    token = body(version, "token")
    assert (token["apiVersion"], token["kind"]) == ("authentication.k8s.io/v1", "TokenRequest")
    assert token["spec"] == {"audiences": ["api"], "expirationSeconds": 3600}
    review = body(version, "can-i")
    assert review["kind"] == "SelfSubjectAccessReview"
    attrs = review["spec"]["resourceAttributes"]
    assert (attrs["verb"], attrs["resource"], attrs["namespace"]) == ("get", "pods", "default")
    rules = body(version, "can-i-list")
    assert (rules["kind"], rules["spec"]) == ("SelfSubjectRulesReview", {"namespace": "default"})
    assert body(version, "whoami")["kind"] == "SelfSubjectReview"


# --- hand-encoded bodies ------------------------------------------------------


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def v(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def b(number: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def envelope(api_version: str, kind: str, raw: bytes, *extra: bytes) -> bytes:
    return protobuf.MAGIC + b(1, b(1, api_version) + b(2, kind)) + b(2, raw) + b"".join(extra)


def test_times_and_negative_ints() -> None:
    meta = (
        b(1, "x")
        + v(7, -5)  # generation: int64 two's complement
        + b(8, v(1, 1704164705))  # creationTimestamp
        + b(9, v(1, 1704164705) + v(2, 999_999_999))  # deletionTimestamp drops nanos
        + v(10, 0)  # deletionGracePeriodSeconds present as 0
    )
    obj = protobuf.decode(envelope("v1", "ConfigMap", b(1, meta)))
    assert obj["metadata"] == {
        "name": "x",
        "generation": -5,
        "creationTimestamp": "2024-01-02T03:05:05Z",
        "deletionTimestamp": "2024-01-02T03:05:05Z",
        "deletionGracePeriodSeconds": 0,
    }


def test_micro_time_and_duration() -> None:
    event = b(1, b(1, "e")) + b(2, v(1, 1704164705) + v(2, 123456000))  # events/v1 eventTime
    assert protobuf.decode(envelope("events.k8s.io/v1", "Event", event))["eventTime"] == (
        "2024-01-02T03:05:05.123456Z"
    )
    assert [protobuf.go_duration(n) for n in (0, 1500, 2_500_000, 1_500_000_000)] == [
        "0s",
        "1.5µs",
        "2.5ms",
        "1.5s",
    ]
    assert protobuf.go_duration(3_600_000_000_000) == "1h0m0s"
    assert protobuf.go_duration(-90_000_000_000) == "-1m30s"


def test_packed_and_unpacked_repeated_scalars() -> None:
    # PodSecurityContext.supplementalGroups (4, repeated int64): proto2 encoders
    # write it unpacked, proto3-style ones packed; both must decode.
    unpacked = v(4, 1) + v(4, 2)
    packed = b(4, _varint(3) + _varint(-1))
    spec = b(14, unpacked + packed)  # PodSpec.securityContext
    pod = b(2, spec)
    obj = protobuf.decode(envelope("v1", "Pod", pod))
    assert obj["spec"]["securityContext"]["supplementalGroups"] == [1, 2, 3, -1]


def test_go_omitempty_versus_pointer_zeros() -> None:
    """gogo writes every non-pointer scalar; Go's JSON drops omitempty zeros only."""
    container = b(1, "c") + b(2, "img") + v(16, 0)  # stdin: bool omitempty
    spec = (
        b(2, container)
        + b(3, "")  # restartPolicy "": omitempty string, dropped
        + v(11, 0)  # hostNetwork false: omitempty bool, dropped
        + v(21, 0)  # automountServiceAccountToken false: *bool, kept
        + v(4, 0)  # terminationGracePeriodSeconds 0: *int64, kept
    )
    obj = protobuf.decode(envelope("v1", "Pod", b(2, spec)))
    assert obj["spec"] == {
        "containers": [{"name": "c", "image": "img"}],
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 0,
    }


def test_unknown_fields_are_skipped() -> None:
    raw = b(1, b(1, "cm") + b(999, "future")) + b(2, b(1, "k") + b(2, "v")) + v(77, 1)
    assert protobuf.decode(envelope("v1", "ConfigMap", raw)) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm"},
        "data": {"k": "v"},
    }


def test_binary_data_inline_volume_and_raw_extension() -> None:
    cm = b(3, b(1, "bin") + b(2, b"\x00\xff"))  # ConfigMap.binaryData
    assert protobuf.decode(envelope("v1", "ConfigMap", cm))["binaryData"] == {"bin": "AP8="}
    volume = b(1, "data") + b(2, b(2, b""))  # Volume{name, VolumeSource{emptyDir: {}}}
    pod = b(2, b(1, volume))
    assert protobuf.decode(envelope("v1", "Pod", pod))["spec"]["volumes"] == [
        {"name": "data", "emptyDir": {}}
    ]
    revision = b(2, b(1, b'{"spec": {"a": 1}}')) + v(3, 4)  # ControllerRevision.data
    obj = protobuf.decode(envelope("apps/v1", "ControllerRevision", revision))
    assert obj["data"] == {"spec": {"a": 1}} and obj["revision"] == 4
    managed = b(1, b(17, b(1, "kubectl") + b(7, b(1, b'{"f:data":{}}'))))
    assert protobuf.decode(envelope("v1", "ConfigMap", managed))["metadata"]["managedFields"] == [
        {"manager": "kubectl", "fieldsV1": {"f:data": {}}}
    ]


def test_named_slices_become_arrays() -> None:
    extra = b(4, b(1, "scopes") + b(2, b(1, "a") + b(1, "b")))  # UserInfo.extra
    review = b(3, v(1, 1) + b(2, b(1, "alice") + extra))  # TokenReview.status.user
    obj = protobuf.decode(envelope("authentication.k8s.io/v1", "TokenReview", review))
    assert obj["status"]["user"] == {"username": "alice", "extra": {"scopes": ["a", "b"]}}


def test_eviction_and_delete_options() -> None:
    eviction = b(1, b(1, "p1") + b(3, "default")) + b(2, v(1, 0) + b(2, b(1, "uid-1")))
    obj = protobuf.decode(envelope("policy/v1", "Eviction", eviction))
    assert obj["deleteOptions"] == {"gracePeriodSeconds": 0, "preconditions": {"uid": "uid-1"}}
    options = protobuf.decode(envelope("v1", "DeleteOptions", b(4, "Foreground")))
    assert options == {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Foreground",
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "magic"),
        (b'{"kind": "Pod"}', "magic"),
        (protobuf.MAGIC, "apiVersion/kind"),
        (envelope("v1", "Frobnicator", b""), "not supported in protobuf"),
        (envelope("example.com/v1", "Widget", b""), "not supported in protobuf"),
        (envelope("v1", "ConfigMap", b"", b(3, "gzip")), "contentEncoding"),
        (envelope("v1", "ConfigMap", b(1, b"\x0a\x05ab")), "decode"),
        (envelope("v1", "ConfigMap", b(1, v(1, 3))), "decode"),
        (envelope("v1", "ConfigMap", b(1, b(1, b"\xff\xfe"))), "decode"),
        (envelope("v1", "ConfigMap", b"\x08" + b"\xff" * 11), "decode"),
        (envelope("v1", "ConfigMap", b(1, b(8, v(1, 10**15)))), "decode"),
        (envelope("apps/v1", "ControllerRevision", b(2, b(1, b"{nope"))), "decode"),
    ],
)
def test_malformed_bodies_are_bad_requests(data: bytes, message: str) -> None:
    with pytest.raises(errors.BadRequest) as caught:
        protobuf.decode(data)
    assert message in caught.value.message


def test_fuzzed_bodies_never_crash() -> None:
    rng = random.Random(1234)
    seeds = [p.read_bytes() for v in VERSIONS for p in sorted((DATA / v).glob("*.pb"))]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            pos = rng.randrange(len(protobuf.MAGIC), len(data))
            if op < 0.4:
                data[pos] = rng.randrange(256)
            elif op < 0.7:
                del data[pos:]
            else:
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            if len(data) <= len(protobuf.MAGIC):
                break
        try:
            obj = protobuf.decode(bytes(data))
        except errors.BadRequest:
            continue
        json.dumps(obj)  # whatever decodes is plain JSON


@pytest.mark.kubectl
def test_committed_schema_is_what_the_generator_makes(tmp_path: Path) -> None:
    """scripts/gen_proto_schema.py, run on this machine's kubectl, is reproducible."""
    import glob
    import subprocess
    import sys

    if not glob.glob("/usr/lib/google-cloud-sdk/bin/kubectl.1.33"):
        pytest.skip("kubectl 1.33 not installed")
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "schema.json.gz"
    subprocess.run(
        [
            sys.executable,
            str(root / "scripts/gen_proto_schema.py"),
            "--out",
            str(out),
            "--kubectl",
            "/usr/lib/google-cloud-sdk/bin/kubectl.1.33",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    committed = root / "microkube/api/data/proto_schema.json.gz"
    assert out.read_bytes() == committed.read_bytes()
