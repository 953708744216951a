"""microkube: a single-host Kubernetes in one Python process.

Layers, bottom up (see docs/flow.md):

    objects   pure helpers over raw Kubernetes JSON dicts
    store     kine-style revisioned log on SQLite; knows no kinds
    resources per-kind strategy (defaults, validation, spec/status split) and GenericStore
    api       the HTTP surface (Starlette): discovery, OpenAPI, CRUD, watch, streams
    client    how in-process components reach the API (same path as HTTP)
    controllers, scheduler, kubelet, dns, oci   the things that make objects real
    app       the composition root that starts and stops all of it
"""

__version__ = "0.1.0"
