"""The audit's expectations of a host: :class:`Expectations` (parsed from the inventory's ``gpufleet_*``
variables by :mod:`fleet.inventory.variables`) and the version comparisons the checks make."""

from __future__ import annotations

from fleet.inventory.variables import Expectations, version_tuple

__all__ = ["Expectations", "version_at_least", "version_matches_pin"]


def version_at_least(observed: str, minimum: str) -> bool:
    return version_tuple(observed) >= version_tuple(minimum)


def version_matches_pin(observed: str, pinned: str) -> bool:
    pin = version_tuple(pinned)
    return version_tuple(observed)[: len(pin)] == pin
