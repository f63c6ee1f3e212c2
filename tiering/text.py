"""Presentation helpers shared by the commands, tasks, admin and dashboard."""
from __future__ import annotations

import math

from django.utils.formats import number_format


def one_line(exc: BaseException | str) -> str:
    """The first line of an error message, whitespace collapsed (CommandErrors are one line)."""
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.splitlines()[0].split())[:300]


def human_bytes(value: int | float | None) -> str:
    """1536 -> '1.5 KiB' (for tables and pages)."""
    if value is None:
        return "-"
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def money(amount: float, currency: str) -> str:
    """9.4208e-06, 'USD' -> '0.0000094 USD'; 1234.5 -> '1,234.50 USD' (the active locale's separators).

    Cents from one cent up; below that two significant digits, so a demo-sized cost does not read 0.00.
    """
    places = 2
    if amount and abs(amount) < 0.01:
        places = min(10, 1 - math.floor(math.log10(abs(amount))))
    return f"{number_format(round(amount, places), places, force_grouping=True)} {currency}"
