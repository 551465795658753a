"""Plain data (dicts, lists, scalars) from dataclasses, for reports and JSON."""

from __future__ import annotations

import functools
from dataclasses import fields, is_dataclass


@functools.lru_cache(maxsize=None)
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def plain(value):
    """``dataclasses.asdict`` without its deep copies (they were half of the audit's analysis per host):
    dataclasses become dicts, lists and dicts are rebuilt, tuples keep their type; every other value in
    facts and checks is immutable (str, int, float, bool, None, enums) and is shared as is."""
    if is_dataclass(value) and not isinstance(value, type):
        return {name: plain(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        items = [plain(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value
