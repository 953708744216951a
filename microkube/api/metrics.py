"""/metrics in the Prometheus text exposition format (0.0.4)."""

from __future__ import annotations

import resource

from microkube.api.context import ApiContext


def _line(name: str, value: float, labels: dict[str, str] | None = None) -> str:
    if labels:
        inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return f"{name}{{{inner}}} {value}"
    return f"{name} {value}"


def render(ctx: ApiContext) -> str:
    out = [
        "# HELP apiserver_request_total Counter of API requests by verb and resource.",
        "# TYPE apiserver_request_total counter",
    ]
    for key, value in sorted(ctx.metrics.items()):
        if ":" in key:
            verb, res = key.split(":", 1)
            out.append(_line("apiserver_request_total", value, {"verb": verb, "resource": res}))
    out += [
        "# HELP apiserver_request_duration_seconds_sum Total seconds spent serving requests.",
        "# TYPE apiserver_request_duration_seconds_sum counter",
        _line(
            "apiserver_request_duration_seconds_sum",
            round(ctx.metrics.get("request_seconds_total", 0.0), 6),
        ),
        "# HELP microkube_store_revision Latest committed revision of the store.",
        "# TYPE microkube_store_revision gauge",
        _line("microkube_store_revision", ctx.registry.store.revision),
        "# HELP microkube_store_compacted_revision Oldest revision still watchable.",
        "# TYPE microkube_store_compacted_revision gauge",
        _line("microkube_store_compacted_revision", ctx.registry.store.compacted_revision),
        "# HELP process_resident_memory_max_bytes Peak resident set size.",
        "# TYPE process_resident_memory_max_bytes gauge",
        _line(
            "process_resident_memory_max_bytes",
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        ),
    ]
    return "\n".join(out) + "\n"
