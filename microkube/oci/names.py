"""The grammars of repository names, tags and digests, checked at the edge.

Everything that becomes part of a filesystem path (blob paths, upload files)
is derived from a value that matched one of these patterns first, so no path
can escape the registry directory: a name like ``../x`` or ``A/b`` fails the
name grammar, a digest's hex part is ``[a-f0-9]`` of a fixed length, and an
upload id is a uuid4 hex string.  The grammars are the distribution spec's
(v1.1, "Pulling manifests" and "Definitions"); digest algorithms are the two
the image spec registers, sha256 and sha512.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from microkube.oci import errcodes

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
UPLOAD_ID_RE = re.compile(r"[0-9a-f]{32}")
MAX_NAME = 255

ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
"""Supported digest algorithms and the length of their hex encoding."""


@dataclass(frozen=True)
class Digest:
    """A validated ``algorithm:hex`` content digest."""

    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME and NAME_RE.fullmatch(name) is not None


def check_name(name: str) -> str:
    """``name`` if it is a valid repository name, else NAME_INVALID."""
    if not is_valid_name(name):
        raise errcodes.RegistryError(
            "NAME_INVALID", "invalid repository name", detail={"name": name}
        )
    return name


def is_tag(reference: str) -> bool:
    return TAG_RE.fullmatch(reference) is not None


def parse_digest(value: str) -> Digest:
    """Parse ``algorithm:hex``; DIGEST_INVALID if malformed or unsupported."""
    algorithm, sep, hexpart = value.partition(":")
    length = ALGORITHMS.get(algorithm)
    if (
        not sep
        or length is None
        or len(hexpart) != length
        or re.fullmatch(r"[a-f0-9]+", hexpart) is None
    ):
        raise errcodes.RegistryError(
            "DIGEST_INVALID", "invalid or unsupported digest", detail={"digest": value}
        )
    return Digest(algorithm, hexpart)


def looks_like_digest(reference: str) -> bool:
    return ":" in reference


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def check_upload_id(upload_id: str) -> str:
    if UPLOAD_ID_RE.fullmatch(upload_id) is None:
        raise errcodes.RegistryError(
            "BLOB_UPLOAD_UNKNOWN", "blob upload unknown", detail={"uuid": upload_id}
        )
    return upload_id


def split_reference(ref: str) -> tuple[str, str]:
    """``[host/]path[:tag|@digest]`` → (repository path without host, tag or digest).

    Mirrors docker's reference normalisation: the first component is a
    registry host when it contains ``.`` or ``:`` or is ``localhost``; it is
    dropped because a repository of *this* registry is just the path.  A
    missing tag means ``latest``.
    """
    name, at, digest = ref.partition("@")
    tag = ""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = name.rpartition(":")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        name = rest
    return name, (digest if at else tag or "latest")
