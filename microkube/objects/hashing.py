"""The hash helpers controllers name objects with (apimachinery's, in Python).

``fnv32a`` is Go's ``hash/fnv`` New32a; ``safe_encode`` is apimachinery
``rand.SafeEncodeString``: each character mapped onto an alphabet with no
vowels and no look-alike characters, so hashes never spell words.
"""

from __future__ import annotations

_SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(s: str) -> str:
    return "".join(_SAFE_ALPHANUMS[ord(c) % len(_SAFE_ALPHANUMS)] for c in s)
