"""Presentation helpers shared by the commands, tasks, admin and dashboard."""
from __future__ import annotations


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
