"""Kubernetes resource quantities (``500m``, ``128Mi``, ``1e3``) as numbers.

Mirrors ``apimachinery/pkg/api/resource.Quantity`` parsing closely enough for
scheduling and limits: binary suffixes (Ki … Ei), decimal suffixes (n, u, m,
k, M, G, T, P, E) and exponents.  Values are returned as :class:`Fraction` so
that ``0.1`` CPU and ``100m`` compare equal without float error; callers turn
them into millicores or bytes with :func:`milli` and :func:`value`.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_RE = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE]?)$")


def parse(q: str | int | float) -> Fraction:
    """The quantity's value; raises ValueError for malformed input."""
    if isinstance(q, int | float):
        return Fraction(q)
    s = str(q).strip()
    m = _RE.match(s)
    if not m or m.group(1) in (".", "+", "-"):
        raise ValueError(f"quantities must match the regular expression: {s!r}")
    num = Fraction(m.group(1))
    suffix = m.group(2)
    if suffix in _BINARY:
        return num * _BINARY[suffix]
    if suffix and suffix[0] in "eE":
        return num * Fraction(10) ** int(suffix[1:])
    return num * _DECIMAL[suffix]


def milli(q: str | int | float) -> int:
    """Value in thousandths, rounded up (CPU millicores)."""
    return math.ceil(parse(q) * 1000)


def value(q: str | int | float) -> int:
    """Value rounded up to an integer (bytes, counts)."""
    return math.ceil(parse(q))


_DECIMAL_SUFFIX = {
    -9: "n",
    -6: "u",
    -3: "m",
    0: "",
    3: "k",
    6: "M",
    9: "G",
    12: "T",
    15: "P",
    18: "E",
}
_BINARY_SUFFIX = {0: "", 1: "Ki", 2: "Mi", 3: "Gi", 4: "Ti", 5: "Pi", 6: "Ei"}


def format_decimal(amount: int, scale: int = 0) -> str:
    """The canonical DecimalSI string of ``amount × 10**scale``.

    Mirrors ``Quantity.String()`` for ``resource.NewScaledQuantity(amount,
    scale)``: trailing zeros are dropped and the exponent lowered to a multiple
    of three, so ``format_decimal(250_000_000, -9)`` is ``250m``,
    ``format_decimal(12_345_678, -9)`` is ``12345678n`` (metrics-server's CPU)
    and ``format_decimal(1500, -3)`` is ``1500m``.
    """
    if amount == 0:
        return "0"
    while amount % 10 == 0:
        amount //= 10
        scale += 1
    shift = scale % 3  # Python's modulo: 0, 1 or 2
    amount *= 10**shift
    scale -= shift
    suffix = _DECIMAL_SUFFIX.get(scale)
    return f"{amount}{suffix}" if suffix is not None else f"{amount}e{scale}"


def format_binary(amount: int) -> str:
    """The canonical BinarySI string of an integer (bytes), as ``Quantity.String()``.

    Whole multiples of 1024 take the largest binary suffix (``1536Ki``,
    ``20Mi``); anything else is plain bytes; between -1024 and 1024 the
    quantity is printed as DecimalSI, like upstream (``1000`` is ``1k``).
    """
    if -1024 < amount < 1024:
        return format_decimal(amount)
    power = 0
    while amount % 1024 == 0 and power < 6:
        amount //= 1024
        power += 1
    return f"{amount}{_BINARY_SUFFIX[power]}"
