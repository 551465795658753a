"""Value helpers the fact parsers share: N/A placeholders, leading integers (versions: fleet.inventory.variables)."""

from __future__ import annotations

import re

# Values nvidia-smi (and friends) print where a field has no meaning on this GPU.
_NOT_VALUES = {"", "n/a", "[n/a]", "not supported", "[not supported]", "unknown error",
               "requested functionality has been deprecated", "none", "[unknown error]"}


def clean(value: str | None) -> str | None:
    """Stripped text, or None for N/A-like placeholders."""
    if value is None:
        return None
    value = value.strip()
    return None if value.lower() in _NOT_VALUES else value


def leading_int(value: str | None) -> int | None:
    """The integer at the start of ``"16x"``, ``"4096 MiB"``, ``"0 %"``; None for N/A."""
    value = clean(value)
    if value is None:
        return None
    m = re.match(r"[+-]?\d+", value)
    return int(m.group()) if m else None
