"""The one check of a move's arguments, before any run is recorded: command options, task arguments, keys.

``OPTIONS`` declares every numeric option of ``migrate_cold``/``restore_hot``
(and of the tasks): argparse takes its ``type`` from here, ``call_command``
keywords and task arguments go through ``check_options``, so the same value
is refused the same one-line way everywhere (``ArgumentError``). A new option
is one more ``Option``. ``check_integer`` holds an integer to what both tiers'
columns store for the field (``connection.ops.integer_field_range``);
``tiering.filters`` uses it for ``--pk`` and filter values.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any

from django.db import connections

from .conf import tiering_settings
from .exceptions import ArgumentError

# what a 64-bit integer column stores: the widest any backend takes for a field it gives no range of its own
INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Option:
    """A numeric option: ``kind`` (int or float), finite, above ``least`` (or at least it, ``strict=False``)."""

    name: str
    kind: type
    least: float
    strict: bool = True

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def describe(self) -> str:
        if self.kind is int:
            return "positive integer" if self.strict and self.least == 0 else f"integer >= {self.least}"
        return "finite positive number" if self.strict and self.least == 0 else f"finite number >= {self.least:g}"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not math.isfinite(value) or (self.kind is int and value != int(value)):
            return False
        return value > self.least if self.strict else value >= self.least

    def parse(self, value: Any) -> Any:
        """The option's value as ``kind``; ArgumentError (one line, naming the option) if it does not fit."""
        try:
            number = self.kind(value) if isinstance(value, str) else value
        except ValueError:
            number = None
        if number is None or not self.accepts(number):
            raise ArgumentError(f"{self.flag} must be a {self.describe}, not {value!r}.")
        return self.kind(number)

    def argparse_type(self):
        """An argparse ``type``: argparse puts its message after the option's name in its usage error."""
        def parse(value: str) -> Any:
            try:
                return self.parse(value)
            except ArgumentError:
                raise argparse.ArgumentTypeError(f"must be a {self.describe}, not {value!r}") from None

        parse.__name__ = self.describe
        return parse


OPTIONS = {option.name: option for option in (
    Option("batch_size", int, 0),
    Option("limit", int, 0),
    Option("max_runtime", float, 0),
    Option("sleep", float, 0, strict=False),
    Option("max_latency_ratio", float, 1, strict=False),
    Option("max_replica_lag", float, 0),
    Option("run", int, 0),  # restore_hot --run N
)}


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """The ``OPTIONS`` among ``options`` (None: not given), parsed; ArgumentError for the first that does not fit."""
    return {name: OPTIONS[name].parse(value) if value is not None else None
            for name, value in options.items() if name in OPTIONS}


def integer_range(field) -> tuple[int | None, int | None]:
    """The integers ``field`` can hold in both tiers (the narrower bound of the two)."""
    internal = field.get_internal_type()
    low, high = INT64
    for alias in (tiering_settings.HOT, tiering_settings.COLD):
        try:
            bounds = connections[alias].ops.integer_field_range(internal)
        except KeyError:  # not an integer field of Django's: the 64-bit bound of the drivers
            bounds = INT64
        low = max(low, bounds[0] if bounds[0] is not None else INT64[0])
        high = min(high, bounds[1] if bounds[1] is not None else INT64[1])
    return low, high


def check_integer(field, value: Any, what: str) -> None:
    """ArgumentError when ``value`` (an int) is beyond what ``field``'s columns store in either tier."""
    if not isinstance(value, int) or isinstance(value, bool):
        return
    low, high = integer_range(field) if field is not None else INT64
    if not low <= value <= high:
        raise ArgumentError(f"{what}: {value} is out of range for {getattr(field, 'name', 'the value')} "
                            f"({low} to {high})")
