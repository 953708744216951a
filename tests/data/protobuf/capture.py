#!/usr/bin/env python3
"""Capture the protobuf bodies real kubectl sends, for tests/api/test_protobuf.py.

Runs a tiny plain-HTTP API server on 127.0.0.1 (client-go sends no
credentials over plain HTTP, so none are needed) that answers /version,
legacy discovery and POSTs (201 with a JSON echo), and saves every POST body
as ``<kubectl version>/<name>.pb``. For each ``create`` command it also saves
kubectl's own JSON rendering (``-o json --dry-run=client``) as
``<version>/<name>.json``: the golden form the decoded body must match.

Usage: ``python tests/data/protobuf/capture.py [1.32 1.33]`` (rewrites files here).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from microkube.api import protobuf  # noqa: E402

KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.{}"

# (group, version) -> [(plural, kind, namespaced, verbs)]
_RESOURCES: dict[tuple[str, str], list[tuple[str, str, bool]]] = {
    ("", "v1"): [
        ("namespaces", "Namespace", False),
        ("configmaps", "ConfigMap", True),
        ("secrets", "Secret", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("services", "Service", True),
        ("pods", "Pod", True),
        ("nodes", "Node", False),
        ("resourcequotas", "ResourceQuota", True),
    ],
    ("apps", "v1"): [("deployments", "Deployment", True)],
    ("batch", "v1"): [("jobs", "Job", True), ("cronjobs", "CronJob", True)],
    ("rbac.authorization.k8s.io", "v1"): [
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
    ],
    ("scheduling.k8s.io", "v1"): [("priorityclasses", "PriorityClass", False)],
    ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    ("networking.k8s.io", "v1"): [("ingresses", "Ingress", True)],
    ("authentication.k8s.io", "v1"): [("selfsubjectreviews", "SelfSubjectReview", False)],
    ("authorization.k8s.io", "v1"): [
        ("selfsubjectaccessreviews", "SelfSubjectAccessReview", False),
        ("selfsubjectrulesreviews", "SelfSubjectRulesReview", False),
    ],
}
_SUBRESOURCES = {
    ("", "v1"): [
        ("serviceaccounts/token", "authentication.k8s.io", "v1", "TokenRequest"),
        ("pods/eviction", "policy", "v1", "Eviction"),
        ("pods/binding", "", "v1", "Binding"),
    ]
}
_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]

_CRONJOB = {
    "apiVersion": "batch/v1",
    "kind": "CronJob",
    "metadata": {"name": "cj1", "namespace": "default", "uid": "1111-2222"},
    "spec": {
        "schedule": "*/1 * * * *",
        "jobTemplate": {
            "metadata": {"labels": {"app": "cj"}},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "OnFailure",
                        "containers": [{"name": "c", "image": "busybox", "args": ["date"]}],
                    }
                }
            },
        },
    },
}
_NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}, "spec": {}}
_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "p1",
        "namespace": "default",
        "uid": "3333",
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "rs",
                "uid": "4",
                "controller": True,
            }
        ],
    },
    "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx"}]},
}


def _resource_list(group: str, version: str) -> dict[str, Any]:
    gv = f"{group}/{version}" if group else version
    items: list[dict[str, Any]] = [
        {"name": p, "singularName": k.lower(), "namespaced": ns, "kind": k, "verbs": _VERBS}
        for p, k, ns in _RESOURCES[(group, version)]
    ]
    for name, g, v, kind in _SUBRESOURCES.get((group, version), []):
        items.append(
            {
                "name": name,
                "singularName": "",
                "namespaced": True,
                "group": g,
                "version": v,
                "kind": kind,
                "verbs": ["create"],
            }
        )
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": items}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/version":
            self._send(
                200,
                {"major": "1", "minor": "32", "gitVersion": "v1.32.4", "platform": "linux/amd64"},
            )
        elif path == "/api":
            self._send(
                200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
            )
        elif path == "/apis":
            groups = [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                    "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v},
                }
                for g, v in _RESOURCES
                if g
            ]
            self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        elif path == "/api/v1":
            self._send(200, _resource_list("", "v1"))
        elif path.startswith("/apis/") and path.count("/") == 3:
            _, _, group, version = path.split("/")
            if (group, version) in _RESOURCES:
                self._send(200, _resource_list(group, version))
            else:
                self._send(404, {"kind": "Status", "code": 404})
        elif path.endswith("/cronjobs/cj1"):
            self._send(200, _CRONJOB)
        elif path == "/api/v1/nodes/n1":
            self._send(200, _NODE)
        elif path == "/api/v1/pods":
            self._send(
                200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [_POD]}
            )
        else:
            self._send(
                404,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "NotFound",
                    "code": 404,
                    "message": "not found",
                },
            )

    def do_PATCH(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._send(200, _NODE)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.bodies.append((self.headers.get("Content-Type", ""), body))
        try:
            echo = protobuf.decode(body)
        except Exception:  # noqa: BLE001 - the capture must go on
            echo = json.loads(body) if body.startswith(b"{") else {}
        echo.setdefault("metadata", {}).setdefault("name", "x")
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        echo["metadata"].setdefault("creationTimestamp", now)
        self._send(201, echo)


class _Server(ThreadingHTTPServer):
    bodies: list[tuple[str, bytes]]


def _files(tmp: Path) -> None:
    (tmp / "f.txt").write_text("file-content\n")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=t",
            "-keyout",
            str(tmp / "tls.key"),
            "-out",
            str(tmp / "tls.crt"),
        ],
        check=True,
        capture_output=True,
    )


def commands(tmp: Path) -> dict[str, list[str]]:
    return {
        "namespace": ["create", "namespace", "ns1"],
        "configmap": [
            "create",
            "configmap",
            "cm1",
            "--from-literal=a=b",
            f"--from-file={tmp}/f.txt",
        ],
        "secret-generic": [
            "create",
            "secret",
            "generic",
            "s1",
            "--from-literal=a=b",
            f"--from-file={tmp}/f.txt",
        ],
        "secret-tls": [
            "create",
            "secret",
            "tls",
            "t1",
            f"--cert={tmp}/tls.crt",
            f"--key={tmp}/tls.key",
        ],
        "secret-docker-registry": [
            "create",
            "secret",
            "docker-registry",
            "reg",
            "--docker-server=r.io",
            "--docker-username=u",
            "--docker-password=p",
            "--docker-email=e@x.io",
        ],
        "serviceaccount": ["create", "serviceaccount", "sa1"],
        "deployment": [
            "create",
            "deployment",
            "web",
            "--image=nginx:1.25",
            "--replicas=2",
            "--port=80",
        ],
        "deployment-zero": ["create", "deployment", "idle", "--image=nginx", "--replicas=0"],
        "job": ["create", "job", "j1", "--image=busybox", "--", "echo", "hi"],
        "cronjob": [
            "create",
            "cronjob",
            "cj1",
            "--image=busybox",
            "--schedule=*/1 * * * *",
            "--",
            "date",
        ],
        "job-from-cronjob": ["create", "job", "j2", "--from=cronjob/cj1"],
        "service-clusterip": ["create", "service", "clusterip", "svc1", "--tcp=80:8080"],
        "service-headless": ["create", "service", "clusterip", "hl", "--clusterip=None"],
        "service-nodeport": [
            "create",
            "service",
            "nodeport",
            "np1",
            "--tcp=80:8080",
            "--node-port=30080",
        ],
        "service-loadbalancer": ["create", "service", "loadbalancer", "lb1", "--tcp=443:8443"],
        "service-externalname": [
            "create",
            "service",
            "externalname",
            "ext1",
            "--external-name=example.com",
        ],
        "role": [
            "create",
            "role",
            "r1",
            "--verb=get",
            "--verb=list",
            "--resource=pods",
            "--resource=deployments.apps",
        ],
        "rolebinding": [
            "create",
            "rolebinding",
            "rb1",
            "--clusterrole=view",
            "--user=bob",
            "--serviceaccount=default:sa1",
        ],
        "clusterrole": ["create", "clusterrole", "cr1", "--verb=get,list", "--resource=nodes"],
        "clusterrolebinding": [
            "create",
            "clusterrolebinding",
            "crb1",
            "--clusterrole=cr1",
            "--group=admins",
        ],
        "quota": ["create", "quota", "q1", "--hard=pods=10,requests.cpu=500m,requests.memory=1Gi"],
        "priorityclass": [
            "create",
            "priorityclass",
            "p1",
            "--value=1000",
            "--description=high",
            "--preemption-policy=Never",
        ],
        "pdb": ["create", "pdb", "pdb1", "--selector=app=x", "--min-available=1"],
        "pdb-percent": ["create", "pdb", "pdb2", "--selector=app=y", "--max-unavailable=50%"],
        "ingress": [
            "create",
            "ingress",
            "ing1",
            "--class=nginx",
            "--rule=foo.com/bar=svc:80",
            "--rule=bar.com/*=svc2:http,tls=cert1",
        ],
        "token": ["create", "token", "default", "--duration=1h", "--audience=api"],
        "can-i": ["auth", "can-i", "get", "pods"],
        "can-i-list": ["auth", "can-i", "--list"],
        "whoami": ["auth", "whoami"],
        "drain": ["drain", "n1", "--ignore-daemonsets", "--timeout=5s"],
    }


def capture(version: str, tmp: Path) -> None:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.bodies = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    home = tmp / f"home-{version}"
    (home / ".kube").mkdir(parents=True)
    kubeconfig = home / ".kube" / "config"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "x",
                "clusters": [
                    {"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}
                ],
                "users": [{"name": "u", "user": {}}],
                "contexts": [
                    {"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "default"}}
                ],
            }
        )
    )
    env = {**os.environ, "HOME": str(home), "KUBECONFIG": str(kubeconfig)}
    out = HERE / f"v{version}"
    out.mkdir(exist_ok=True)
    for name, args in commands(tmp).items():
        server.bodies.clear()
        run = subprocess.run(
            [KUBECTL.format(version), *args], env=env, capture_output=True, text=True, timeout=60
        )
        proto = [b for ct, b in server.bodies if "protobuf" in ct]
        print(
            f"{version} {name}: rc={run.returncode} bodies={[ct for ct, _ in server.bodies]}"
            f" {run.stderr.strip()[:200]}"
        )
        if proto:
            (out / f"{name}.pb").write_bytes(proto[0])
        if args[0] == "create" and name not in ("token",):
            cut = args.index("--") if "--" in args else len(args)
            dry_args = [*args[:cut], "-o", "json", "--dry-run=client", *args[cut:]]
            dry = subprocess.run(
                [KUBECTL.format(version), *dry_args],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if dry.returncode == 0:
                (out / f"{name}.json").write_text(dry.stdout)
    server.shutdown()


def main() -> None:
    versions = sys.argv[1:] or ["1.32", "1.33"]
    with tempfile.TemporaryDirectory() as tmp:
        _files(Path(tmp))
        for version in versions:
            capture(version, Path(tmp))


if __name__ == "__main__":
    main()
