"""pods/log options and line formatting (the kubelet's ``GetContainerLogs`` half).

Options mirror ``PodLogOptions`` as the apiserver decodes and validates them
(``ValidatePodLogOptions``: 422 ``PodLogOptions "p" is invalid`` for a negative
``tailLines``, a ``limitBytes`` or ``sinceSeconds`` below 1, or both ``sinceTime`` and
``sinceSeconds``).  The runtime yields :class:`~microkube.kubelet.runtime.LogLine`s;
here they become bytes on the wire, as kubelet's ``kuberuntime/logs`` writes them:

* ``timestamps=true`` prefixes each line with its time in RFC3339Nano with a fixed nine
  digits of fraction (``types.RFC3339NanoFixed``), then a space;
* ``limitBytes`` cuts the output after that many bytes, possibly mid-line;
* ``sinceTime``/``sinceSeconds`` drop older lines (the runtime filters too; we filter
  again because Podman's ``since`` has one-second resolution).

Lines are yielded one by one so a ``follow`` stream reaches the client as it is written;
the runtime's iterator is closed however the stream ends (including a client
disconnect, which cancels the response task).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from starlette.datastructures import QueryParams

from microkube import errors
from microkube.kubelet import runtime as rt


@dataclass
class LogOptions:
    container: str = ""
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since_seconds: int | None = None
    since_time: datetime | None = None

    def since(self, now: datetime) -> datetime | None:
        if self.since_seconds is not None:
            return now - timedelta(seconds=self.since_seconds)
        return self.since_time


def parse_bool(query: QueryParams, name: str) -> bool:
    """Mirrors apimachinery's ``Convert_Slice_string_To_bool``: only "0"/"false" are false."""
    value = query.get(name)
    return value is not None and not (value == "0" or value.lower() == "false")


def _int(query: QueryParams, name: str) -> int | None:
    value = query.get(name)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.BadRequest(
            f'strconv.ParseInt: parsing "{value}": invalid syntax (query parameter {name})'
        ) from None


def _time(query: QueryParams, name: str) -> datetime | None:
    value = query.get(name)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise errors.BadRequest(
            f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": cannot parse'
            f" (query parameter {name})"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_options(query: QueryParams, pod_name: str) -> LogOptions:
    """Decode and validate the query of a pods/log request."""
    opts = LogOptions(
        container=query.get("container", ""),
        follow=parse_bool(query, "follow"),
        previous=parse_bool(query, "previous"),
        timestamps=parse_bool(query, "timestamps"),
        tail_lines=_int(query, "tailLines"),
        limit_bytes=_int(query, "limitBytes"),
        since_seconds=_int(query, "sinceSeconds"),
        since_time=_time(query, "sinceTime"),
    )
    causes: list[errors.Cause] = []
    if opts.tail_lines is not None and opts.tail_lines < 0:
        causes.append(
            errors.invalid_value("tailLines", opts.tail_lines, "must be greater than or equal to 0")
        )
    if opts.limit_bytes is not None and opts.limit_bytes < 1:
        causes.append(
            errors.invalid_value("limitBytes", opts.limit_bytes, "must be greater than 0")
        )
    if opts.since_seconds is not None and opts.since_time is not None:
        causes.append(
            errors.forbidden_field(
                "", "at most one of `sinceTime` or `sinceSeconds` may be specified"
            )
        )
    elif opts.since_seconds is not None and opts.since_seconds < 1:
        causes.append(
            errors.invalid_value("sinceSeconds", opts.since_seconds, "must be greater than 0")
        )
    if causes:
        raise errors.invalid("PodLogOptions", pod_name, causes)
    return opts


def format_timestamp(ts: datetime) -> str:
    """RFC3339Nano with a fixed nine-digit fraction, in UTC (kubelet's ``timeFormatOut``)."""
    ts = ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond:06d}000Z"


async def stream(
    runtime: rt.ContainerRuntime, container_id: str, opts: LogOptions
) -> AsyncIterator[bytes]:
    """The response body of pods/log for one container."""
    since = opts.since(datetime.now(UTC))
    remaining = opts.limit_bytes
    lines = runtime.logs(
        container_id,
        follow=opts.follow,
        since=since,
        tail=opts.tail_lines,
        timestamps=opts.timestamps,
    )
    try:
        async for line in lines:
            if since is not None and line.timestamp is not None and line.timestamp < since:
                continue
            data = line.data
            if opts.timestamps:
                stamp = format_timestamp(line.timestamp or datetime.now(UTC))
                data = stamp.encode() + b" " + data
            if remaining is not None:
                data = data[:remaining]
                remaining -= len(data)
            if data:
                yield data
            if remaining is not None and remaining <= 0:
                return
    except rt.ContainerRuntimeError:
        return  # the container went away mid-stream: end the body like kubelet does
    finally:
        aclose = getattr(lines, "aclose", None)
        if aclose is not None:
            await aclose()
