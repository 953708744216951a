"""Quantity parsing and canonical formatting (values checked against apimachinery's String())."""

from __future__ import annotations

import pytest

from microkube.objects import quantity


@pytest.mark.parametrize(
    ("amount", "scale", "text"),
    [
        (0, -9, "0"),
        (12_345_678, -9, "12345678n"),  # metrics-server CPU usage
        (12_345_000, -9, "12345u"),
        (250_000_000, -9, "250m"),
        (1_000_000_000, -9, "1"),
        (1500, -3, "1500m"),  # NewMilliQuantity(1500, DecimalSI)
        (1000, -3, "1"),
        (10_485_760_000, -3, "10485760"),
        (20_000_000, 0, "20M"),
        (1000, 0, "1k"),
        (-250, -3, "-250m"),
    ],
)
def test_format_decimal(amount: int, scale: int, text: str) -> None:
    assert quantity.format_decimal(amount, scale) == text
    assert quantity.parse(text) == quantity.parse(f"{amount}e{scale}")


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0, "0"),
        (512, "512"),
        (1000, "1k"),  # below 1024: DecimalSI, as upstream
        (1024, "1Ki"),
        (1536, "1536"),
        (491_520, "480Ki"),
        (20 * 2**20, "20Mi"),
        (3 * 2**30, "3Gi"),
    ],
)
def test_format_binary(amount: int, text: str) -> None:
    assert quantity.format_binary(amount) == text
    assert quantity.parse(text) == amount
