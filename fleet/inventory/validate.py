"""Refusals that name file, line and key: literal connection values with shell metacharacters, bad ports,
expectations (``gpufleet_*``) of the wrong type.  Templates and unsupported connections are not refused here:
they become the host's :attr:`~fleet.inventory.model.Host.problem`."""

from __future__ import annotations

from typing import Any, Callable

from fleet.inventory.connection import SAFE_HOST, check_connection_value
from fleet.inventory.errors import InventoryError
from fleet.inventory.variables import Expectations


def validate_vars(variables: dict, where: str, path: str, line_of: Callable[[Any], int | None]) -> None:
    for key, value in variables.items():
        if not isinstance(key, str):
            raise InventoryError(path, f"variable name must be a string, got {key!r}", line_of(key), f"{where}.{key}")
        label = f"{where}.{key}"
        why = check_connection_value(key, value)
        if why:
            raise InventoryError(path, why, line_of(key), label)
        if key.startswith("gpufleet_"):
            try:
                Expectations.from_vars({key: value})
            except ValueError as e:
                raise InventoryError(path, str(e), line_of(key), label) from None


def check_host_name(name: str, path: str, line: int | None) -> None:
    if not SAFE_HOST.match(name):
        raise InventoryError(path, "host name carries characters that are not allowed", line, name)
